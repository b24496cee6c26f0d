"""A hypothesis state machine over ingest / edit / delete / rename / re-ingest / restart in a fresh process."""

import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import rag
from rag.load import load

WORDS = "mine border treaty clearance field survey village river bridge convoy report team".split()


def _text(marker: str, n: int, seed: int) -> str:
    body = " ".join(
        f"The {WORDS[(seed + i) % 12]} near the {WORDS[(seed * 3 + i) % 12]} was checked on day {i}." for i in range(n)
    )
    return f"# Note {marker}\n\nThis note carries the tag {marker}. {body}\n"


@pytest.mark.slow
def test_index_state_machine(tmp_path_factory, embedder):
    class IndexMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.root = tmp_path_factory.mktemp("machine")
            (self.root / "corpus").mkdir()
            self.files: dict[str, str] = {}  # name -> marker
            self.counter = 0
            self.engine = self._engine()

        def _engine(self):
            s = rag.Settings(corpus_dir=self.root / "corpus", index_dir=self.root / "index", index_batch_size=5)
            return rag.Engine(s, embedder=embedder)

        def _ingest(self):
            cwd = os.getcwd()
            os.chdir(self.root)
            try:
                report = self.engine.ingest()
            finally:
                os.chdir(cwd)
            assert not report.failed, report.failed

        def _new_marker(self):
            self.counter += 1
            return f"zqtag{self.counter:03d}x"

        @rule(n=st.integers(1, 25), seed=st.integers(0, 50))
        def add(self, n, seed):
            marker = self._new_marker()
            name = f"doc-{marker}.md"
            (self.root / "corpus" / name).write_text(_text(marker, n, seed))
            self.files[name] = marker
            self._ingest()

        @precondition(lambda self: self.files)
        @rule(data=st.data(), n=st.integers(1, 25))
        def edit(self, data, n):
            name = data.draw(st.sampled_from(sorted(self.files)))
            marker = self._new_marker()
            (self.root / "corpus" / name).write_text(_text(marker, n, self.counter))
            self.files[name] = marker
            self._ingest()

        @precondition(lambda self: self.files)
        @rule(data=st.data())
        def delete(self, data):
            name = data.draw(st.sampled_from(sorted(self.files)))
            (self.root / "corpus" / name).unlink()
            del self.files[name]
            self._ingest()

        @precondition(lambda self: self.files)
        @rule(data=st.data())
        def rename(self, data):
            name = data.draw(st.sampled_from(sorted(self.files)))
            new = f"renamed-{self._new_marker()}.md"
            (self.root / "corpus" / name).rename(self.root / "corpus" / new)
            self.files[new] = self.files.pop(name)
            self._ingest()

        @rule()
        def reingest(self):
            self._ingest()

        @rule()
        def restart(self):
            """A fresh process ingests, then a fresh engine reads."""
            env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {"RAG_ANSWER_MODE": "retrieved"}
            run = subprocess.run(
                [sys.executable, "-m", "rag", "ingest"],
                cwd=self.root,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert run.returncode == 0, run.stderr
            self.engine = self._engine()

        @invariant()
        def consistent(self):
            if not (self.root / "index" / "manifest.json").exists():
                return
            docs = self.engine.store.get()
            ids = [d.id for d in docs]
            assert len(ids) == len(set(ids)), "no duplicate chunks"
            assert sorted(ids) == sorted(self.engine.store.records.list_keys()), "chunk count equals the record store's"
            expected = {f"corpus/{n}" for n in self.files}
            assert {d.metadata["source"] for d in docs} == expected, "every chunk traceable to an existing source"
            texts = {src: load(self.root / src).text for src in expected}
            for d in docs:
                assert texts[d.metadata["source"]][d.metadata["start"] : d.metadata["end"]] == d.page_content
            for name, marker in self.files.items():
                hits = self.engine.search(f"tag {marker}", k=3, mode="lexical")
                assert hits and hits[0].source == f"corpus/{name}", (marker, [h.source for h in hits])

    IndexMachine.TestCase.settings = settings(
        max_examples=6, stateful_step_count=8, deadline=None, suppress_health_check=list(HealthCheck)
    )
    IndexMachine.TestCase().runTest()
