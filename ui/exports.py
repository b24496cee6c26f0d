"""This process's folder of exported conversations (the chat's download files), and the removal of those that
processes which are gone left behind (a server stopped by SIGKILL, or by SIGTERM before it removed its own).

The folder's name carries the process id (`rag-exports-<pid>-<random>` in the temporary directory), so a server
removes only folders whose process no longer runs: two servers on one machine keep each other's.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "rag-exports-"
_OWNED = re.compile(re.escape(PREFIX) + r"(\d+)-")

_folder: tempfile.TemporaryDirectory | None = None  # made on first use; removed by `remove` or when the process ends
_lock = threading.Lock()


def folder() -> Path:
    """This process's export folder, made on first use."""
    global _folder
    with _lock:
        if _folder is None:
            _folder = tempfile.TemporaryDirectory(prefix=f"{PREFIX}{os.getpid()}-")
        return Path(_folder.name)


def remove() -> None:
    """Remove this process's export folder (made again on the next export)."""
    global _folder
    with _lock:
        if _folder is not None:
            _folder.cleanup()
            _folder = None


def remove_stale(where: Path | None = None) -> list[Path]:
    """Remove the export folders in `where` (the temporary directory) whose process is gone; returns them. A folder
    without a process id in its name (an older version's) is left alone: nothing says whether it is still in use."""
    removed = []
    for path in sorted(Path(where or tempfile.gettempdir()).glob(PREFIX + "*")):
        owned = _OWNED.match(path.name)
        if owned and path.is_dir() and not path.is_symlink() and not _running(int(owned.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.info("removed %d export folder(s) left by stopped servers", len(removed))
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only whether the process exists
    except (ProcessLookupError, OverflowError):  # gone, or an id no process can have
        return False
    except PermissionError:  # another user's process: running
        return True
    return True
