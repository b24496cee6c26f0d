"""#29.8: a service that does not answer is the server's trouble, said in neutral words, never the client's fault. With
the PostgreSQL of the records and the saved conversations stopped under a running `rag serve`: the API answers 503
(a client may retry; no address or driver text), and the chat still answers and says the conversation could not be
saved, as "New chat" does, instead of failing silently or with an empty error."""

import re

import httpx
import pytest

from .servers import Postgres

pytestmark = [pytest.mark.server, pytest.mark.postgres]
Q1 = "When was the Ottawa Convention signed?"
Q2 = "How long is Finland's border with Russia?"
BALTIC = "corpus/baltic-states-poland-finland-leave-ottawa-convention.md"


def _neutral(r: httpx.Response, pg: Postgres) -> None:
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["type"] == "server_error" and r.headers["retry-after"]
    for leak in (str(pg.port), "127.0.0.1", "psycopg", "postgres", "connection", "RAG_RECORD_DB_URL"):
        assert leak.lower() not in error["message"].lower(), error["message"]


def test_the_api_says_503_in_neutral_words_and_the_chat_that_it_could_not_save(postgres_served):
    from gradio_client import Client

    engine, url, pg = postgres_served
    chat = {"model": "rag", "messages": [{"role": "user", "content": Q2}], "sources": [BALTIC]}
    search = {"query": "Finland border", "sources": [BALTIC]}
    assert httpx.post(f"{url}/v1/chat/completions", json=chat, timeout=60).status_code == 200
    assert httpx.post(f"{url}/v1/search", json=search, timeout=60).status_code == 200
    unknown = httpx.post(f"{url}/v1/chat/completions", json=chat | {"sources": ["corpus/none.md"]}, timeout=60)
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "sources"  # the client's own mistake

    pg.stop()
    _neutral(httpx.post(f"{url}/v1/chat/completions", json=chat, timeout=60), pg)  # was 400 with the address
    _neutral(httpx.post(f"{url}/v1/search", json=search, timeout=60), pg)

    text, *_, status = Client(url + "/", verbose=False).predict(Q2, 4, "local", api_name="/respond")
    assert re.search(r"\[\d+\]\.$", text), text  # answered (and cited) from what is open
    assert "could not be saved" in status, status  # and said it could not be saved

    pg.start()  # back: the next answer is saved again, and the line cleared
    text, *_, status = Client(url + "/", verbose=False).predict(Q1, 4, "local", api_name="/respond")
    assert re.search(r"\[\d+\]\.$", text) and status == ""
    assert [s.title for s in engine.conversations.list("")] == [Q1]
