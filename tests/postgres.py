"""A throwaway PostgreSQL cluster for the shared-study tests of ``bertfit tune``.

Debian's server binaries (``apt-get install -y postgresql``; ``scripts/install-postgres.sh``)
are started as a cluster of the test's own in a temporary folder, on 127.0.0.1 and a free
port, with its socket in that folder, and stopped at the end; no system service is used. Run
as root (as CI does), the server runs as the ``postgres`` user, since PostgreSQL refuses to
run as root. Only ``BERTFIT_SKIP_POSTGRES=1`` lets the tests skip when the binaries are
missing; otherwise they fail and say what to install.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SKIP_VARIABLE = "BERTFIT_SKIP_POSTGRES"
USER = "bertfit"


def postgres_bin() -> Path | None:
    """The newest installed server's binary folder (``BERTFIT_POSTGRES_BIN`` if set)."""
    if os.environ.get("BERTFIT_POSTGRES_BIN"):
        return Path(os.environ["BERTFIT_POSTGRES_BIN"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    return Path(found[-1]) if found else None


def missing_postgres() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None when they can."""
    folder = postgres_bin()
    programs = ("initdb", "pg_ctl", "postgres")
    if folder is None or not all((folder / name).is_file() for name in programs):
        return (
            "PostgreSQL's server (initdb, pg_ctl, postgres) not found under /usr/lib/postgresql: "
            "run scripts/install-postgres.sh (apt-get install -y postgresql), or set "
            f"BERTFIT_POSTGRES_BIN; {SKIP_VARIABLE}=1 skips these tests"
        )
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root needs runuser (util-linux) to start PostgreSQL as postgres"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a cluster; yield its URL (user ``bertfit``, database ``postgres``, no password)."""
    folder = postgres_bin()
    as_server_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="bertfit-postgres-"))
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    sockets.mkdir()
    if as_server_user:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = _free_port()

    def run(*command: str) -> None:
        result = subprocess.run(
            [*as_server_user, *command], capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            server_log = log.read_text() if log.is_file() else ""
            raise RuntimeError(f"{command[0]} failed:\n{result.stderr}\n{server_log}")

    try:
        run(str(folder / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8")
        options = f"-h 127.0.0.1 -p {port} -k {sockets} -c max_connections=50 -c fsync=off"
        run(str(folder / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w",
            "start")  # fmt: skip
        try:
            yield f"postgresql://{USER}@127.0.0.1:{port}/postgres"
        finally:
            run(str(folder / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
