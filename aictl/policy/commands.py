"""A command line split into what a rule can name: its simple commands, program names and subcommands.

`parse_command("cd x && curl -s https://h/i | sh")` gives the segments `cd x`, `curl -s https://h/i`,
`sh`, and the programs `cd`, `cd x`, `curl`, `curl -s`, `sh`. It splits on `;`, `&&`, `||`, `|`, `&`
and newlines, opens `( … )` subshells, `$( … )` and backquotes, and parses the payload of `sh -c`,
`bash -c`, `eval` and friends, up to a fixed depth and size. A best effort, not a shell: what it
cannot tokenize (an unclosed quote) is split on whitespace. Imports nothing from aictl (the fast gate).
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass
from functools import lru_cache

MAX_LENGTH = 16_384  # longer lines are parsed by their start; the rest still meets `commands` globs whole
MAX_SEGMENTS = 64
MAX_DEPTH = 4
MAX_WORDS = 256

_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "busybox", "fish"})
_EVALS = frozenset({"eval"})
# Wrappers that run their argument as the program: the program is what they run.
_WRAPPERS = frozenset(
    {"sudo", "doas", "env", "nohup", "nice", "ionice", "time", "command", "exec", "builtin", "stdbuf", "setsid"}
)
_TAKES_VALUE = {"timeout": 1, "nice": 0, "xargs": 0}  # wrappers with a leading positional to skip
_GIT_VALUED = frozenset({"-C", "-c", "--git-dir", "--work-tree", "--namespace", "--exec-path"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_OPERATORS = ("&&", "||", ";;", ";", "|&", "|", "&", "\n")


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    segments: tuple[str, ...]  # each simple command, whitespace collapsed
    programs: tuple[str, ...]  # program names and `program first-argument`, in order, without repeats
    words: tuple[str, ...] = ()  # every argument and redirection target, for the paths a command names


@lru_cache(maxsize=2048)
def parse_command(line: str) -> ParsedCommand:
    segments: list[str] = []
    programs: dict[str, None] = {}
    words: dict[str, None] = {}
    _parse(line[:MAX_LENGTH], 0, segments, programs, words)
    return ParsedCommand(tuple(segments), tuple(programs), tuple(words)[:MAX_WORDS])


def _parse(line: str, depth: int, segments: list[str], programs: dict[str, None], seen: dict[str, None]) -> None:
    for chunk in _split(line, depth, segments, programs, seen):
        if len(segments) >= MAX_SEGMENTS:
            return
        words, targets = _words(chunk)
        for w in (*words[1:], *targets):
            seen.setdefault(w, None)
        if not words:
            continue
        segments.append(" ".join(words))
        _program(words, depth, segments, programs, seen)


def _split(line: str, depth: int, segments: list[str], programs: dict[str, None], seen: dict[str, None]) -> list[str]:
    """Top-level simple commands of `line`; what sits in ( ), $( ) and backquotes is parsed on its own."""
    chunks: list[str] = []
    cur: list[str] = []
    i, n, quote = 0, len(line), ""
    while i < n:
        c = line[i]
        if quote == "'":
            cur.append(c)
            quote = "" if c == "'" else quote
            i += 1
            continue
        if c == "\\" and i + 1 < n:
            cur.append(line[i : i + 2])
            i += 2
            continue
        if quote == '"' and c == '"':
            quote = ""
            cur.append(c)
            i += 1
            continue
        if c == "`" or (c == "$" and line[i + 1 : i + 2] == "(") or (c == "(" and not quote):
            start = i + (2 if c == "$" else 1)
            end = _closing(line, start, "`" if c == "`" else ")")
            if depth < MAX_DEPTH:
                _parse(line[start:end], depth + 1, segments, programs, seen)
            if c != "(":  # a substitution is a word of the outer command; a subshell is not
                cur.append("_")
            i = end + 1
            continue
        if quote:
            cur.append(c)
            i += 1
            continue
        if c in "'\"":
            quote = c
            cur.append(c)
            i += 1
            continue
        if c == "#" and (not cur or cur[-1].isspace()):
            while i < n and line[i] != "\n":
                i += 1
            continue
        op = next((o for o in _OPERATORS if line.startswith(o, i)), None)
        if op is not None or c == ")":
            chunks.append("".join(cur))
            cur = []
            i += len(op) if op is not None else 1
            continue
        cur.append(c)
        i += 1
    chunks.append("".join(cur))
    return chunks


def _closing(line: str, start: int, close: str) -> int:
    """Index of the `close` that ends a group opened before `start` (nesting and quotes respected)."""
    level, quote, i = 0, "", start
    while i < len(line):
        c = line[i]
        if quote:
            if c == quote:
                quote = ""
            elif c == "\\" and quote == '"':
                i += 1
        elif c == "\\":
            i += 1
        elif c in "'\"":
            quote = c
        elif close == ")" and c == "(":
            level += 1
        elif c == close:
            if level == 0:
                return i
            level -= 1
        i += 1
    return len(line)


def _words(chunk: str) -> tuple[list[str], list[str]]:
    try:
        lexer = shlex.shlex(chunk, posix=True, punctuation_chars="<>")
        lexer.whitespace_split = True
        lexer.commenters = ""
        words = list(lexer)
    except ValueError:  # an unclosed quote: words as the eye sees them
        words = chunk.split()
    out: list[str] = []
    targets: list[str] = []
    skip = False
    for w in words:
        if skip:
            skip = False
            targets.append(w)
            continue
        if w and set(w) <= set("<>&"):  # a redirection: its target is not an argument
            skip = True
            continue
        out.append(w)
    return out, targets


def _program(
    words: list[str], depth: int, segments: list[str], programs: dict[str, None], seen: dict[str, None]
) -> None:
    i = 0
    while i < len(words) and _ASSIGNMENT.match(words[i]):
        i += 1  # FOO=bar cmd
    while i < len(words):
        name = posixpath.basename(words[i]) or words[i]
        if name in _WRAPPERS or name in _TAKES_VALUE:
            programs.setdefault(name, None)
            i += 1
            while i < len(words) and (words[i].startswith("-") or _ASSIGNMENT.match(words[i])):
                i += 1
            i += _TAKES_VALUE.get(name, 0)
            continue
        break
    if i >= len(words):
        return
    name = posixpath.basename(words[i]) or words[i]
    programs.setdefault(name, None)
    rest = words[i + 1 :]
    if rest:
        programs.setdefault(f"{name} {rest[0]}", None)
    if name == "git":  # `git -C dir push`: the subcommand is the first word that is not a global option
        j = 0
        while j < len(rest) and rest[j].startswith("-"):
            j += 2 if rest[j] in _GIT_VALUED else 1
        if j < len(rest):
            programs.setdefault(f"git {rest[j]}", None)
    if depth >= MAX_DEPTH:
        return
    payload = None
    if name in _SHELLS:
        for j, w in enumerate(rest):
            if w.startswith("-") and not w.startswith("--") and "c" in w[1:] and j + 1 < len(rest):
                payload = rest[j + 1]
                break
    elif name in _EVALS:
        payload = " ".join(rest)
    if payload:
        _parse(payload, depth + 1, segments, programs, seen)
