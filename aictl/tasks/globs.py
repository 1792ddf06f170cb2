"""Symbolic overlap test for gitignore-style path-lock patterns.

Two tasks may not run at once if their lock patterns could both cover one path,
including paths that do not exist yet, so we intersect the pattern *languages*
instead of testing files on disk.

Lock patterns name files, and directories only where they look like directories
(docs/locks.md). A pattern covers the paths it matches itself (gitignore/pathspec
matching of the path); it also covers everything beneath a matched path only if
it is "dir-like": it ends in '/' or '/**' or is '**', or its last segment is a
plain name (no '*', '?', '[' and no '.' after the first character: "src/api",
"docs", ".github", "Makefile"). Plain gitignore gives every pattern directory
semantics, so "*.md" would cover x.md/y.py and overlap every other lock.

Each pattern is compiled (mirroring pathspec's gitignore translation) into a small
NFA whose edges carry character sets as code-point intervals; literal chars,
"anything but '/'", "anything" and (negated) classes are then one kind of
predicate, and intersecting two of them is exact. A shortest-path search over the
product of both NFAs and an automaton of normalized repo paths (non-empty
segments, no '.'/'..', no leading/trailing '/') decides emptiness and yields a
witness path. `path_matches` runs the same NFAs over a concrete path, so "is this
changed file inside the locks?" and "do these locks overlap?" always agree.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

__all__ = [
    "GlobError",
    "normalize_pattern",
    "normalize_patterns",
    "overlap_witness",
    "path_matches",
    "pattern_overlap",
    "patterns_overlap",
]


class GlobError(ValueError):
    """A lock pattern is invalid; the message names the pattern and the reason."""


# ---- character sets: tuples of inclusive (lo, hi) code-point intervals ------------

CharSet = tuple[tuple[int, int], ...]
_MAX = 0x10FFFF
_SLASH = ord("/")
ANY: CharSet = ((0, _MAX),)
NOT_SLASH: CharSet = ((0, _SLASH - 1), (_SLASH + 1, _MAX))


def _lit(c: str) -> CharSet:
    return ((ord(c), ord(c)),)


def _union(ranges: Iterable[tuple[int, int]]) -> CharSet:
    # Sort and merge overlapping/adjacent intervals so sets have one canonical form.
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def _complement(s: CharSet) -> CharSet:
    out, nxt = [], 0
    for lo, hi in s:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= _MAX:
        out.append((nxt, _MAX))
    return tuple(out)


def _intersect(a: CharSet, b: CharSet) -> CharSet:
    # Two-pointer sweep over sorted intervals: exact, e.g. "[!a]" & "a" is empty.
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def _pick(s: CharSet) -> str:
    # Prefer readable characters so witnesses look like "src/api/x".
    for c in "xyzabcdefghijklmnopqrstuvw0123456789_-.XYZABCDEFGHIJKLMNOPQRSTUVW":
        if _intersect(s, _lit(c)):
            return c
    ascii_ = _intersect(s, ((33, 126),))  # else any visible ASCII, else whatever is left
    return chr((ascii_ or s)[0][0])


# ---- NFA ----------------------------------------------------------------------------


class _NFA:
    """Epsilon-free NFA: start state 0, `edges[s]` = ((charset, target), ...)."""

    __slots__ = ("accept", "edges")

    def __init__(self, edges: list[list[tuple[CharSet | None, int]]], accept: set[int]):
        # Eliminate epsilon edges (charset None) by folding each state's closure in.
        def closure(s: int) -> set[int]:
            seen, todo = {s}, [s]
            while todo:
                for cs, t in edges[todo.pop()]:
                    if cs is None and t not in seen:
                        seen.add(t)
                        todo.append(t)
            return seen

        closures = [closure(s) for s in range(len(edges))]
        self.edges = tuple(tuple((cs, t) for c in cl for cs, t in edges[c] if cs is not None) for cl in closures)
        self.accept = frozenset(s for s, cl in enumerate(closures) if cl & accept)


class _Builder:
    def __init__(self) -> None:
        self.edges: list[list[tuple[CharSet | None, int]]] = [[]]

    def step(self, s: int, cs: CharSet | None) -> int:
        # A fresh state reached from s on cs (None: an epsilon edge).
        self.edges.append([])
        self.edges[s].append((cs, len(self.edges) - 1))
        return len(self.edges) - 1

    def loop(self, s: int, cs: CharSet) -> int:
        # (cs)* : an epsilon into a state that loops on cs.
        t = self.step(s, None)
        self.edges[t].append((cs, t))
        return t


# Normalized repo-relative paths: states 0=segment start, 1="." 2=".." 3=ordinary segment.
_DOT, _NOT_DOT_SLASH = _lit("."), _complement(_union([(46, 47)]))
_VALID_PATH = _NFA(
    [
        [(_DOT, 1), (_NOT_DOT_SLASH, 3)],
        [(_DOT, 2), (_NOT_DOT_SLASH, 3)],
        [(_DOT, 3), (_NOT_DOT_SLASH, 3)],
        [(_DOT, 3), (_NOT_DOT_SLASH, 3), (_lit("/"), 0)],
    ],
    {3},
)


def _parse_class(seg: str, i: int, pattern: str) -> tuple[CharSet, int]:
    """Parse the bracket expression whose body starts at seg[i] (after '[').

    Mirrors pathspec: '!' or '^' negates, a leading ']' is literal, and the body is
    then read as a Python regex set in which backslash is a literal character.
    """
    j = i + (i < len(seg) and seg[i] in "!^")
    negate, body_start = j > i, j
    if j < len(seg) and seg[j] == "]":
        j += 1
    j = seg.find("]", j)
    if j < 0:
        raise GlobError(f"invalid lock pattern {pattern!r}: unclosed '[' (git would ignore it)")
    body, ranges, k = seg[body_start:j], [], 0
    while k < len(body):
        lo = body[k]
        if k + 2 < len(body) and body[k + 1] == "-":  # "a-z" range ("-" last is literal)
            hi, k = body[k + 2], k + 3
            if hi < lo:
                raise GlobError(f"invalid lock pattern {pattern!r}: bad range {lo}-{hi}")
            ranges.append((ord(lo), ord(hi)))
        else:
            ranges.append((ord(lo), ord(lo)))
            k += 1
    cs = _union(ranges)
    # Like pathspec (unlike git), "[!a]" and a range spanning '/' also match '/'. We keep
    # pathspec's reading: it is a superset of git's, so overlaps are never missed.
    return (_complement(cs) if negate else cs), j + 1


def _segment(b: _Builder, s: int, seg: str, pattern: str) -> int:
    """Add the glob for one path segment after state s; return its end state."""
    if seg == "*":  # pathspec: a whole-segment '*' is [^/]+ (segments are non-empty anyway)
        return b.loop(b.step(s, NOT_SLASH), NOT_SLASH)
    i = 0
    while i < len(seg):
        c, i = seg[i], i + 1
        if c == "\\":
            if i == len(seg):
                raise GlobError(f"invalid lock pattern {pattern!r}: trailing backslash")
            s, i = b.step(s, _lit(seg[i])), i + 1
        elif c == "*":
            s = b.loop(s, NOT_SLASH)
        elif c == "?":
            s = b.step(s, NOT_SLASH)
        elif c == "[":
            cs, i = _parse_class(seg, i, pattern)
            s = b.step(s, cs)
        else:
            s = b.step(s, _lit(c))
    return s


def _segments(p: str) -> tuple[list[str], bool]:
    """pathspec's segment normalization: anchoring, trailing '/', '**' collapsing."""
    segs = p.split("/")
    is_dir = not segs[-1]
    if not segs[0]:
        del segs[0]  # leading '/': anchored to the repo root
    elif (len(segs) == 1 or (len(segs) == 2 and not segs[1])) and segs[0] != "**":
        segs.insert(0, "**")  # no inner slash: matches at any depth
    if not segs[-1]:
        segs[-1] = "**"  # "dir/" covers everything beneath dir
    return [s for k, s in enumerate(segs) if not (k and s == "**" == segs[k - 1])], is_dir


_ESCAPE = re.compile(r"\\(.)", re.S)


def _looks_like_dir(seg: str) -> bool:
    """Is a last segment a plain name ("docs", ".github", "Makefile"), not a file glob?

    Judged on the name as written with backslash escapes removed: any '*', '?' or '['
    (escaped or not), or a '.' after the first character ("README.md", "setup.py"),
    makes it file-like.
    """
    name = _ESCAPE.sub(r"\1", seg)
    return not any(c in name for c in "*?[") and "." not in name[1:]


@lru_cache(maxsize=4096)
def _compile(p: str) -> _NFA:
    """NFA for the set of paths a (normalized) pattern covers.

    Every pattern covers the paths it matches itself; a dir-like one (see the module
    docstring) also covers everything beneath them.
    """
    segs, is_dir = _segments(p)
    b, s, accept = _Builder(), 0, set()
    if segs == ["**"]:  # "**" is everything; "**/" is everything inside some directory
        s = b.loop(0, ANY)
        accept.add(b.loop(b.step(s, _lit("/")), ANY) if is_dir else s)
        return _NFA(b.edges, accept)
    last = len(segs) - 1
    for k, seg in enumerate(segs):
        if seg == "**" and k == 0:  # leading "**/": zero or more whole directories
            s = b.step(b.step(b.loop(b.step(0, ANY), ANY), _lit("/")), None)
            b.edges[0].append((None, s))
        elif seg == "**" and k < last:  # inner "/**": optionally "/" + one or more chars
            end = b.step(b.loop(b.step(b.step(s, _lit("/")), ANY), ANY), None)
            b.edges[s].append((None, end))  # skip edge must not reach the ANY loop
            s = end
        elif seg == "**":  # trailing "/**": a "/" then anything below
            accept.add(b.loop(b.step(s, _lit("/")), ANY))
        else:
            if k > 1 or (k == 1 and segs[0] != "**"):  # leading "**/" already ate its '/'
                s = b.step(s, _lit("/"))
            s = _segment(b, s, seg, p)
            if k == last:  # the path itself; if it names a directory, also anything below
                accept.add(s)
                if _looks_like_dir(seg):
                    accept.add(b.loop(b.step(s, _lit("/")), ANY))
    return _NFA(b.edges, accept)


def _witness(nfas: tuple[_NFA, ...]) -> str | None:
    """Cheapest path covered by all NFAs (and a valid repo path), or None if none is.

    Dijkstra over the product automaton; each char costs 1, and a segment forced to
    start with '.' costs extra so witnesses read "docs/x.py" rather than "docs/.py".
    """
    nfas = (*nfas, _VALID_PATH)
    start = (0,) * len(nfas)
    best: dict[tuple[int, ...], int] = {start: 0}
    parent: dict[tuple[int, ...], tuple[tuple[int, ...], str]] = {}
    heap, tick = [(0, 0, start)], 0
    while heap:
        cost, _, node = heapq.heappop(heap)
        if cost > best[node]:
            continue  # stale heap entry
        if all(s in n.accept for s, n in zip(node, nfas, strict=True)):
            out = []
            while node in parent:
                node, ch = parent[node]
                out.append(ch)
            return "".join(reversed(out))
        # Extend partial products one automaton at a time, pruning empty charsets.
        partial: list[tuple[CharSet, tuple[int, ...]]] = [(ANY, ())]
        for s, n in zip(node, nfas, strict=True):
            partial = [
                (both, (*tgt, t)) for cs, tgt in partial for ecs, t in n.edges[s] if (both := _intersect(cs, ecs))
            ]
        for cs, nxt in partial:
            ch = _pick(cs)
            new = cost + 1 + (10 if ch == "." and node[-1] == 0 else 0)
            if new < best.get(nxt, new + 1):
                best[nxt], parent[nxt], tick = new, (node, ch), tick + 1
                heapq.heappush(heap, (new, tick, nxt))
    return None


# ---- public API -----------------------------------------------------------------------

_WINDOWS_ABS = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")


def normalize_pattern(p: str) -> str:
    """Validate a lock pattern and return its canonical form (or raise GlobError)."""
    if not isinstance(p, str):
        raise GlobError(f"invalid lock pattern {p!r}: not a string")
    return _normalize(p)


@lru_cache(maxsize=4096)
def _normalize(p: str) -> str:
    def bad(why: str) -> GlobError:
        return GlobError(f"invalid lock pattern {p!r}: {why}")

    # Like git/pathspec, trailing whitespace is dropped unless escaped ("a\ ").
    q = p if p.endswith("\\ ") else p.rstrip()
    body = q[1:] if q.startswith("/") else q
    segs = body.split("/")
    dots = [s for s in segs if s.replace("\\", "") in (".", "..")]
    for failed, why in [
        ("\0" in q, "contains NUL"),
        (not q, "empty pattern"),
        (q.startswith("#"), "starts with '#' (a comment in gitignore; escape it as '\\#')"),
        (q.startswith("!"), "negated patterns are not supported for locks (escape as '\\!')"),
        (_WINDOWS_ABS.match(q), "absolute OS path; use a repo-relative POSIX path"),
        (not body or "" in segs[:-1], "empty path segment ('//' or a bare '/')"),
        (dots, "'.' or '..' path segment; paths must be normalized and inside the repo"),
    ]:
        if failed:
            raise bad(why)
    # Compiling checks escapes and classes; a pattern no real path can match is useless.
    if _witness((_compile(q),)) is None:
        raise bad("matches no normalized repo path")
    # Drop a leading '/' when the rest is anchored anyway, so equal locks compare equal.
    if q.startswith("/") and ("/" in body.rstrip("/") or body.rstrip("/") == "**"):
        q = body
    return q


def normalize_patterns(ps: Iterable[str]) -> list[str]:
    """Validate every pattern; canonical forms, duplicates removed, order kept."""
    if isinstance(ps, str):
        raise GlobError(f"expected a list of lock patterns, got the string {ps!r}")
    return list(dict.fromkeys(normalize_pattern(p) for p in ps))


@lru_cache(maxsize=16384)
def _pair_witness(p: str, q: str) -> str | None:
    return _witness((_compile(p), _compile(q)))


def overlap_witness(p: str, q: str) -> str | None:
    """A concrete repo path covered by both patterns, or None if they are disjoint."""
    p, q = normalize_pattern(p), normalize_pattern(q)
    return _pair_witness(*sorted((p, q)))  # sorted: one cache entry per unordered pair


def _anchored_prefix(p: str) -> str | None:
    """The literal text every path under an anchored pattern starts with (None: unanchored)."""
    body = p[1:] if p.startswith("/") else p
    if not p.startswith("/") and "/" not in p.rstrip("/"):
        return None  # no inner slash: matches at any depth
    m = re.search(r"[*?\[\\]", body)
    return body if m is None else body[: m.start()]


def pattern_overlap(p: str, q: str) -> bool:
    """True if some (possibly not yet existing) path is covered by both patterns."""
    # Cheap exit: two anchored patterns whose literal prefixes diverge share no path
    # (grp1/** vs grp2/**); the automaton product costs ~0.3 ms per new pair.
    a, b = _anchored_prefix(p), _anchored_prefix(q)
    if a is not None and b is not None and not (a.startswith(b) or b.startswith(a)):
        return False
    return overlap_witness(p, q) is not None


def patterns_overlap(a: Sequence[str], b: Sequence[str]) -> bool:
    """True if any pattern of `a` overlaps any pattern of `b`."""
    na, nb = normalize_patterns(a), normalize_patterns(b)
    return any(pattern_overlap(p, q) for p in na for q in nb)


def _accepts(nfa: _NFA, path: str) -> bool:
    """Run an NFA over a concrete string."""
    cur = {0}
    for ch in map(ord, path):
        cur = {t for s in cur for cs, t in nfa.edges[s] if any(lo <= ch <= hi for lo, hi in cs)}
        if not cur:
            return False
    return not cur.isdisjoint(nfa.accept)


def path_matches(patterns: Sequence[str], path: str) -> bool:
    """Is a concrete repo-relative path covered by the lock patterns?

    Uses the very NFAs the overlap check intersects, so the two can never disagree.
    """
    norm = "/".join(s for s in path.split("/") if s)  # "/a//b/" -> "a/b"
    return bool(norm) and any(_accepts(_compile(p), norm) for p in normalize_patterns(patterns))
