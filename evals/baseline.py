"""The plain LangChain recipe users start from, with the same embedding model and LLM: the benchmark's baseline."""

from __future__ import annotations

import tempfile
import time
from typing import Any

from evals.scoring import is_refusal

STUFF = (
    "Use the following pieces of context to answer the question at the end. "
    "If you don't know the answer, just say that you don't know, don't try to make up an answer.\n"
    "\n"
    "{context}\n"
    "\n"
    "Question: {question}\n"
    "Helpful Answer:"
)


class Baseline:
    """RecursiveCharacterTextSplitter(1000, 200) -> Chroma.from_documents -> similarity k=4 -> "stuff" prompt."""

    def __init__(self, embedder: Any, llm: Any) -> None:
        self.embedder = embedder
        self.llm = llm
        self._dir = tempfile.TemporaryDirectory(prefix="rag-baseline-")
        self.retriever: Any = None

    def ingest(self, documents: list[tuple[str, str]]) -> int:
        """Index (source, text) pairs: the same text our loader reads, so only chunking, retrieval and prompt differ."""
        import chromadb
        from chromadb.config import Settings as ChromaSettings
        from langchain_chroma import Chroma
        from langchain_core.documents import Document
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        docs = [Document(page_content=text, metadata={"source": source}) for source, text in documents]
        chunks = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_documents(docs)
        client = chromadb.PersistentClient(path=self._dir.name, settings=ChromaSettings(anonymized_telemetry=False))
        store = Chroma.from_documents(chunks, self.embedder, client=client, collection_name="baseline")
        self.retriever = store.as_retriever(search_type="similarity", search_kwargs={"k": 4})
        return len(chunks)

    def ask(self, question: str) -> dict:
        from langchain_core.messages import HumanMessage

        started = time.perf_counter()
        docs = self.retriever.invoke(question)
        retrieved = time.perf_counter()
        prompt = STUFF.format(context="\n\n".join(d.page_content for d in docs), question=question)
        parts, first = [], None
        for chunk in self.llm.stream([HumanMessage(prompt)]):
            if first is None and chunk.content:
                first = time.perf_counter()
            parts.append(chunk.content)
        done = time.perf_counter()
        answer = "".join(parts)
        return {
            "answer": answer,
            "refused": is_refusal(answer),  # the same rule as ours: read from the text
            "retrieve_ms": (retrieved - started) * 1000,
            "first_token_ms": ((first or done) - started) * 1000,
            "total_ms": (done - started) * 1000,
        }
