"""The content policy: categories of terms, patterns and combinations, allow-lists, per-key overrides.

Read from a TOML file (`KINEMA_MODERATION_POLICY`, default `default_policy.toml` next to this module)
and compiled once per file version; the format is described in README.md, "Content filters".
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.moderation.normalize import canonical_term

DEFAULT_POLICY = Path(__file__).resolve().parent / "default_policy.toml"
FIELDS = ("prompt", "negative_prompt")


class Action(StrEnum):
    """What a match does: refuse the request, allow it but record it, or nothing (per-key override)."""

    BLOCK = "block"
    FLAG = "flag"
    OFF = "off"


class PolicyError(ValueError):
    """The policy file is malformed; the message names the file and the entry."""


def _stretchy(words: str) -> str:
    """A regex for `words` whose letters may repeat (`kiiill`), but no fewer than written (`niger`)."""
    return "".join(f"{re.escape(ch)}+" if ch.isalpha() else re.escape(ch) for ch in words)


def _term_regex(terms: list[str], patterns: list[str], where: str) -> re.Pattern[str] | None:
    """One regex for a list of terms (`*` at the end of a word: any ending) and raw patterns."""
    alternatives: list[str] = []
    for term in terms:
        prefix = term.rstrip().endswith("*")
        words = canonical_term(term.rstrip().rstrip("*"))
        if not words:
            raise PolicyError(f"{where}: the term {term!r} has no letters or digits")
        tail = r"\w*" if prefix else ""
        alternatives.append(_stretchy(words) + tail)
        if " " in words:
            # `self harm` also matches `selfharm`, `self-harm`, `s e l f h a r m`.
            alternatives.append(_stretchy(words.replace(" ", "")) + tail)
    body = "|".join(sorted(set(alternatives), key=len, reverse=True))
    parts = [rf"(?<!\w)(?:{body})(?!\w)"] if body else []
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise PolicyError(f"{where}: bad pattern {pattern!r}: {exc}") from exc
        parts.append(f"(?:{pattern})")
    return re.compile("|".join(parts)) if parts else None


def _group(entries: list[str], where: str) -> re.Pattern[str]:
    """A combination group: terms, and `re:`-prefixed patterns."""
    terms = [entry for entry in entries if not entry.startswith("re:")]
    patterns = [entry[3:] for entry in entries if entry.startswith("re:")]
    compiled = _term_regex(terms, patterns, where)
    if compiled is None:
        raise PolicyError(f"{where}: an empty combination group")
    return compiled


@dataclass(frozen=True)
class Category:
    """One category of the policy and its compiled matchers."""

    name: str
    description: str
    action: Action
    overridable: bool
    fields: tuple[str, ...]
    matcher: re.Pattern[str] | None
    # Each combination matches when every one of its groups matches somewhere in the text.
    combinations: tuple[tuple[re.Pattern[str], ...], ...]
    allow: re.Pattern[str] | None

    def matches(self, views: list[str]) -> bool:
        """Whether any canonical view of the text, innocent phrases removed, falls in this category."""
        for view in views:
            if self.allow is not None:
                view = self.allow.sub(" ", view)
            if self.matcher is not None and self.matcher.search(view):
                return True
            for groups in self.combinations:
                if all(group.search(view) for group in groups):
                    return True
        return False


@dataclass(frozen=True)
class KeyOverride:
    """A key's departures from the policy: other actions for some categories, more innocent phrases."""

    actions: dict[str, Action]
    allow: re.Pattern[str] | None


@dataclass(frozen=True)
class Policy:
    """A compiled policy."""

    categories: tuple[Category, ...]
    allow: re.Pattern[str] | None
    keys: dict[str, KeyOverride] = field(default_factory=dict)

    def override_for(self, key_id: str, key_prefix: str) -> KeyOverride | None:
        """The overrides for a key, named in the file by its id (`key_...`) or prefix (`kn_...` or bare)."""
        return self.keys.get(key_id) or self.keys.get(key_prefix) or self.keys.get(f"kn_{key_prefix}")


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PolicyError(f"{where}: expected a list of strings")
    return value


def _action(value: Any, where: str) -> Action:
    try:
        return Action(value)
    except ValueError:
        raise PolicyError(f"{where}: action must be block, flag or off, not {value!r}") from None


def compile_policy(data: dict[str, Any], source: str = "<policy>") -> Policy:
    """Check and compile a parsed policy document."""
    raw_categories = data.get("categories")
    if not isinstance(raw_categories, dict) or not raw_categories:
        raise PolicyError(f"{source}: no [categories.<name>] tables")
    categories = []
    for name, raw in raw_categories.items():
        where = f"{source}: categories.{name}"
        fields = tuple(_strings(raw.get("fields", list(FIELDS)), f"{where}.fields"))
        if not set(fields) <= set(FIELDS):
            raise PolicyError(f"{where}.fields: only {', '.join(FIELDS)}")
        combinations = tuple(
            tuple(
                _group(_strings(group, f"{where}.combinations"), f"{where}.combinations") for group in combo
            )
            for combo in raw.get("combinations", [])
        )
        categories.append(
            Category(
                name=name,
                description=str(raw.get("description", "")),
                action=_action(raw.get("action", "block"), f"{where}.action"),
                overridable=bool(raw.get("overridable", True)),
                fields=fields,
                matcher=_term_regex(
                    _strings(raw.get("terms", []), f"{where}.terms"),
                    _strings(raw.get("patterns", []), f"{where}.patterns"),
                    where,
                ),
                combinations=combinations,
                allow=_term_regex(_strings(raw.get("allow", []), f"{where}.allow"), [], f"{where}.allow"),
            )
        )
    by_name = {category.name: category for category in categories}
    keys: dict[str, KeyOverride] = {}
    for key_name, raw in data.get("keys", {}).items():
        where = f"{source}: keys.{key_name}"
        actions = {}
        for category_name, value in raw.get("categories", {}).items():
            category = by_name.get(category_name)
            if category is None:
                raise PolicyError(f"{where}: no category {category_name!r}")
            if not category.overridable:
                raise PolicyError(f"{where}: category {category_name!r} cannot be overridden")
            actions[category_name] = _action(value, f"{where}.categories.{category_name}")
        allow = _term_regex(_strings(raw.get("allow", []), f"{where}.allow"), [], f"{where}.allow")
        keys[key_name] = KeyOverride(actions=actions, allow=allow)
    global_allow = _term_regex(
        _strings(data.get("allow", {}).get("terms", []), f"{source}: allow.terms"), [], f"{source}: allow"
    )
    return Policy(categories=tuple(categories), allow=global_allow, keys=keys)


@lru_cache(maxsize=8)
def _load(path: str, _mtime_ns: int) -> Policy:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: {exc}") from exc
    return compile_policy(data, path)


def load_policy(path: str | Path | None = None) -> Policy:
    """The compiled policy at `path` (default: the shipped one); recompiled when the file changes."""
    resolved = Path(path) if path else DEFAULT_POLICY
    return _load(str(resolved), resolved.stat().st_mtime_ns)
