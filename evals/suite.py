"""Eval suites: JSONL files of cases, checked against the format documented in evals/README.md."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CATEGORIES = (
    "fact",
    "list",
    "number",
    "why",
    "paraphrase",
    "multi_doc",
    "yes_no",
    "multi_part",
    "follow_up",
    "unanswerable",
)
SPLITS = ("dev", "test")
DEFAULT_SUITE = Path(__file__).parent / "suites" / "gold.jsonl"
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_FIELDS = {
    "id", "category", "question", "history", "answerable", "reference", "facts", "must_not", "together", "polarity",
    "evidence", "evidence_mode", "subsets", "notes",
}  # fmt: skip


class SuiteError(ValueError):
    """A suite file that does not follow the format; the message names the file, line and field."""


@dataclass(frozen=True)
class Evidence:
    source: str  # file name (or path) of the document, relative to the corpus directory
    quote: str  # verbatim text of the document that supports the answer


@dataclass(frozen=True)
class Case:
    id: str
    category: str
    question: str
    answerable: bool
    reference: str
    facts: tuple[tuple[str, ...], ...] = ()
    must_not: tuple[tuple[str, ...], ...] = ()  # claims a wrong answer states: any one fails the case
    together: tuple[tuple[int, ...], ...] = ()  # groups of fact indexes a right answer states in one sentence
    polarity: str | None = None  # yes_no cases: "yes" or "no", the word the answer opens with
    evidence: tuple[Evidence, ...] = ()
    evidence_mode: str = "all"
    history: tuple[tuple[str, str], ...] = ()
    subsets: tuple[str, ...] = ()
    notes: str = ""
    suite: str = field(default="", compare=False)

    @property
    def key(self) -> str:
        """Unique across suites: `suite/id`."""
        return f"{self.suite}/{self.id}"

    @property
    def split(self) -> str:
        """`dev` (tune on it) or `test` (report on it), fixed by the case's suite and id before any run: the first
        byte of sha256("suite/id"), even for dev. Adding cases never moves another case."""
        return SPLITS[hashlib.sha256(self.key.encode()).digest()[0] % 2]


def validate(raw: Any) -> list[str]:
    """Every way one decoded JSON line breaks the format; empty when it is a valid case."""
    if not isinstance(raw, dict):
        return ["a case must be a JSON object"]
    errors = [f"unknown field {k!r}" for k in raw if k not in _FIELDS]
    for name in ("id", "category", "question", "reference"):
        if not isinstance(raw.get(name), str) or not raw[name].strip():
            errors.append(f"{name} must be a non-empty string")
    if isinstance(raw.get("id"), str) and not _ID.match(raw["id"]):
        errors.append("id may hold only a-z, 0-9, '-', '_' and '.'")
    if isinstance(raw.get("category"), str) and raw["category"] not in CATEGORIES:
        errors.append(f"category {raw['category']!r} is not one of {', '.join(CATEGORIES)}")
    answerable = raw.get("answerable")
    if not isinstance(answerable, bool):
        errors.append("answerable must be true or false")
    facts, evidence = raw.get("facts", []), raw.get("evidence", [])
    if not isinstance(facts, list) or not all(_is_fact(f) for f in facts):
        errors.append(
            "facts must be a list whose items are a string or a non-empty list of strings (accepted variants)"
        )
    must_not = raw.get("must_not", [])
    if not isinstance(must_not, list) or not all(_is_fact(f) for f in must_not):
        errors.append("must_not must be a list whose items are a string or a non-empty list of strings (variants)")
    together = raw.get("together", [])
    if not isinstance(together, list) or not all(
        isinstance(g, list)
        and len(g) >= 2
        and all(isinstance(i, int) and 0 <= i < len(facts if isinstance(facts, list) else []) for i in g)
        for g in together
    ):
        errors.append("together must be a list of groups (two or more) of fact indexes")
    if raw.get("category") == "yes_no" and raw.get("polarity") not in ("yes", "no"):
        errors.append('a yes_no case needs polarity "yes" or "no"')
    if "polarity" in raw and raw.get("category") != "yes_no":
        errors.append("polarity is for yes_no cases only")
    if not isinstance(evidence, list) or not all(_is_evidence(e) for e in evidence):
        errors.append("evidence must be a list of {source, quote} objects with non-empty strings")
    if answerable is True and not facts:
        errors.append("an answerable case needs at least one fact")
    if answerable is True and not evidence:
        errors.append("an answerable case needs at least one evidence quote")
    if answerable is False and (facts or evidence or must_not):
        errors.append("an unanswerable case has no facts, must_not or evidence")
    if raw.get("category") == "unanswerable" and answerable is not False:
        errors.append("category unanswerable needs answerable: false")
    if raw.get("evidence_mode", "all") not in ("all", "any"):
        errors.append("evidence_mode must be 'all' or 'any'")
    history = raw.get("history", [])
    if not isinstance(history, list) or not all(
        isinstance(t, list) and len(t) == 2 and all(isinstance(x, str) and x.strip() for x in t) for t in history
    ):
        errors.append("history must be a list of [user, assistant] pairs of non-empty strings")
    if raw.get("category") == "follow_up" and not history:
        errors.append("a follow_up case needs a history")
    subsets = raw.get("subsets", [])
    if not isinstance(subsets, list) or not all(isinstance(s, str) and _ID.match(s) for s in subsets):
        errors.append("subsets must be a list of names (a-z, 0-9, '-', '_', '.')")
    if "notes" in raw and not isinstance(raw["notes"], str):
        errors.append("notes must be a string")
    return errors


def load(path: Path) -> list[Case]:
    """The cases of one suite file; raise SuiteError naming every bad line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SuiteError(f"cannot read suite {path}: {exc.strerror or exc}") from None
    cases, problems, seen = [], [], set()
    for lineno, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{lineno}: not JSON ({exc.msg})")
            continue
        errors = validate(raw)
        if not errors and raw["id"] in seen:
            errors = [f"duplicate id {raw['id']!r}"]
        if errors:
            problems.extend(f"{path}:{lineno}: {e}" for e in errors)
            continue
        seen.add(raw["id"])
        cases.append(_case(raw, path.stem))
    if problems:
        raise SuiteError("invalid suite:\n  " + "\n  ".join(problems))
    if not cases:
        raise SuiteError(f"suite {path} has no cases")
    return cases


def select(
    cases: list[Case], subset: str | None = None, limit: int | None = None, split: str | None = None
) -> list[Case]:
    """The cases in `subset` and `split` (all when None), at most `limit` of them, in file order."""
    chosen = [c for c in cases if (subset is None or subset in c.subsets) and (split is None or c.split == split)]
    return chosen[:limit] if limit is not None else chosen


def _case(raw: dict, suite: str) -> Case:
    return Case(
        id=raw["id"],
        category=raw["category"],
        question=raw["question"],
        answerable=raw["answerable"],
        reference=raw["reference"],
        facts=_facts(raw.get("facts", [])),
        must_not=_facts(raw.get("must_not", [])),
        together=tuple(tuple(g) for g in raw.get("together", [])),
        polarity=raw.get("polarity"),
        evidence=tuple(Evidence(e["source"], e["quote"]) for e in raw.get("evidence", [])),
        evidence_mode=raw.get("evidence_mode", "all"),
        history=tuple((u, a) for u, a in raw.get("history", [])),
        subsets=tuple(raw.get("subsets", [])),
        notes=raw.get("notes", ""),
        suite=suite,
    )


def _facts(raw: list) -> tuple[tuple[str, ...], ...]:
    return tuple((f,) if isinstance(f, str) else tuple(f) for f in raw)


def _is_fact(f: Any) -> bool:
    if isinstance(f, str):
        return bool(f.strip().rstrip("*"))
    return isinstance(f, list) and bool(f) and all(isinstance(v, str) and v.strip().rstrip("*") for v in f)


def _is_evidence(e: Any) -> bool:
    return (
        isinstance(e, dict)
        and set(e) == {"source", "quote"}
        and all(isinstance(e[k], str) and e[k].strip() for k in ("source", "quote"))
    )
