"""Real servers the tests start on 127.0.0.1 and stop after: a Chroma server (`chroma run`) and a PostgreSQL 15
(Debian's binaries, `initdb` + `postgres` in a temporary directory). Each can be stopped and started again on the
same data and port, for the tests of a service that goes down under a running process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def stop(proc: subprocess.Popen, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """End a server process the tests started: `sig` (terminate), then kill if it lingers."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class _Server:
    """A server process on a fixed loopback port, started and stopped again at will."""

    port: int
    proc: subprocess.Popen | None = None
    stop_signal = signal.SIGTERM

    def _spawn(self, argv: list[str], **user: str) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **user)
        wait_for_port(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, timeout=30, sig=self.stop_signal)
            self.proc = None


class Chroma(_Server):
    """`chroma run` on a data directory and a fixed port."""

    def __init__(self, data: Path) -> None:
        self.data, self.port = data, free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> Chroma:
        chroma = Path(sys.executable).with_name("chroma")
        self._spawn([str(chroma), "run", "--path", str(self.data), "--host", "127.0.0.1", "--port", str(self.port)])
        return self


class Postgres(_Server):
    """A PostgreSQL 15 cluster in a temporary directory, run as the `postgres` user when the tests run as root
    (PostgreSQL refuses root); `url` is its SQLAlchemy URL. Stopped fast (SIGINT): open connections are cut, as
    when the server goes away."""

    stop_signal = signal.SIGINT

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            from .helpers import missing  # here: helpers imports this module

            missing("Debian's postgresql", "apt-get install postgresql")
        self.as_user = {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}
        self.root = Path(tempfile.mkdtemp(prefix="rag-postgres-"))  # not under pytest's root-only directory
        if self.as_user:
            shutil.chown(self.root, "postgres", "postgres")
        subprocess.run(
            [str(PG_BIN / "initdb"), "-D", str(self.root / "data"), "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
            **self.as_user,
        )
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> Postgres:
        data = str(self.root / "data")
        self._spawn(
            [
                str(PG_BIN / "postgres"),
                "-D",
                data,
                "-p",
                str(self.port),
                "-k",
                str(self.root),
                "-c",
                "listen_addresses=127.0.0.1",
            ],
            **self.as_user,
        )
        return self

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
