"""The agents image's root filesystem, assembled from this host's programs (agents_image.py builds the image).

`plan_rootfs` collects: the programs named in PROGRAMS as PATH finds them,
Python's standard library (without its tests, IDLE and tk), git's helpers, the
C.UTF-8 locale, the CA bundle, every shared library those ELF files need (ldd),
and the npm package directories of the agent CLIs that .ci/install-agent-clis
put under agent_clis_prefix(). Paths keep their host layout, symbolic links
included (so /lib64/ld-linux-x86-64.so.2 resolves as on the host); the CLIs land
under /opt/aictl/agent-clis with `claude` and `codex` on PATH. `Rootfs.digest`
covers the recipe, the sandbox uid and every input's path, size, mode and mtime;
`write_rootfs` writes the tarball `docker import` takes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aictl.sandbox.base import SandboxError
from aictl.sandbox.image import SANDBOX_PATH, _passwd
from aictl.sandbox.ownership import sandbox_user

CLIS_IN_IMAGE = "/opt/aictl/agent-clis"
# Bumped whenever the recipe below changes what lands in the image.
RECIPE = "agents-rootfs-1"
# The programs an agent's shell commands and the CLIs expect; a missing optional one is skipped.
PROGRAMS = {
    "required": ["sh", "bash", "env", "git", "node", "ls", "cat", "cp", "mv", "rm", "mkdir", "sed", "grep"],
    "optional": [
        *("chmod", "ln", "touch", "head", "tail", "wc", "sort", "uniq", "cut", "tr", "tee", "find", "xargs"),
        *("diff", "cmp", "date", "echo", "printf", "test", "true", "false", "pwd", "basename", "dirname"),
        *("readlink", "realpath", "id", "whoami", "sleep", "stat", "du", "mktemp", "uname", "tar", "gzip"),
        *("curl", "rg", "which", "patch", "awk", "ps", "kill", "timeout", "rmdir", "expr", "seq", "md5sum"),
        *("sha256sum", "nproc", "hostname"),
    ],
}
PYTHON_CANDIDATES = ["/usr/bin/python3", "/usr/local/bin/python3"]
# Parts of the standard library an agent's commands do not need (tests alone are ~30 MB).
STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "site-packages", "dist-packages", "__pycache__"}
DATA_DIRS = ["/usr/lib/git-core", "/usr/share/git-core/templates", "/usr/lib/locale/C.utf8"]
CA_BUNDLES = ["/etc/ssl/certs/ca-certificates.crt"]
CLI_PACKAGES = {"claude-code": "@anthropic-ai/claude-code", "codex": "@openai/codex"}
CLI_BINS = ["claude", "codex"]
NO_CLIS_HINT = "install the pinned CLIs first: .ci/install-agent-clis"


@dataclass
class Rootfs:
    """What goes into the image: archive path -> host path (a file, a dir to walk, or a symlink), plus made files."""

    paths: dict[str, str] = field(default_factory=dict)
    made: dict[str, bytes] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    python: str = ""

    def digest(self, uid: int, gid: int) -> str:
        h = hashlib.sha256(f"{RECIPE}\0{uid}:{gid}\0".encode())
        for arc, host in sorted(self.paths.items()):
            for name, st in _walk(arc, Path(host)):
                h.update(f"{name}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        for arc, data in sorted(self.made.items()):
            h.update(f"{arc}\0".encode() + hashlib.sha256(data).digest())
        for arc, target in sorted(self.links.items()):
            h.update(f"{arc}\0{target}\0".encode())
        return h.hexdigest()


def _walk(arc: str, host: Path) -> Iterable[tuple[str, os.stat_result]]:
    """(archive name, lstat) for host and, when it is a directory, everything under it (links not followed).

    A Python standard library (it has os.py) is walked without STDLIB_SKIP's directories.
    """
    st = host.lstat()
    yield arc, st
    if stat.S_ISDIR(st.st_mode):
        skip = STDLIB_SKIP if (host / "os.py").is_file() else set()
        for top, dirs, files in os.walk(host):
            dirs[:] = sorted(d for d in dirs if d not in skip)
            rel = os.path.relpath(top, host)
            for name in sorted(dirs) + sorted(files):
                path = os.path.join(top, name)
                yield os.path.normpath(os.path.join(arc, rel, name)), os.lstat(path)


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _with_parents(fs: Rootfs, path: str) -> None:
    """Add `path` (absolute, on this host) and every symlink on the way to it, so it resolves in the image too."""
    parts = Path(path).parts[1:]
    cur = "/"
    for i, part in enumerate(parts):
        cur = os.path.join(cur, part)
        arc = cur.lstrip("/")
        if arc in fs.links or arc in fs.paths:
            if arc in fs.links:  # continue under the link's target
                target = os.path.normpath(os.path.join(os.path.dirname(cur), os.readlink(cur)))
                _with_parents(fs, os.path.join(target, *parts[i + 1 :]))
                return
            continue
        if os.path.islink(cur):
            fs.links[arc] = os.readlink(cur)
            target = os.path.normpath(os.path.join(os.path.dirname(cur), os.readlink(cur)))
            _with_parents(fs, os.path.join(target, *parts[i + 1 :]))
            return
        if i == len(parts) - 1:
            fs.paths[arc] = cur


def _libraries(elves: list[str]) -> set[str]:
    """Every shared library (and the loader) the ELF files need, as ldd resolves them on this host."""
    found: set[str] = set()
    for i in range(0, len(elves), 200):
        out = subprocess.run(["ldd", *elves[i : i + 200]], capture_output=True, text=True, timeout=120)
        for line in out.stdout.splitlines():
            words = line.split()
            for w in words:
                if w.startswith("/") and not w.endswith(":") and os.path.exists(w):
                    found.add(w)
    return found


def agent_clis_prefix() -> Path:
    """Where .ci/install-agent-clis put the CLIs; as cli_common.agent_clis_prefix, which sits a layer above."""
    configured = os.environ.get("AICTL_AGENT_CLIS")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "aictl" / "agent-clis"


def find_python() -> str | None:
    """The system python3 (not a version manager's shim): its standard library sits beside it."""
    for c in PYTHON_CANDIDATES:
        if os.path.isfile(c) and _is_elf(os.path.realpath(c)):
            return c
    return None


def cli_versions(prefix: Path) -> dict[str, str]:
    versions = {}
    for name, pkg in CLI_PACKAGES.items():
        try:
            versions[name] = json.loads((prefix / "node_modules" / pkg / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            pass
    return versions


def plan_rootfs(clis_prefix: Path | None = None, *, uid: int | None = None, gid: int | None = None) -> Rootfs:
    """Collect the image's contents from this host, or SandboxError naming what is missing."""
    import shutil

    prefix = Path(clis_prefix) if clis_prefix else agent_clis_prefix()
    fs = Rootfs(versions=cli_versions(prefix))
    missing_clis = [b for b in CLI_BINS if not (prefix / "node_modules" / ".bin" / b).exists()]
    if missing_clis:
        raise SandboxError(f"agent CLIs {', '.join(missing_clis)} not found under {prefix}", hint=NO_CLIS_HINT)
    search = SANDBOX_PATH
    programs: list[str] = []
    for name in PROGRAMS["required"] + PROGRAMS["optional"]:
        found = shutil.which(name, path=search)
        if found is None and name in PROGRAMS["required"]:
            raise SandboxError(f"{name} not found on this host: the agents image is built from the host's programs")
        if found is not None:
            programs.append(found)
    python = find_python()
    if python is None:
        raise SandboxError("no system python3 (/usr/bin/python3)", hint="apt-get install -y python3")
    fs.python = python
    programs += [python]
    stdlib = _stdlib_of(python)
    for top in ("bin", "sbin", "lib", "lib64"):  # merged /usr: scripts name /bin/sh, ELF files /lib64/ld-linux…
        if os.path.islink(f"/{top}"):
            fs.links[top] = os.readlink(f"/{top}")
    for p in programs:
        _with_parents(fs, p)
    for d in [stdlib, *DATA_DIRS, *CA_BUNDLES]:
        if os.path.exists(d):
            _with_parents(fs, d)
    elves = [os.path.realpath(p) for p in programs]
    for d in [stdlib, *DATA_DIRS]:
        if os.path.isdir(d):
            elves += [os.path.join(d, name) for name, st in _walk("", Path(d)) if stat.S_ISREG(st.st_mode)]
    elves = [e for e in elves if _is_elf(e)]
    clis = prefix / "node_modules"
    for pkg in sorted(clis.glob("@*/*")):
        if pkg.is_dir() and not pkg.is_symlink():
            fs.paths[f"{CLIS_IN_IMAGE.lstrip('/')}/node_modules/{pkg.parent.name}/{pkg.name}"] = str(pkg)
            elves += [str(f) for f in pkg.rglob("*") if f.is_file() and not f.is_symlink() and _is_elf(str(f))]
    for b in CLI_BINS:
        fs.links[f"{CLIS_IN_IMAGE.lstrip('/')}/node_modules/.bin/{b}"] = os.readlink(clis / ".bin" / b)
        fs.links[f"usr/local/bin/{b}"] = f"{CLIS_IN_IMAGE}/node_modules/.bin/{b}"
    for lib in sorted(_libraries(sorted(set(elves)))):
        if not lib.startswith(str(prefix)):
            _with_parents(fs, lib)
    if "usr/bin/python3" not in fs.links and "usr/bin/python3" not in fs.paths:
        fs.links["usr/bin/python3"] = os.path.realpath(python)
    uid_gid = sandbox_user() if uid is None else (uid, gid if gid is not None else uid)
    passwd, group = _passwd(*uid_gid)
    fs.made["etc/passwd"], fs.made["etc/group"] = passwd.encode(), group.encode()
    return fs


def _stdlib_of(python: str) -> str:
    out = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    path = out.stdout.strip()
    if out.returncode != 0 or not os.path.isdir(path):
        raise SandboxError(f"{python} does not say where its standard library is: {out.stderr.strip()[:200]}")
    return path


def write_rootfs(fs: Rootfs, dest: Path) -> int:
    """The tarball, owned by root, with /tmp, /workspace and /home; returns the number of entries."""
    n = 0

    def entry(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, 0, 0, 0
        return info

    written: set[str] = set()
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:

        def parents(name: str) -> None:
            nonlocal n
            parent = os.path.dirname(name)
            if parent and parent not in written:
                parents(parent)
                tar.addfile(entry(parent, tarfile.DIRTYPE, 0o755))
                written.add(parent)
                n += 1

        for d, mode in (("tmp", 0o1777), ("workspace", 0o777), ("proc", 0o755), ("dev", 0o755), ("etc", 0o755)):
            tar.addfile(entry(d, tarfile.DIRTYPE, mode))
            written.add(d)
        for d in ("sys", "run", "root", "home", "var/tmp"):
            parents(d + "/x")
        items: list[tuple[str, str, Any]] = [(a, "path", h) for a, h in fs.paths.items()]
        items += [(a, "link", t) for a, t in fs.links.items()] + [(a, "made", b) for a, b in fs.made.items()]
        for arc, kind, value in sorted(items):
            if kind == "link":
                parents(arc)
                link = entry(arc, tarfile.SYMTYPE, 0o777)
                link.linkname = value
                tar.addfile(link)
                n += 1
            elif kind == "made":
                parents(arc)
                info = entry(arc, tarfile.REGTYPE, 0o644)
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
                n += 1
            else:
                for name, _st in _walk(arc, Path(value)):
                    if name in written:
                        continue
                    parents(name)
                    host = os.path.join(value, os.path.relpath(name, arc)) if name != arc else value
                    info = tar.gettarinfo(host, arcname=name)
                    info.uid = info.gid = 0
                    info.uname = info.gname = "root"
                    if info.isreg():
                        with open(host, "rb") as f:
                            tar.addfile(info, f)
                    else:
                        tar.addfile(info)
                    written.add(name)
                    n += 1
    return n


__all__ = [
    "CLIS_IN_IMAGE",
    "CLI_PACKAGES",
    "Rootfs",
    "agent_clis_prefix",
    "cli_versions",
    "find_python",
    "plan_rootfs",
    "write_rootfs",
]
