"""Token-aware chunking: sentences packed into windows of at most `size` tokens, with offsets into the source."""

from __future__ import annotations

from dataclasses import dataclass

from rag.text import encoding, sentences


@dataclass(frozen=True)
class Chunk:
    """A span of the normalised source text: `text == source_text[start:end]`."""

    text: str
    start: int
    end: int
    position: int
    tokens: int


def split(text: str, size: int = 200, overlap: int = 40, tokenizer: str = "cl100k_base") -> list[Chunk]:
    """Pack sentences into chunks of at most `size` tokens; neighbours share up to `overlap` tokens of whole
    sentences."""
    if overlap >= size:
        raise ValueError("overlap must be smaller than size")
    enc = encoding(tokenizer)
    segments = []  # (start, end, tokens, starts_paragraph)
    for start, end, para in sentences(text):
        n = len(enc.encode_ordinary(text[start:end]))
        if n <= size:
            segments.append((start, end, n, para))
        else:
            segments.extend(_token_windows(enc, text, start, end, size, overlap, para))

    chunks: list[Chunk] = []
    current: list[tuple[int, int, int, bool]] = []
    used = 0
    for i, seg in enumerate(segments):
        cost = seg[2] + (1 if current else 0)
        full = used + cost > size
        # Close early at a paragraph break when the whole next paragraph cannot join this chunk.
        if current and not full and seg[3] and used >= size // 2:
            full = used + _paragraph_tokens(segments, i) > size
        if current and full:
            chunks.append(_make(text, current, len(chunks), enc))
            current = _tail(current, overlap, room=size - seg[2] - 1)
            used = sum(s[2] for s in current) + max(len(current) - 1, 0)
            cost = seg[2] + (1 if current else 0)
        current.append(seg)
        used += cost
    if current:
        chunks.append(_make(text, current, len(chunks), enc))
    return chunks


def _paragraph_tokens(segments, i: int) -> int:
    total = segments[i][2]
    for seg in segments[i + 1 :]:
        if seg[3]:
            break
        total += seg[2] + 1
    return total


def _tail(current, overlap: int, room: int):
    """The last whole sentences of a chunk that fit in `overlap` tokens (and in the room left for the next one)."""
    tail: list = []
    used = 0
    for seg in reversed(current):
        cost = seg[2] + (1 if tail else 0)
        if used + cost > min(overlap, room):
            break
        tail.insert(0, seg)
        used += cost
    return tail


def _token_windows(enc, text: str, start: int, end: int, size: int, overlap: int, para: bool):
    """Split one over-long sentence into token windows, mapping token positions back to characters."""
    tokens = enc.encode_ordinary(text[start:end])
    _, offsets = enc.decode_with_offsets(tokens)
    offsets = list(offsets) + [end - start]
    step = size - overlap
    first = True
    for i in range(0, len(tokens), step):
        j = min(i + size, len(tokens))
        s, e = start + offsets[i], start + offsets[j]
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            yield s, e, len(enc.encode_ordinary(text[s:e])), para and first
            first = False
        if j == len(tokens):
            break


def _make(text: str, segs, position: int, enc) -> Chunk:
    start, end = segs[0][0], segs[-1][1]
    body = text[start:end]
    return Chunk(text=body, start=start, end=end, position=position, tokens=len(enc.encode_ordinary(body)))
