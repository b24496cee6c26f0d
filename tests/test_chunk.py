import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.chunk import split
from rag.text import count_tokens, normalize

TEXT = (
    "The first paragraph has a short sentence. It has a second one, somewhat longer than the first!\n\n"
    "Dr. Smith wrote the second paragraph. Is it a question? Yes.\n\n"
    + " ".join(f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(60))
)


@pytest.mark.parametrize("size,overlap", [(32, 0), (64, 16), (200, 40), (1000, 100)])
def test_chunks_respect_token_bound_and_offsets(size, overlap):
    chunks = split(TEXT, size, overlap)
    assert chunks
    for i, c in enumerate(chunks):
        assert c.position == i
        assert TEXT[c.start : c.end] == c.text
        assert c.tokens == count_tokens(c.text) <= size
        assert c.text == c.text.strip()
    # Everything is covered: no text between chunks is lost.
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    assert all(i in covered for i, ch in enumerate(TEXT) if not ch.isspace())


def test_chunks_end_on_sentence_boundaries_and_overlap_whole_sentences():
    chunks = split(TEXT, 64, 24)
    for c in chunks[:-1]:
        assert c.text.endswith((".", "!", "?")), c.text
    overlaps = [a.end - b.start for a, b in zip(chunks, chunks[1:], strict=False) if b.start < a.end]
    assert overlaps, "neighbouring chunks share sentences"
    assert "Dr. Smith wrote" in TEXT[chunks[0].start : chunks[-1].end]
    assert not any(c.text.startswith("Smith wrote") for c in chunks), "an abbreviation does not end a sentence"


def test_a_paragraph_break_is_preferred_over_the_middle_of_a_paragraph():
    para = " ".join(["Alpha beta gamma delta."] * 6)
    text = f"{para}\n\n{para}"
    chunks = split(text, count_tokens(para) + 10, 0)
    assert [c.text for c in chunks] == [para, para]


def test_an_overlong_sentence_is_split_into_token_windows():
    text = "word " * 1000 + "end."
    chunks = split(text.strip(), 100, 20)
    assert len(chunks) > 10
    for c in chunks:
        assert c.tokens <= 100
        assert text.strip()[c.start : c.end] == c.text


def test_special_token_text_is_ordinary_text():
    text = "A document that mentions <|endoftext|> literally. Nothing breaks."
    chunks = split(text, 50, 0)
    assert chunks[0].text == text


def test_overlap_must_be_smaller_than_size():
    with pytest.raises(ValueError):
        split("x", 10, 10)


@settings(max_examples=60, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("ab .!?\n\u00e9\u4e2d\U0001f600"), min_size=1, max_size=600), st.integers(8, 80)
)
def test_offsets_hold_for_any_text(raw, size):
    text = normalize(raw)
    for c in split(text, size, size // 4):
        assert text[c.start : c.end] == c.text
        assert c.tokens <= size
        assert c.text.strip()


def test_a_list_number_ends_no_sentence():
    from rag.text import sentences

    text = "Steps: 1. Preheat the oven. 2. Mix the flour.\n3. Bake it. It was signed on March 3. Then it rained."
    assert [text[s:e] for s, e, _ in sentences(text)] == [
        "Steps: 1. Preheat the oven.",
        "2. Mix the flour.",
        "3. Bake it.",
        "It was signed on March 3.",
        "Then it rained.",
    ]
