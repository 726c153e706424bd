"""A throwaway PostgreSQL server for tests, from Debian's `postgresql` package.

`initdb` + `pg_ctl` in a temporary directory, trust auth, loopback only, a free port, no fsync
(a test server: speed over crash safety). `initdb` refuses to run as root, so as root the
server runs as the `postgres` user (`runuser -u postgres --`). Each test gets its own
database (`PgServer.create_database`), so tests never see each other's rows.

Used by the session fixture `pg_server` in tests/conftest.py; other code can call
`start_server()` directly (e.g. a benchmark), and must call `stop()`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "apt-get install -y postgresql (scripts/setup.sh does it)"


def pg_bindir() -> Path | None:
    """The directory holding initdb/pg_ctl/postgres: $PATH first, else Debian's newest /usr/lib/postgresql/N/bin."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def missing_reason() -> str | None:
    """Why no server can be started here (None when one can)."""
    bindir = pg_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        return f"PostgreSQL binaries (initdb, pg_ctl) not found; {INSTALL_HINT}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run initdb as (initdb refuses root)"
        if shutil.which("runuser") is None:
            return "running as root without `runuser` to start PostgreSQL as the postgres user"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class PgServer:
    """A running throwaway server; `url(db)` is a psycopg/soutui URL for database `db`."""

    bindir: Path
    root: Path
    port: int
    host: str = "127.0.0.1"
    user: str = "postgres"

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def _sql(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(sql)  # type: ignore[arg-type]

    def create_database(self, name: str | None = None) -> str:
        """A fresh empty database; returns its URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self._sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self._sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        subprocess.run(
            _as_owner([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop"]),
            capture_output=True, check=False,
        )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


def start_server(timeout_s: int = 60) -> PgServer:
    """initdb + pg_ctl start in a new temp dir; raises RuntimeError (with the server log) on failure."""
    reason = missing_reason()
    if reason:
        raise RuntimeError(reason)
    bindir = pg_bindir()
    assert bindir is not None
    # /tmp: short enough for the server's unix socket path, and open to the postgres user (a
    # private $TMPDIR under /root would not be)
    root = Path(tempfile.mkdtemp(prefix="soutui-pg-", dir="/tmp" if Path("/tmp").is_dir() else None))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    server = PgServer(bindir=bindir, root=root, port=_free_port())
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    init = subprocess.run(
        _as_owner([str(bindir / "initdb"), "-D", str(server.datadir), "-U", "postgres", "-A", "trust",
                   "-E", "UTF8", "--no-sync"]),
        capture_output=True, text=True, env=env, cwd=root,
    )  # fmt: skip
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {init.stderr.strip()[-2000:]}")
    options = (
        f"-c port={server.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
        "-c shared_buffers=32MB"
    )
    log = root / "server.log"
    start = subprocess.run(
        _as_owner([str(bindir / "pg_ctl"), "-D", str(server.datadir), "-l", str(log), "-o", options,
                   "-w", "-t", str(timeout_s), "start"]),
        capture_output=True, text=True, env=env, cwd=root,
    )  # fmt: skip
    if start.returncode != 0:
        text = log.read_text(errors="replace")[-2000:] if log.exists() else start.stderr
        server.stop()
        raise RuntimeError(f"pg_ctl start failed: {text}")
    return server
