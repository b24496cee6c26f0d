"""The Corpus tab: the indexed documents, and (when the admin actions are on) upload, re-index and remove."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import gradio as gr

import rag

log = logging.getLogger(__name__)

OFF = "Managing the corpus is turned off (start with `RAG_UI_ADMIN=1` to turn it on)."
OPEN_ADMIN = "the corpus actions are on without a login: anyone who can reach this page can change the corpus."


def listed(engine: rag.Engine) -> list[dict]:
    """The indexed documents (reads every chunk's metadata: call it once per page build or action)."""
    return engine.documents() if engine.has_index() else []


def corpus_tab(engine: rag.Engine, docs: list[dict], admin: bool, warning: str = "") -> None:
    """Lay out the tab's components inside the current Blocks and wire the admin actions."""
    if warning:
        gr.Markdown(warning, elem_id="admin-warning")
    table = gr.Dataframe(
        _rows(docs), headers=["title", "source", "chunks", "indexed"], interactive=False, label="Indexed documents", elem_id="corpus-table"
    )
    status = gr.Markdown("" if admin else OFF, elem_id="corpus-status")
    with gr.Row(visible=admin, elem_id="corpus-admin"):
        upload = gr.File(
            label="Add documents",
            file_count="multiple",
            file_types=list(engine.supported_types),
            interactive=admin,
            elem_id="corpus-upload",
        )
        with gr.Column():
            reindex = gr.Button("Re-index the corpus", interactive=admin, elem_id="corpus-reindex")
            remove_choice = gr.Dropdown([d["source"] for d in docs], label="Document", elem_id="corpus-document")
            remove = gr.Button("Remove document", variant="stop", interactive=admin, elem_id="corpus-remove")

    def refreshed(message: str):
        now = listed(engine)
        return message, _rows(now), gr.update(choices=[d["source"] for d in now], value=None)

    def do_upload(files, progress=gr.Progress()):  # noqa: B008 (Gradio injects it)
        require(admin)
        reports = []
        for f in progress.tqdm(files or [], desc="indexing"):
            path = Path(f if isinstance(f, str) else f.name)
            reports.append(engine.add_file(path.name, path.read_bytes()).summary())
        return refreshed("Indexed: " + "; ".join(reports))

    def do_reindex(progress=gr.Progress()):  # noqa: B008 (Gradio injects it)
        require(admin)
        progress(0, desc="indexing")
        return refreshed("Re-indexed: " + engine.ingest().summary())

    def do_remove(source):
        require(admin)
        if not source:
            return refreshed("Choose a document first.")
        return refreshed(f"Removed {source}: " + engine.remove_document(source).summary())

    outs = [status, table, remove_choice]
    upload.upload(_guard(do_upload), inputs=[upload], outputs=outs, api_visibility="private")
    reindex.click(_guard(do_reindex), outputs=outs, api_visibility="private")
    remove.click(_guard(do_remove), inputs=[remove_choice], outputs=outs, api_visibility="private")


def require(admin: bool) -> None:
    if not admin:
        raise rag.RagError("managing the corpus is turned off on this server")


def _guard(fn):
    """Admin actions show a one-line message on failure, never a stack trace."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except rag.RagError as exc:
            raise gr.Error(str(exc)) from None
        except Exception:
            log.exception("corpus action failed")
            raise gr.Error("The corpus action failed; see the server log.") from None

    return wrapper


def _rows(docs: list[dict]) -> list[list]:
    return [[d["title"], d["source"], d["chunks"], d["indexed_at"]] for d in docs]
