"""What a command line names on disk and on the network, for the run's policy (aictl.policy.runtime).

The words of a parsed command (aictl.policy.commands) are looked up from the worktree the command
runs in: files and dirs inside it (globs expanded, symlinks followed, dirs walked, all bounded),
paths that leave it for the project or state dir (`../../policy.yaml`), and the hosts of URLs.
Best effort by design: a path or host the shell builds at run time is not seen; the Docker backend
is the containment, this is the early, explained refusal.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_NAMED = 256  # files a command may name before the scan stops (a hostile repo may hold millions)
MAX_URLS = 8
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ssh": 22, "git": 9418, "ws": 80, "wss": 443}


@dataclass
class Scan:
    inside: list[str] = field(default_factory=list)  # repo-relative real paths of existing files and dirs
    reaching: list[str] = field(default_factory=list)  # the words that lead into a protected dir outside the root
    hosts: list[tuple[str, int | None]] = field(default_factory=list)  # (host, port) of each URL


def scan_words(
    root: str, words: tuple[str, ...], *, protected: tuple[str, ...] = (), mounts: tuple[str, ...] = ()
) -> Scan:
    """`root`: the worktree's real path on this host; `mounts`: where it appears in a container."""
    scan = Scan()
    inside: dict[str, None] = {}
    for word in words:
        if "://" in word:
            if len(scan.hosts) < MAX_URLS:
                host = _host(word)
                if host is not None:
                    scan.hosts.append(host)
            continue
        if not word or (word.startswith("-") and "=" not in word):
            continue
        word = word.split("=", 1)[1] if word.startswith("-") else word
        for mount in mounts:
            if word == mount or word.startswith(mount.rstrip("/") + "/"):
                word = root + word[len(mount.rstrip("/")) :]
                break
        base = word if os.path.isabs(word) else os.path.join(root, word)
        if _leaves(root, base, protected):
            scan.reaching.append(word)
            continue
        names = glob.glob(base)[:64] if any(c in word for c in "*?[") else [base]
        for name in names:
            if len(inside) >= MAX_NAMED:
                break
            _add(root, name, inside)
    scan.inside = list(inside)
    return scan


def _leaves(root: str, path: str, protected: tuple[str, ...]) -> bool:
    """The path is outside the worktree and inside a protected dir (as written, or once links resolve)."""
    for form in {os.path.normpath(path), os.path.realpath(path)}:
        if form == root or form.startswith(root + os.sep):
            continue
        if any(form == p or form.startswith(p.rstrip(os.sep) + os.sep) for p in protected):
            return True
    return False


def _add(root: str, name: str, inside: dict[str, None]) -> None:
    if not os.path.lexists(name):
        return
    real = os.path.realpath(name)
    if real == root or not real.startswith(root + os.sep):
        return  # the root itself (`ls .`) is not walked: the sandbox masks what matters there
    inside.setdefault(os.path.relpath(real, root).replace(os.sep, "/"), None)
    if os.path.isdir(real):  # `tar c secrets`: the files inside count, a bounded few
        for top, dirs, files in os.walk(real):
            dirs[:] = [d for d in dirs if d != ".git"]
            for f in files:
                inside.setdefault(os.path.relpath(os.path.join(top, f), root).replace(os.sep, "/"), None)
            if len(inside) >= MAX_NAMED:
                return


def _host(url: str) -> tuple[str, int | None] | None:
    start = url.find("://")
    scheme = url[:start].rsplit(None, 1)[-1].lower() if start > 0 else ""
    try:
        parts = urlsplit(url[start - len(scheme) :] if scheme else url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    return host, port if port is not None else _DEFAULT_PORTS.get(scheme)


__all__ = ["MAX_NAMED", "Scan", "scan_words"]
