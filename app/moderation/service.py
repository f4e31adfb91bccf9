"""Screening a submission's prompts: the policy's rules, then the external classifier; audit rows."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.api_keys.models import ApiKey
from app.config import Settings
from app.errors import ModerationBlocked, ServiceUnavailable
from app.moderation.classifier import ClassifierUnavailable, classify
from app.moderation.models import BLOCKED, FLAGGED, ModerationEvent
from app.moderation.normalize import views
from app.moderation.policy import Action, KeyOverride, Policy, load_policy

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Finding:
    """One field the filters blocked or flagged."""

    param: str
    action: str  # BLOCKED or FLAGGED
    categories: list[str]
    source: str  # rules or classifier
    sha256: str


def check_text(
    policy: Policy, text: str, *, param: str = "prompt", override: KeyOverride | None = None
) -> dict[str, Action]:
    """The categories `text` falls in under `policy` (and a key's override), with what each one does."""
    canonical = views(text)
    for allow in (policy.allow, override.allow if override else None):
        if allow is not None:
            canonical = [allow.sub(" ", view) for view in canonical]
    found: dict[str, Action] = {}
    for category in policy.categories:
        if param not in category.fields:
            continue
        action = override.actions.get(category.name, category.action) if override else category.action
        if action != Action.OFF and category.matches(canonical):
            found[category.name] = action
    return found


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# Fields the policy's categories do not name, checked by the rules of the field they stand in for.
CHECKED_AS = {"audio_prompt": "prompt"}


def _rule_findings(policy: Policy, key: ApiKey, fields: dict[str, str]) -> list[Finding]:
    override = policy.override_for(key.id, key.prefix)
    findings = []
    for param, text in fields.items():
        if not text:
            continue
        found = check_text(policy, text, param=CHECKED_AS.get(param, param), override=override)
        blocked = sorted(name for name, action in found.items() if action == Action.BLOCK)
        flagged = sorted(name for name, action in found.items() if action == Action.FLAG)
        if blocked:
            findings.append(Finding(param, BLOCKED, blocked, "rules", _sha256(text)))
        elif flagged:
            findings.append(Finding(param, FLAGGED, flagged, "rules", _sha256(text)))
    return findings


def _classifier_findings(settings: Settings, fields: dict[str, str]) -> list[Finding]:
    texts = {param: text for param, text in fields.items() if text}
    try:
        verdicts = classify(
            settings.moderation_url,
            list(texts.values()),
            timeout_s=settings.moderation_timeout_s,
            api_key=settings.moderation_api_key,
        )
    except ClassifierUnavailable as exc:
        if settings.moderation_fail_open:
            log.warning("moderation classifier unavailable, letting the request through: %s", exc)
            return []
        log.error("moderation classifier unavailable, refusing the request: %s", exc)
        raise ServiceUnavailable(
            "The content classifier is unavailable; the job was not queued. Retry shortly.",
            code="moderation_unavailable",
        ) from exc
    return [
        Finding(param, BLOCKED, categories, "classifier", _sha256(text))
        for (param, text), categories in zip(texts.items(), verdicts, strict=True)
        if categories
    ]


def record(session: Session, key: ApiKey, findings: list[Finding], *, job_id: str | None = None) -> None:
    """Add audit rows for `findings` to the session (the caller commits)."""
    for finding in findings:
        session.add(
            ModerationEvent(
                api_key_id=key.id,
                action=finding.action,
                param=finding.param,
                categories=finding.categories,
                source=finding.source,
                prompt_sha256=finding.sha256,
                job_id=job_id,
            )
        )


def screen(session: Session, key: ApiKey, fields: dict[str, str], settings: Settings) -> list[Finding]:
    """Check a submission's text fields before anything is written or queued.

    A block is audited (committed) and raised as 400 `moderation_blocked` naming the first blocked field;
    otherwise the flagged findings are returned, for the caller to `record` with the job it makes.
    """
    policy = load_policy(settings.moderation_policy or None)
    findings = _rule_findings(policy, key, fields)
    if settings.moderation_url and not any(f.action == BLOCKED for f in findings):
        findings += _classifier_findings(settings, fields)
    blocked = [finding for finding in findings if finding.action == BLOCKED]
    if not blocked:
        return findings
    record(session, key, findings)
    session.commit()
    first = min(blocked, key=lambda finding: list(fields).index(finding.param))
    raise ModerationBlocked(
        f"The {first.param.replace('_', ' ')} was refused by this deployment's content policy "
        f"({', '.join(first.categories)}). Rephrase the request.",
        param=first.param,
        categories=first.categories,
    )
