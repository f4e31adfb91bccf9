"""C2PA: sign an MP4 with a manifest saying how it was made, and read a manifest back with its validity."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import c2pa

CLAIM_GENERATOR = "Kinema"
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


@dataclass(frozen=True, slots=True)
class Creation:
    """What the manifest records about one generated video."""

    generator_version: str
    model_id: str
    job_id: str
    created_at: str  # ISO 8601, UTC
    parent_job_id: str | None = None


def sign_mp4(
    source: Path, dest: Path, creation: Creation, *, cert_pem: bytes, key_pem: bytes, tsa_url: str = ""
) -> None:
    """Write `source` to `dest` with an embedded C2PA manifest signed (ES256) by the PEM chain and key.

    Raises `c2pa.C2paError` when the certificate is refused (self-signed leaf, wrong key usage).
    """
    actions: list[dict[str, Any]] = [
        {
            "action": "c2pa.created",
            "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
            "when": creation.created_at,
            "softwareAgent": {"name": CLAIM_GENERATOR, "version": creation.generator_version},
            "parameters": {"model": creation.model_id, "job_id": creation.job_id},
        }
    ]
    manifest: dict[str, Any] = {
        "claim_generator_info": [{"name": CLAIM_GENERATOR, "version": creation.generator_version}],
        "title": f"{creation.job_id}.mp4",
        "format": "video/mp4",
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": actions}},
            {
                "label": "org.kinema.generation",
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
        builder.sign(signer, "video/mp4", src, dst)


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
    ingredients: list[dict[str, Any]] = field(default_factory=list)
    job_id: str | None = None
    model: str | None = None


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
    active = store.get("manifests", {}).get(store.get("active_manifest"), {})
    results = store.get("validation_results", {}).get("activeManifest", {})
    problems = [
        f"{item.get('code')}: {item.get('explanation', '')}".strip() for item in results.get("failure", [])
    ]
    actions: list[dict[str, Any]] = []
    generation: dict[str, Any] = {}
    for assertion in active.get("assertions", []):
        if assertion.get("label", "").startswith("c2pa.actions"):
            actions.extend(assertion.get("data", {}).get("actions", []))
        elif assertion.get("label") == "org.kinema.generation":
            generation = assertion.get("data", {})
    signature = active.get("signature_info", {})
    generator = (active.get("claim_generator_info") or [{}])[0]
    return ManifestReport(
        present=True,
        # Valid (integrity and signature) or Trusted (also on a trust list); Invalid otherwise.
        valid=state in ("Valid", "Trusted"),
        validation_state=state,
        problems=problems,
        issuer=signature.get("issuer") or signature.get("common_name"),
        claim_generator=" ".join(str(v) for v in (generator.get("name"), generator.get("version")) if v),
        signed_at=signature.get("time"),
        actions=actions,
        ingredients=active.get("ingredients", []),
        job_id=generation.get("job_id"),
        model=generation.get("model"),
    )
