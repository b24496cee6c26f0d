"""Real servers the tests start on 127.0.0.1 and stop after: a Chroma server (`chroma run`) and a PostgreSQL 15
(Debian's binaries, `initdb` + `postgres` in a temporary directory). Each can be stopped and started again on the
same data and port, for the tests of a service that goes down under a running process."""

from __future__ import annotations

import os
import shutil
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


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """End a server process the tests started: terminate, then kill if it lingers."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Chroma:
    """`chroma run` on a data directory and a fixed port."""

    def __init__(self, data: Path) -> None:
        self.data, self.port, self.proc = data, free_port(), None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> Chroma:
        chroma = Path(sys.executable).with_name("chroma")
        self.proc = subprocess.Popen(
            [str(chroma), "run", "--path", str(self.data), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


class Postgres:
    """A PostgreSQL 15 cluster in a temporary directory, run as the `postgres` user when the tests run as root
    (PostgreSQL refuses root); `url` is its SQLAlchemy URL."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError("Debian's postgresql is missing: apt-get install postgresql (.ci/run does)")
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
        self.port, self.proc = free_port(), None
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> Postgres:
        self.proc = subprocess.Popen(
            [str(PG_BIN / "postgres"), "-D", str(self.root / "data"), "-p", str(self.port), "-k", str(self.root)]
            + ["-c", "listen_addresses=127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **self.as_user,
        )
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        """A fast shutdown (SIGINT): open connections are cut, as when the server goes away."""
        if self.proc is not None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
