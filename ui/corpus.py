"""The Corpus tab: the indexed documents and the corpus files that are not indexed, and (when the admin actions are
on, for the named admins when there is a login) upload, re-index and remove. Who may act is decided on the server from
the request's login for every action; the hidden controls only spare the others a refusal."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import NamedTuple

import gradio as gr

import rag

log = logging.getLogger(__name__)

OFF = "Managing the corpus is turned off (start with `RAG_UI_ADMIN=1` to turn it on)."
OPEN_ADMIN = "the corpus actions are on without a login: anyone who can reach this page can change the corpus."


def read_only(admins: tuple[str, ...]) -> str:
    """The status line of a logged-in user who is not a corpus admin."""
    return f"Read only: only {', '.join(admins) or 'the admins named in `RAG_UI_ADMINS`'} can change the corpus."


def may_manage(settings: rag.Settings, admin: bool, user: str | None) -> bool:
    """Whether `user` (the request's login; none without a login) may change the corpus: with a login, the admins
    named in `ui_admins` only; without one, whoever reaches the page (serving allows that on loopback only)."""
    if not admin:
        return False
    if settings.login is None:
        return True
    return bool(user) and user in settings.admins


def listed(engine: rag.Engine) -> list[dict]:
    """The indexed documents (reads every chunk's metadata: call it once per page build or action)."""
    return engine.admin.documents() if engine.has_index() else []


class _Tab(NamedTuple):
    """The tab's components that the actions read or change."""

    table: gr.Dataframe
    failed: gr.Dataframe
    status: gr.Markdown
    controls: gr.Row
    upload: gr.File
    reindex: gr.Button
    remove_choice: gr.Dropdown
    remove: gr.Button


def corpus_tab(engine: rag.Engine, docs: list[dict], admin: bool, warning: str = "") -> None:
    """Lay out the tab's components inside the current Blocks and wire the admin actions; `admin`: the actions are
    on (with a login, for the admins named in `ui_admins`)."""
    s = engine.settings
    everyone = admin and s.login is None  # who may act is known when the page is built; else at each page load
    tab = _layout(engine, docs, admin, everyone, warning)
    _wire_actions(engine, admin, tab)
    if admin and not everyone:
        _wire_admin_page(s, admin, tab)


def _layout(engine: rag.Engine, docs: list[dict], admin: bool, everyone: bool, warning: str) -> _Tab:
    """The tables of the indexed and the not-indexed documents, the status line, and the admin controls (shown and
    usable when `everyone` may act)."""
    s = engine.settings
    if warning:
        gr.Markdown(warning, elem_id="admin-warning")
    table = gr.Dataframe(
        _rows(docs),
        headers=["title", "source", "chunks", "indexed"],
        interactive=False,
        label="Indexed documents",
        elem_id="corpus-table",
    )
    missing = not_indexed(engine)
    failed = gr.Dataframe(
        _failed_rows(missing),
        headers=["source", "why"],
        interactive=False,
        label="In the corpus but not indexed",
        visible=bool(missing),
        elem_id="corpus-failed",
    )
    status = gr.Markdown("" if everyone else read_only(s.admins) if admin else OFF, elem_id="corpus-status")
    with gr.Row(visible=everyone, elem_id="corpus-admin") as controls:
        upload = gr.File(
            label="Add documents",
            file_count="multiple",
            file_types=list(engine.admin.supported_types),
            interactive=everyone,
            elem_id="corpus-upload",
        )
        with gr.Column():
            reindex = gr.Button("Re-index the corpus", interactive=everyone, elem_id="corpus-reindex")
            remove_choice = gr.Dropdown(_removable(docs, missing), label="Document", elem_id="corpus-document")
            remove = gr.Button("Remove document", variant="stop", interactive=everyone, elem_id="corpus-remove")
    return _Tab(table, failed, status, controls, upload, reindex, remove_choice, remove)


def _wire_actions(engine: rag.Engine, admin: bool, tab: _Tab) -> None:
    """Upload, re-index and remove, each checked against the request's login, then the tab refreshed."""
    s = engine.settings

    def do_upload(files, request: gr.Request, progress=gr.Progress()):  # noqa: B008 (Gradio injects it)
        _allowed(s, admin, request)
        reports = []
        for f in progress.tqdm(files or [], desc="indexing"):
            path = Path(f if isinstance(f, str) else f.name)
            reports.append(_said(engine.admin.add_file(path.name, path.read_bytes())))
        return _refreshed(engine, "Indexed: " + "; ".join(reports))

    def do_reindex(request: gr.Request, progress=gr.Progress()):  # noqa: B008 (Gradio injects it)
        _allowed(s, admin, request)
        progress(0, desc="indexing")
        return _refreshed(engine, "Re-indexed: " + _said(engine.ingest()))

    def do_remove(source, request: gr.Request):
        _allowed(s, admin, request)
        if not source:
            return _refreshed(engine, "Choose a document first.")
        return _refreshed(engine, f"Removed {source}: " + _said(engine.admin.remove_document(source)))

    outs = [tab.status, tab.table, tab.failed, tab.remove_choice]  # in the order `_refreshed` returns them
    tab.upload.upload(_guard(do_upload), inputs=[tab.upload], outputs=outs, api_visibility="private")
    tab.reindex.click(_guard(do_reindex), outputs=outs, api_visibility="private")
    tab.remove.click(_guard(do_remove), inputs=[tab.remove_choice], outputs=outs, api_visibility="private")


def _wire_admin_page(s: rag.Settings, admin: bool, tab: _Tab) -> None:
    """With a login, turn the controls on at page load for an admin's page."""

    def shown_to(request: gr.Request):
        """The controls for an admin's page (the others keep the read-only tab the page was built with)."""
        if not may_manage(s, admin, getattr(request, "username", None)):
            return gr.update(), gr.update(), gr.update(), gr.update(), gr.update()
        on = gr.update(interactive=True)
        return "", gr.update(visible=True), on, on, on

    outputs = [tab.status, tab.controls, tab.upload, tab.reindex, tab.remove]
    gr.on(triggers=None, fn=shown_to, outputs=outputs, api_visibility="private")


def _allowed(s: rag.Settings, admin: bool, request: gr.Request | None) -> None:
    """Refuse the action unless the request's login may change the corpus."""
    user = getattr(request, "username", None) if request is not None else None
    if not may_manage(s, admin, user):
        require(admin)
        raise rag.RagError(
            f"only the corpus admins (RAG_UI_ADMINS) can change the corpus; {user or 'this login'} is not one"
        )


def _refreshed(engine: rag.Engine, message: str):
    """The tab after an action: `message` in the status line, the tables and the document choice read again."""
    now, gone = listed(engine), not_indexed(engine)
    return (
        message,
        _rows(now),
        gr.update(value=_failed_rows(gone), visible=bool(gone)),
        gr.update(choices=_removable(now, gone), value=None),
    )


def require(admin: bool) -> None:
    if not admin:
        raise rag.RagError("managing the corpus is turned off on this server")


def not_indexed(engine: rag.Engine) -> list[dict]:
    """The corpus files that are not indexed, each with why when known."""
    try:
        return engine.admin.not_indexed()
    except rag.RagError as exc:  # e.g. the index's services do not answer: the tab still shows what it can
        log.warning("could not list the corpus files that are not indexed: %s", exc)
        return []


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


def _failed_rows(missing: list[dict]) -> list[list]:
    return [[d["source"], d["reason"]] for d in missing]


def _removable(docs: list[dict], missing: list[dict]) -> list[str]:
    return sorted({d["source"] for d in docs} | {d["source"] for d in missing})


def _said(report: rag.IngestReport) -> str:
    """A report's summary and, for each file that failed, why (one line each)."""
    return report.summary() + "".join(f"; failed: {src}: {why}" for src, why in sorted(report.failed.items()))
