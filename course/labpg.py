"""A PostgreSQL server for lab 13: the learner's own ($SOUTUI_PG_URL), or a throwaway one.

The throwaway server comes from Debian's `postgresql` package (`apt-get install postgresql`;
scripts/setup.sh installs it): `initdb` and `pg_ctl` from /usr/lib/postgresql/<version>/bin in a
temporary directory, trust authentication, loopback only, a free port, fsync off (a lab server:
speed over crash safety). `initdb` refuses to run as root, so as root the server runs as the
`postgres` user. It is stopped, and its directory removed, when the Python process exits: at exit,
or by a small watchdog process when the process is killed (a Jupyter kernel killed by its client
never runs its exit hooks).

    url = labpg.database("shop13")   # postgresql://postgres@127.0.0.1:PORT/shop13, created empty
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

_SERVER: dict[str, object] = {}  # the one throwaway server of this process: bindir, root, port


def bindir() -> Path:
    """Where initdb and pg_ctl live: $PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise FileNotFoundError("no PostgreSQL server binaries: apt-get install -y postgresql "
                                "(scripts/setup.sh does it), or set SOUTUI_PG_URL to a server you have")
    return Path(found[-1]).parent


def _as_owner(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse root: run them as the `postgres` user then."""
    if os.geteuid() != 0:
        return cmd
    pwd.getpwnam("postgres")  # KeyError: the package creates this user
    return ["runuser", "-u", "postgres", "--", *cmd]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(cmd: list[str], root: Path) -> None:
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    done = subprocess.run(_as_owner(cmd), capture_output=True, text=True, env=env, cwd=root)
    if done.returncode != 0:
        log = root / "server.log"
        text = log.read_text(errors="replace") if log.exists() else done.stderr
        raise RuntimeError(f"{Path(cmd[0]).name} failed: {text.strip()[-1500:]}")


def start() -> str:
    """Start the throwaway server (once per process); returns the URL of its `postgres` database."""
    if not _SERVER:
        bin_ = bindir()
        # /tmp: short enough for the unix socket path and open to the postgres user
        root = Path(tempfile.mkdtemp(prefix="soutui-lab-pg-", dir="/tmp"))
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(root, owner.pw_uid, owner.pw_gid)
        port = _free_port()
        _SERVER.update(bindir=bin_, root=root, port=port)
        atexit.register(stop)
        _run([str(bin_ / "initdb"), "-D", str(root / "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8",
              "--no-sync"], root)
        options = (f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100 "
                   "-c shared_buffers=32MB")
        _run([str(bin_ / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "server.log"), "-o", options,
              "-w", "-t", "60", "start"], root)
        _watchdog(os.getpid(), _as_owner([str(bin_ / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate",
                                          "-w", "stop"]), root)
    return f"postgresql://postgres@127.0.0.1:{_SERVER['port']}/postgres"


_WATCHDOG = """
import os, shutil, subprocess, sys, time
pid, root, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
while True:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    time.sleep(1)
if os.path.isdir(root):
    subprocess.run(cmd, capture_output=True, check=False, cwd=root)
    shutil.rmtree(root, ignore_errors=True)
"""


def _watchdog(pid: int, stop_cmd: list[str], root: Path) -> None:
    """A detached process that stops the server when process `pid` is gone, however it ended: a Jupyter
    kernel killed by its client never runs its atexit hooks."""
    subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(pid), str(root), *stop_cmd], cwd=root,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)


def stop() -> None:
    """Stop the throwaway server and remove its directory (registered to run at exit)."""
    if not _SERVER:
        return
    root = Path(str(_SERVER["root"]))
    if (root / "data" / "postmaster.pid").exists():
        pg_ctl = Path(str(_SERVER["bindir"])) / "pg_ctl"
        subprocess.run(_as_owner([str(pg_ctl), "-D", str(root / "data"), "-m", "immediate", "-w", "stop"]),
                       capture_output=True, check=False, cwd=root)
    shutil.rmtree(root, ignore_errors=True)
    _SERVER.clear()


def database(name: str) -> str:
    """A fresh, empty database `name`: on $SOUTUI_PG_URL's server when set, else on the throwaway one.

    An existing database of that name is dropped first (the lab owns it), so re-running a lab starts clean.
    """
    import psycopg
    from psycopg import sql

    admin = os.environ.get("SOUTUI_PG_URL") or start()
    with psycopg.connect(admin, autocommit=True) as con:
        con.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return urllib.parse.urlsplit(admin)._replace(path="/" + name).geturl()  # keeps user, password, ?options
