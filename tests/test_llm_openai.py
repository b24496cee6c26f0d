"""The `openai` backend against a real OpenAI-compatible LLM server: llama.cpp's own HTTP server (xllamacpp.Server),
serving the embedded model file on 127.0.0.1 in a process of its own."""

import subprocess
import sys
import textwrap
import time

import httpx
import pytest

import rag
from rag.errors import ModelError
from rag.llm.model_file import ensure_model

from .servers import free_port, stop

pytestmark = pytest.mark.slow
Q = "When was the Ottawa Convention signed?"

_SERVER = textwrap.dedent(
    """
    import sys, threading
    import xllamacpp as xlc
    params = xlc.CommonParams()
    params.model.path = sys.argv[1]
    params.n_ctx = 4096
    params.n_parallel = 1
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 2
    params.hostnames = ["127.0.0.1"]
    params.port = int(sys.argv[2])
    server = xlc.Server(params)
    print("listening", flush=True)
    threading.Event().wait()
    """
)


@pytest.fixture(scope="module")
def llama_server():
    """llama.cpp's OpenAI-compatible server on a free loopback port; its /v1 base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(ensure_model()), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"llama.cpp server exited with {proc.returncode}"
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "llama.cpp server did not answer /v1/models"
            time.sleep(0.5)
        yield url
    finally:
        stop(proc)


def _engine(ready_settings, embedder, url, **overrides):
    settings = ready_settings.model_copy(update={"llm_backend": "openai", "openai_base_url": url, **overrides})
    return rag.Engine(settings, embedder=embedder)


def test_answers_and_streams_through_a_real_openai_compatible_server(llama_server, ready_settings, embedder):
    engine = _engine(ready_settings, embedder, llama_server)
    events = list(engine.ask_stream(Q))
    tokens = [e for e in events if e.kind == "token"]
    final = events[-1].data
    assert events[0].kind == "evidence" and len(tokens) > 3  # streamed, not one block
    assert not final.refused and "1997" in final.answer
    assert any("1997" in c.quote for c in final.citations)
    follow = engine.ask(
        "Which alliance did it join?", [("How long is Finland's border with Russia?", "About 800 miles [1].")]
    )
    assert "Finland" in follow.standalone_question and "NATO" in follow.answer


def test_a_server_slower_than_the_timeout_ends_with_a_clear_error(llama_server, ready_settings, embedder):
    engine = _engine(ready_settings, embedder, llama_server, llm_timeout_s=0.3)
    with pytest.raises(ModelError, match=r"did not finish within 0\.3 s"):
        engine.ask("Why did the Baltic states leave the convention, and what do critics say?")


def test_an_unreachable_server_ends_with_a_clear_error(ready_settings, embedder):
    engine = _engine(ready_settings, embedder, f"http://127.0.0.1:{free_port()}/v1")
    started = time.monotonic()
    with pytest.raises(ModelError, match="could not reach the language model server") as caught:
        engine.ask(Q)
    assert "127.0.0.1" in str(caught.value) and time.monotonic() - started < 30
