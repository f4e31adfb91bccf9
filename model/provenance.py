"""C2PA: sign an MP4 with a manifest saying how it was made, and read a manifest back with its validity.

A video made from another one (an edit, a remix, an extension) names it as its `parentOf` ingredient,
with the parent's own manifest when it has one, and its actions are `c2pa.opened` (the parent) then
`c2pa.edited` with digital source type `compositeWithTrainedAlgorithmicMedia`: the C2PA rule for an
asset derived from another is that its first action is `c2pa.opened` of its parent. A video made from
an input image names the image as an `inputTo` ingredient of its `c2pa.created` action.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import c2pa

CLAIM_GENERATOR = "Kinema"
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA = (
    "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
)
GENERATION_LABEL = "org.kinema.generation"
# Media types by file suffix, for ingredients; c2pa records a type it cannot parse without its manifest.
MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
}
_INGREDIENT = "source"  # the ingredient's label, by which the actions name it


@dataclass(frozen=True, slots=True)
class Creation:
    """What the manifest records about one generated video."""

    generator_version: str
    model_id: str
    job_id: str
    created_at: str  # ISO 8601, UTC
    parent_job_id: str | None = None


@dataclass(frozen=True, slots=True)
class Ingredient:
    """A file the video was made from."""

    path: Path
    title: str
    # parentOf: the video is an edit or extension of it; inputTo: an input (an image) it was made from.
    relationship: Literal["parentOf", "inputTo"] = "parentOf"

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES.get(self.path.suffix.lower(), "application/octet-stream")


def _actions(creation: Creation, ingredient: Ingredient | None) -> list[dict[str, Any]]:
    """The c2pa.actions list: created; or opened (the parent) then edited."""
    agent = {"name": CLAIM_GENERATOR, "version": creation.generator_version}
    parameters: dict[str, Any] = {"model": creation.model_id, "job_id": creation.job_id}
    if ingredient is None or ingredient.relationship == "inputTo":
        if ingredient is not None:
            parameters["ingredientIds"] = [_INGREDIENT]  # c2pa turns these into hashed links
        return [
            {
                "action": "c2pa.created",
                "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                "when": creation.created_at,
                "softwareAgent": agent,
                "parameters": parameters,
            }
        ]
    if creation.parent_job_id is not None:
        parameters["parent_job_id"] = creation.parent_job_id
    return [
        {
            "action": "c2pa.opened",
            "when": creation.created_at,
            "parameters": {"ingredientIds": [_INGREDIENT]},
        },
        {
            "action": "c2pa.edited",
            "digitalSourceType": COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA,
            "when": creation.created_at,
            "softwareAgent": agent,
            "parameters": parameters,
        },
    ]


def sign_mp4(
    source: Path,
    dest: Path,
    creation: Creation,
    *,
    cert_pem: bytes,
    key_pem: bytes,
    tsa_url: str = "",
    ingredient: Ingredient | None = None,
) -> None:
    """Write `source` to `dest` with an embedded C2PA manifest signed (ES256) by the PEM chain and key.

    `ingredient`, when given, is recorded with its own manifest (if it has one) and named by the actions.
    Raises `c2pa.C2paError` when the certificate is refused (self-signed leaf, wrong key usage).
    """
    actions = _actions(creation, ingredient)
    manifest: dict[str, Any] = {
        "claim_generator_info": [{"name": CLAIM_GENERATOR, "version": creation.generator_version}],
        "title": f"{creation.job_id}.mp4",
        "format": "video/mp4",
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": actions}},
            {
                "label": GENERATION_LABEL,
                "data": {
                    "model": creation.model_id,
                    "job_id": creation.job_id,
                    "created": creation.created_at,
                    "parent_job_id": creation.parent_job_id,
                },
            },
        ],
    }
    info = c2pa.C2paSignerInfo(b"es256", cert_pem, key_pem, tsa_url.encode() or None)
    with (
        c2pa.Signer.from_info(info) as signer,
        c2pa.Builder(json.dumps(manifest)) as builder,
        open(source, "rb") as src,
        open(dest, "wb") as dst,
    ):
        if ingredient is not None:
            definition = {
                "title": ingredient.title,
                "relationship": ingredient.relationship,
                "label": _INGREDIENT,
            }
            with open(ingredient.path, "rb") as stream:
                builder.add_ingredient(json.dumps(definition), ingredient.media_type, stream)
        builder.sign(signer, "video/mp4", src, dst)


# Failures that leave a manifest valid: c2pa says Valid (not Trusted) when only these are present.
_NOT_INVALIDATING = frozenset({"signingCredential.untrusted"})


@dataclass(frozen=True, slots=True)
class IngredientReport:
    """One ingredient of a manifest: what it is, how it was used, and what its own manifest says."""

    title: str | None
    format: str | None
    relationship: str | None
    has_manifest: bool
    # Its own manifest's validity as c2pa checked it when the video was signed; None without one.
    valid: bool | None = None
    problems: list[str] = field(default_factory=list)
    claim_generator: str | None = None
    job_id: str | None = None  # the Kinema job that made it, from its manifest
    model: str | None = None


@dataclass(frozen=True, slots=True)
class ManifestReport:
    """A video's active C2PA manifest as verify reports it."""

    present: bool
    valid: bool = False
    validation_state: str | None = None
    # Failure codes and explanations (e.g. assertion.bmffHash.mismatch); empty when valid.
    problems: list[str] = field(default_factory=list)
    issuer: str | None = None
    claim_generator: str | None = None
    signed_at: str | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    ingredients: list[IngredientReport] = field(default_factory=list)
    job_id: str | None = None
    model: str | None = None
    parent_job_id: str | None = None


def _problems(results: dict[str, Any]) -> list[str]:
    return [
        f"{item.get('code')}: {item.get('explanation', '')}".strip() for item in results.get("failure", [])
    ]


def _generator(manifest: dict[str, Any]) -> str:
    info = (manifest.get("claim_generator_info") or [{}])[0]
    return " ".join(str(v) for v in (info.get("name"), info.get("version")) if v)


def _assertions(manifest: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A manifest's actions and its Kinema generation record (empty if it has none)."""
    actions: list[dict[str, Any]] = []
    generation: dict[str, Any] = {}
    for assertion in manifest.get("assertions", []):
        if assertion.get("label", "").startswith("c2pa.actions"):
            actions.extend(assertion.get("data", {}).get("actions", []))
        elif assertion.get("label") == GENERATION_LABEL:
            generation = assertion.get("data", {})
    return actions, generation


def _ingredient(item: dict[str, Any], manifests: dict[str, Any]) -> IngredientReport:
    own = manifests.get(item.get("active_manifest") or "", {})
    results = (item.get("validation_results") or {}).get("activeManifest", {})
    failures = {entry.get("code") for entry in results.get("failure", [])}
    _, generation = _assertions(own)
    has_manifest = bool(own)
    return IngredientReport(
        title=item.get("title"),
        format=item.get("format"),
        relationship=item.get("relationship"),
        has_manifest=has_manifest,
        valid=failures <= _NOT_INVALIDATING if has_manifest else None,
        problems=_problems(results),
        claim_generator=_generator(own) or None,
        job_id=generation.get("job_id"),
        model=generation.get("model"),
    )


def read_manifest(path: Path) -> ManifestReport:
    """Read and validate the C2PA manifest embedded in the MP4 at `path`."""
    with open(path, "rb") as stream:
        try:
            reader = c2pa.Reader.try_create("video/mp4", stream)
        except c2pa.C2paError as exc:
            return ManifestReport(present=False, problems=[str(exc)])
        if reader is None:
            return ManifestReport(present=False)
        with reader:
            store = json.loads(reader.json())
    state = store.get("validation_state")
    manifests = store.get("manifests", {})
    active = manifests.get(store.get("active_manifest"), {})
    actions, generation = _assertions(active)
    signature = active.get("signature_info", {})
    return ManifestReport(
        present=True,
        # Valid (integrity and signature) or Trusted (also on a trust list); Invalid otherwise.
        valid=state in ("Valid", "Trusted"),
        validation_state=state,
        problems=_problems(store.get("validation_results", {}).get("activeManifest", {})),
        issuer=signature.get("issuer") or signature.get("common_name"),
        claim_generator=_generator(active),
        signed_at=signature.get("time"),
        actions=actions,
        ingredients=[_ingredient(item, manifests) for item in active.get("ingredients", [])],
        job_id=generation.get("job_id"),
        model=generation.get("model"),
        parent_job_id=generation.get("parent_job_id"),
    )
