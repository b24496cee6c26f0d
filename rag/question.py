"""Reading a question before retrieving: what shape of answer it asks for, and its parts.

The kind decides how much context the answer needs, whether every document must be heard, and what the answer
must look like (a yes/no question opens with "Yes" or "No"). Nothing here knows the corpus: only English question
grammar."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# An auxiliary verb opening the question asks for yes or no ("Is ...", "Did ...", "Has ...").
_AUXILIARY = (
    "is are was were am do does did has have had can could will would shall should may might must "
    "isn't aren't wasn't weren't don't doesn't didn't hasn't haven't hadn't can't couldn't won't wouldn't shouldn't"
).split()
_YES_NO = re.compile(rf"^(?:(?:{'|'.join(map(re.escape, _AUXILIARY))})\b|is it (?:true|the case|correct)\b)", re.I)
# A leading attribution ("According to the report, ...", "In the second text, ...") does not change the kind.
_LEAD_IN = re.compile(r"^(?:according to|in|from|based on|per)\b[^,?]{1,80},\s*", re.I)
# "why", "how" (not "how many/much/long/..."), "explain", "what reasons/causes/effects", "in what way".
_EXPLAIN = re.compile(
    r"^(?:why|how(?!\s+(?:many|much|long|often|old|far|big|large|soon|high|tall)\b)|explain|describe|in what ways?)\b"
    r"|\b(?:why|reasons?|causes?|consequences?|effects?|implications?|explain|in what ways?)\b",
    re.I,
)
# Questions about several documents at once.
_COMPARE = re.compile(
    r"\b(?:both|each|compare[sd]?|comparison|differ(?:s|ent|ence|ences)?|agree|disagree|same way|in common|contrast"
    r"|(?:two|all|the|these|those|different) "
    r"(?:articles|documents|sources|texts|reports|pages|files|papers|stories))\b",
    re.I,
)
# A second question joined to the first: "..., and why?", "... and which ...", "What X? And Y?"
_SECOND_PART = re.compile(
    r"(?:,\s*|\s+)(?:and|but|also)\s+(?=(?:why|how|what|which|who|whom|whose|when|where|whether|is|are|was|were|do|does|did|has|have)\b)",
    re.I,
)


@dataclass
class Reading:
    """What a question asks for. `parts` are the sub-questions (one for a simple question)."""

    question: str
    yes_no: bool = False
    explain: bool = False
    compare: bool = False
    parts: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """One name for reports: compare, multi_part, yes_no, why, or fact."""
        if self.compare:
            return "compare"
        if len(self.parts) > 1:
            return "multi_part"
        if self.yes_no:
            return "yes_no"
        return "why" if self.explain else "fact"

    @property
    def deep(self) -> bool:
        """Needs more than one sentence of evidence: reasons, several documents or several parts."""
        return self.explain or self.compare or len(self.parts) > 1

    def instructions(self) -> str:
        """What the answer must look like, said to the model after the question."""
        lines = []
        if self.yes_no:
            lines.append('Start the answer with "Yes" or "No", then give the evidence for it.')
        if self.compare:
            lines.append("Say what each source says, citing each one, and whether they agree.")
        if len(self.parts) > 1:
            lines.append(f"The question has {len(self.parts)} parts: answer every part.")
        if self.explain and not self.compare:
            lines.append("Give every reason or step the passages state, not only one; do not repeat the question.")
        return " ".join(lines)


def read(question: str) -> Reading:
    """The kind and parts of a (standalone) question."""
    text = " ".join(question.split())
    body = _LEAD_IN.sub("", text)
    parts = _parts(text)
    return Reading(
        question=text,
        yes_no=bool(_YES_NO.match(body)) and not _EXPLAIN.match(body),
        explain=bool(_EXPLAIN.search(body)),
        compare=bool(_COMPARE.search(body)),
        parts=parts,
    )


def _parts(text: str) -> list[str]:
    """Split "What X, and why Y?" or "What X? And Y?" into its questions; a simple question is one part."""
    pieces = [p.strip() for p in re.split(r"(?<=\?)\s+", text) if p.strip()]
    out: list[str] = []
    for piece in pieces:
        split = _SECOND_PART.split(piece, maxsplit=1)
        if len(split) == 2 and len(split[0].split()) >= 3 and len(split[1].split()) >= 1:
            first, second = split[0].rstrip(" ,?") + "?", split[1].strip()
            # "... and why?" alone leans on the first part: the whole question stands for it.
            if len(second.rstrip("?").split()) <= 2:
                second = piece
            out += [first, second if second.endswith("?") else second + "?"]
        else:
            out.append(piece)
    return out if len(out) > 1 else [text]


__all__ = ["Reading", "read"]
