"""Start a real, throwaway PostgreSQL server for tests and benchmarks.

    srv = PgServer().start()          # raises PgUnavailable(reason) if it can't
    url = srv.create_database()       # "postgresql+psycopg://postgres@127.0.0.1:PORT/NAME"
    ...
    srv.drop_database(url_or_name)
    srv.pause(); srv.resume()         # an outage: stopped and started again on the same port
    srv.stop()                        # idempotent; also runs at exit

The server lives in a private temp dir (data, socket, log), listens on a free
port on 127.0.0.1 only, trusts every local connection and runs with fsync off:
fast, and fine for data nobody needs to keep.  When we run as root (initdb
refuses root) initdb and pg_ctl run as the ``postgres`` OS user.

A small watchdog process holds a pipe to us and stops the server if we die
without running ``stop()`` (SIGKILL, os._exit), so no postgres outlives us.

``python tests/pgserver.py`` starts a server, prints a fresh database URL as
JSON on stdout and keeps it running until Ctrl-C / SIGTERM.

No pytest in here: the fixtures live in tests/pg_fixtures.py.
"""

from __future__ import annotations

import atexit
import glob
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

__all__ = ["PgServer", "PgUnavailable", "find_bindir", "to_libpq"]

_PG_USER = "postgres"  # both the OS user (when root) and the DB superuser
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_INSTALL_HINT = "install it with: apt-get install -y postgresql"


class PgUnavailable(RuntimeError):
    """A PostgreSQL server cannot be started here; str(exc) says why."""


def _version_key(path: str) -> tuple[int, ...]:
    name = os.path.basename(os.path.dirname(path.rstrip("/")))  # .../15/bin -> 15
    return tuple(int(p) for p in re.findall(r"\d+", name)) or (0,)


def find_bindir() -> str:
    """Directory holding initdb and pg_ctl: PATH, then `pg_config --bindir`,
    then /usr/lib/postgresql/*/bin, newest version first."""
    candidates: list[str] = []
    found = shutil.which("initdb")
    if found:
        candidates += [os.path.dirname(found), os.path.dirname(os.path.realpath(found))]
    if shutil.which("pg_config"):
        try:
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10).stdout.strip()
            if out:
                candidates.append(out)
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for d in candidates:
        if all(os.access(os.path.join(d, exe), os.X_OK) for exe in ("initdb", "pg_ctl")):
            return d
    raise PgUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH, via pg_config, "
        f"or in /usr/lib/postgresql/*/bin; {_INSTALL_HINT}"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def to_libpq(url: str) -> str:
    """SQLAlchemy URL -> libpq URI that psycopg.connect() accepts."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


class PgServer:
    def __init__(self, base_dir: str | None = None):
        self.base_dir = base_dir
        self.bindir: str | None = None
        self.dir: str | None = None  # everything we create lives under here
        self.data_dir: str | None = None
        self.sock_dir: str | None = None
        self.log_file: str | None = None
        self.startup_seconds: float | None = None
        self._port: int | None = None
        self._owner_pid = os.getpid()
        self._as_postgres: list[str] = []  # command prefix that switches user
        self._watchdog: subprocess.Popen | None = None
        self._lock = threading.Lock()

    # -- properties ---------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("PgServer is not started")
        return self._port

    @property
    def dsn(self) -> str:
        """libpq URI of the maintenance database (for psycopg / psql)."""
        return f"postgresql://{_PG_USER}@127.0.0.1:{self.port}/postgres"

    def url(self, name: str) -> str:
        """SQLAlchemy URL of database `name` on this server."""
        return f"postgresql+psycopg://{_PG_USER}@127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> PgServer:
        if self._port is not None:
            return self
        t0 = time.monotonic()
        self.bindir = find_bindir()
        self._as_postgres = self._user_switch()
        atexit.register(self.stop)
        try:
            self._make_dirs()
            self._initdb()
            self._start_watchdog()
            self._pg_ctl_start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop the server and delete its directory. Safe to call repeatedly."""
        if os.getpid() != self._owner_pid:  # forked child: not ours to stop
            return
        with self._lock:
            atexit.unregister(self.stop)
            if self.data_dir and os.path.exists(os.path.join(self.data_dir, "postmaster.pid")):
                for mode in ("fast", "immediate"):
                    r = self._run(
                        ["pg_ctl", "stop", "-D", self.data_dir, "-m", mode, "-w", "-t", "30"], timeout=40, check=False
                    )
                    if r is not None and r.returncode == 0:
                        break
                else:
                    self._kill_postmaster()
            if self._watchdog is not None:  # EOF on its stdin; it finds nothing left to do
                try:
                    self._watchdog.stdin.close()
                    self._watchdog.wait(timeout=30)
                except (OSError, subprocess.SubprocessError):
                    self._watchdog.kill()
                self._watchdog = None
            for d in {self.dir, self.sock_dir} - {None}:
                shutil.rmtree(d, ignore_errors=True)
            self.dir = self.data_dir = self.sock_dir = None
            self._port = None

    def pause(self) -> None:
        """Stop the server but keep its data, port and directory: a database outage (undo with resume())."""
        self._run(["pg_ctl", "stop", "-D", self.data_dir, "-m", "fast", "-w", "-t", "30"], timeout=40)

    def resume(self) -> None:
        """Start a paused server again, on the same port."""
        self._run(
            [
                "pg_ctl",
                "start",
                "-D",
                self.data_dir,
                "-l",
                self.log_file,
                "-w",
                "-t",
                "60",
                "-o",
                self._server_opts(self.port),
            ],
            timeout=90,
        )

    # -- databases ----------------------------------------------------------
    def _admin(self):
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)

    def create_database(self, name: str | None = None) -> str:
        """CREATE DATABASE (a unique name if None); returns its SQLAlchemy URL."""
        from psycopg import sql

        name = name or f"t_{uuid.uuid4().hex[:16]}"
        _check_name(name)
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE IF EXISTS, first ending any connections still open to it.
        Accepts a bare name or a URL returned by create_database()."""
        from psycopg import sql

        name = name.rsplit("/", 1)[-1].split("?", 1)[0]
        _check_name(name)
        with self._admin() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            force = sql.SQL(" WITH (FORCE)") if conn.info.server_version >= 130000 else sql.SQL("")
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)) + force)

    # -- internals ----------------------------------------------------------
    def _user_switch(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        import pwd

        try:
            pw = pwd.getpwnam(_PG_USER)
        except KeyError:
            raise PgUnavailable(
                f"running as root but there is no '{_PG_USER}' OS user to run initdb as "
                f"(initdb refuses root); {_INSTALL_HINT}"
            ) from None
        self._pg_uid, self._pg_gid = pw.pw_uid, pw.pw_gid
        if shutil.which("runuser"):
            return ["runuser", "-u", _PG_USER, "--"]
        if shutil.which("su"):
            return ["su", _PG_USER, "-s", "/bin/sh", "-c"]  # + one quoted command string
        raise PgUnavailable("running as root, and neither runuser nor su is available to drop to 'postgres'")

    def _cmd(self, argv: list[str]) -> list[str]:
        argv = [os.path.join(self.bindir, argv[0]) if argv[0] in ("initdb", "pg_ctl") else argv[0], *argv[1:]]
        if self._as_postgres[:1] == ["su"]:
            return [*self._as_postgres, shlex.join(argv)]
        return [*self._as_postgres, *argv]

    def _run(self, argv, *, timeout: float, check: bool = True):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        try:
            r = subprocess.run(
                self._cmd(argv),
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                cwd=self.dir or "/",
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            if check:
                raise PgUnavailable(f"{argv[0]} failed: {exc}") from exc
            return None
        if check and r.returncode != 0:
            raise PgUnavailable(
                f"{argv[0]} exited {r.returncode}: {(r.stderr or r.stdout).strip()[-2000:]}" + self._log_tail()
            )
        return r

    def _make_dirs(self) -> None:
        try:
            self.dir = tempfile.mkdtemp(prefix="aictl-pg-", dir=self.base_dir)
            self.sock_dir = os.path.join(self.dir, "sock")
            if len(self.sock_dir) > 80:  # unix socket paths are limited to ~107 bytes
                self.sock_dir = tempfile.mkdtemp(prefix="aictl-pgs-")
            else:
                os.mkdir(self.sock_dir, 0o700)
            if self._as_postgres:
                for d in {self.dir, self.sock_dir}:
                    os.chown(d, self._pg_uid, self._pg_gid)
        except OSError as exc:
            raise PgUnavailable(f"cannot create a directory for the server: {exc}") from exc
        self.data_dir = os.path.join(self.dir, "data")
        self.log_file = os.path.join(self.dir, "postgres.log")
        probe = self._run(["test", "-w", self.dir, "-a", "-w", self.sock_dir], timeout=30, check=False)
        if probe is None or probe.returncode != 0:
            raise PgUnavailable(
                f"the '{_PG_USER}' OS user cannot write to {self.dir} (is a parent directory "
                "closed to it?); pass a base_dir it can reach"
            )

    def _initdb(self) -> None:
        self._run(
            ["initdb", "-D", self.data_dir, "-A", "trust", "-U", _PG_USER, "--no-sync", "-E", "UTF8", "--locale=C"],
            timeout=180,
        )

    def _pg_ctl_start(self) -> None:
        last = ""
        for _attempt in range(5):  # the free port can be taken before we bind it
            port = _free_port()
            r = self._run(
                [
                    "pg_ctl",
                    "start",
                    "-D",
                    self.data_dir,
                    "-l",
                    self.log_file,
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    self._server_opts(port),
                ],
                timeout=90,
                check=False,
            )
            if r is not None and r.returncode == 0:
                self._port = port
                return
            last = (r.stderr or r.stdout).strip() if r is not None else "pg_ctl could not be run"
            if "already in use" not in self._log_tail():
                break
        raise PgUnavailable(f"pg_ctl start failed: {last[-2000:]}" + self._log_tail())

    def _server_opts(self, port: int) -> str:
        return (
            f"-p {port} -k {shlex.quote(self.sock_dir)} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c max_connections=200 -c shared_buffers=64MB"
        )

    def _log_tail(self) -> str:
        try:
            with open(self.log_file or "", errors="replace") as f:
                return "\n--- postgres log (tail) ---\n" + f.read()[-2000:]
        except OSError:
            return ""

    def _start_watchdog(self) -> None:
        """A shell that waits for EOF on a pipe only we hold, then stops the
        server: EOF comes when we exit, however we exit."""
        stop = shlex.join(self._cmd(["pg_ctl", "stop", "-D", self.data_dir, "-m", "immediate", "-w"]))
        script = (
            f"cat >/dev/null; if [ -e {shlex.quote(self.data_dir)}/postmaster.pid ]; then "
            f"{stop}; fi >/dev/null 2>&1; rm -rf {shlex.quote(self.dir)}"
        )
        if self.sock_dir and not self.sock_dir.startswith(self.dir + os.sep):
            script += f" {shlex.quote(self.sock_dir)}"
        try:
            self._watchdog = subprocess.Popen(
                ["/bin/sh", "-c", script],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                cwd="/",
            )
        except OSError as exc:
            raise PgUnavailable(f"cannot start the cleanup watchdog: {exc}") from exc

    def _kill_postmaster(self) -> None:
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as f:
                os.kill(int(f.readline().strip()), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def _check_name(name: str) -> None:
    if not _DB_NAME.match(name):
        raise ValueError(f"unsupported database name {name!r} (want {_DB_NAME.pattern})")


def main() -> int:
    try:
        srv = PgServer().start()
    except PgUnavailable as exc:
        print(f"PostgreSQL unavailable: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds into the finally
    try:
        url = srv.create_database()
        print(
            json.dumps(
                {
                    "url": url,
                    "dsn": srv.dsn,
                    "port": srv.port,
                    "data_dir": srv.data_dir,
                    "log": srv.log_file,
                    "startup_seconds": round(srv.startup_seconds, 3),
                }
            ),
            flush=True,
        )
        print("PostgreSQL running; Ctrl-C to stop", file=sys.stderr, flush=True)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        return 0
    finally:
        srv.stop()


if __name__ == "__main__":
    sys.exit(main())
