"""Tests for the symbolic lock-pattern overlap check, cross-checked against pathspec."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aictl.tasks import globs
from aictl.tasks.globs import (
    GlobError,
    normalize_pattern,
    normalize_patterns,
    overlap_witness,
    path_matches,
    pattern_overlap,
    patterns_overlap,
)

OVERLAPPING = [
    ("src/**", "src/a.py"),
    ("*.py", "docs/**"),  # docs/x.py
    ("src/api/", "src/api/v1/x.py"),
    ("setup.py", "pkg/setup.py"),  # unanchored matches at any depth
    ("src/api", "src/api/v1/x.py"),  # a plain last segment names a directory: covers beneath
    ("docs", "docs/a/b.md"),
    (".github", ".github/workflows/ci.yml"),  # a leading dot is not an extension
    ("*.md", "docs/**"),  # docs/x.md
    ("src/*", "src/a.py"),  # src/* covers the direct children of src
    ("Makefile", "Makefile/x"),  # extensionless names look like directories
    ("a/*/c", "a/b/*"),
    ("[ab].txt", "[!a].txt"),  # b.txt
    ("**", "docs/readme.md"),
    ("**", "*.py"),
    ("**", "/setup.py"),
    ("src", "src/x"),  # a lock on a directory covers what is beneath it
    ("src/api", "src/api/x.py"),
    ("src/", "src"),
    ("/src/", "src/a"),
    ("/setup.py", "setup.py"),
    ("docs/", "*.md"),
    ("a/**/b", "a/b"),  # '**' may match zero directories
    ("a/**/b", "a/x/y/b"),
    ("a/**/b", "a/c"),  # a/c/b: the lock on a/c covers it
    ("**/b", "a/x/b"),
    ("a/**", "**/c"),
    ("**/", "a/b"),
    ("*/", "x/y"),
    ("a?c", "abc"),
    ("[a-c]*", "b*"),
    ("[^a]x", "bx"),
    ("\\*.py", "*.py"),  # the literal file '*.py'
    ("src/*.py", "src/**/x.py"),
    ("src/**/test_*.py", "src/pkg/tests/test_a.py"),
    # '/Makefile' looks like a directory (plain name, no extension), so it covers Makefile/x.py,
    # which the unanchored '*.py' matches itself. A symbolic check cannot tell an
    # extensionless file from a directory; it errs towards a conflict.
    ("*.py", "/Makefile"),
    ("src/a", "*.py"),  # src/a/x.py
    # pathspec (unlike git) lets a negated class match '/': we follow pathspec, which is
    # the conservative choice for locks.
    ("x/a[!a]a", "/x/a/a"),
]

DISJOINT = [
    # File-like patterns (a wildcard or an extension in the last segment) cover only the
    # paths they match themselves, not a directory of that name: under plain gitignore
    # rules each of these would overlap via e.g. x.md/x.py or README.md/CHANGELOG.md.
    ("*.md", "*.py"),
    ("README.md", "CHANGELOG.md"),
    ("[a].txt", "[!a].txt"),
    ("*.md", "/setup.cfg"),
    ("test_*.py", "conftest.py"),
    ("src/*", "src/a/b.py"),  # src/* is src's direct children only; src/** is the tree
    ("src/*", "src/a/**"),
    ("src/*.py", "src/a.py/**"),
    ("/src/a?", "/src/ab/c"),
    ("/a\\*", "/a*/b"),  # an escaped '*' still makes the name file-like
    ("src/**", "docs/**"),
    ("/*.md", "/*.py"),
    ("/setup.py", "pkg/setup.py"),
    ("a/?", "a/bb"),
    ("/[a].txt", "/[!a].txt"),
    ("/[a-c]", "/[d-f]"),
    ("/[!a-y]", "/[a-y]"),
    ("src/a", "src/ab"),
    ("src/a", "src/b/**"),
    ("/a", "/b"),
    ("a/**", "/b"),
    ("x/*.py", "x/*.md"),
    ("/a/b", "/a/c"),
    ("a/b/**", "a/c/**"),
    ("/Makefile", "/setup.py"),
    ("src/**/*.py", "docs/**"),
    ("a/*/c", "a/b/d"),
    ("/?", "/ab"),
    ("/a\\*", "/ab"),  # escaped star is a literal '*'
    ("/a/", "/b"),
    ("/.github/**", "/src/**"),
]


def _both_orders(pairs):
    return [(p, q) for p, q in pairs] + [(q, p) for p, q in pairs]


@pytest.mark.parametrize(("p", "q"), _both_orders(OVERLAPPING))
def test_overlapping_pairs(p: str, q: str) -> None:
    assert pattern_overlap(p, q)
    w = overlap_witness(p, q)
    assert w is not None and path_matches([p], w) and path_matches([q], w), w


@pytest.mark.parametrize(("p", "q"), _both_orders(DISJOINT))
def test_disjoint_pairs(p: str, q: str) -> None:
    assert not pattern_overlap(p, q)
    assert overlap_witness(p, q) is None


def test_witnesses_are_readable() -> None:
    assert overlap_witness("*.py", "docs/**") == "docs/x.py"
    assert overlap_witness("src/api/", "src/api/**") == "src/api/x"
    assert overlap_witness("[ab].txt", "[!a].txt") == "b.txt"
    assert overlap_witness("*.py", "/Makefile") == "Makefile/x.py"


def test_patterns_overlap_any_pair() -> None:
    assert patterns_overlap(["/docs/**", "src/api/**"], ["src/api/v1/x.py"])
    assert not patterns_overlap(["/docs/**", "src/api/**"], ["src/web/**", "/README.md"])
    assert not patterns_overlap([], ["**"])
    assert not patterns_overlap(["*.md", "README.md"], ["*.py", "/setup.cfg", "src/*.txt"])
    assert patterns_overlap(["*.md"], ["*.py", "docs"])  # docs/x.md


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("src/api", "src/api/x.py", True),
        ("src/api/", "src/api/v1/x.py", True),
        ("src/api/", "src/api", False),  # pathspec cannot know a bare path is a directory
        ("*.py", "x/y/a.py", True),
        ("/setup.py", "pkg/setup.py", False),
        ("a/**/b", "a/b", True),
        ("a/**", "a", False),
        ("[!a].txt", "a.txt", False),
        ("docs", "docs/a/b.md", True),
        (".github", ".github/workflows/ci.yml", True),
        ("Makefile", "Makefile", True),
        ("*.md", "x.md", True),
        ("*.md", "x.md/y.py", False),  # a file-like pattern does not reach beneath
        ("README.md", "README.md/CHANGELOG.md", False),
        ("src/*", "src/a.py", True),
        ("src/*", "src/a/b.py", False),
        ("src/**", "src/a/b.py", True),
        ("x/a[!a]a", "x/a/a", True),  # pathspec's negated class matches '/'
        ("/src/api", "//src//api/x.py/", True),  # empty segments are dropped
        ("**", "", False),
    ],
)
def test_path_matches(pattern: str, path: str, expected: bool) -> None:
    assert path_matches([pattern], path) is expected


@pytest.mark.parametrize(
    "bad",
    ["!x", "", "   ", "../x", "a/../b", "a/./b", "#x", "C:\\x", "c:/x", "a\0b", "a//b", "/", "a[b", "[z-a]", "a\\"],
)
def test_invalid_patterns_are_rejected(bad: str) -> None:
    with pytest.raises(GlobError) as exc:
        normalize_pattern(bad)
    assert repr(bad) in str(exc.value)
    with pytest.raises(GlobError):
        pattern_overlap(bad, "**")


def test_normalization() -> None:
    assert normalize_pattern("/src/api") == "src/api"  # anchored either way
    assert normalize_pattern("/setup.py") == "/setup.py"  # the slash is what anchors it
    assert normalize_pattern("/**") == "**"
    assert normalize_pattern("docs/  ") == "docs/"  # git drops unescaped trailing spaces
    assert normalize_pattern("\\#x") == "\\#x"
    assert normalize_patterns(["/src/a", "src/a", "x", "x"]) == ["src/a", "x"]
    with pytest.raises(GlobError):
        normalize_patterns("src/**")  # a bare string is a common mistake


# ---- property tests: the automaton against a reference built from pathspec ----------

_TOKENS = ["a", "b", ".", "*", "?", "**", "[ab]", "[!a]", "\\*"]
_segment = st.one_of(
    st.just("**"),
    st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=3).map("".join).filter(lambda s: s not in (".", "..")),
)


@st.composite
def patterns(draw) -> str:
    segs = draw(st.lists(_segment, min_size=1, max_size=3))
    lead = draw(st.sampled_from(["", "/"]))
    trail = draw(st.sampled_from(["", "/"]))
    return lead + "/".join(segs) + trail


_path_segment = st.text(alphabet="ab.", min_size=1, max_size=3).filter(lambda s: s not in (".", ".."))
paths = st.lists(_path_segment, min_size=1, max_size=4).map("/".join)

try:  # pathspec >= 1.0
    from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern as _PathspecPattern
except ImportError:  # pathspec 0.12
    from pathspec.patterns.gitwildmatch import GitWildMatchPattern as _PathspecPattern

# pathspec ends the regex of a pattern whose last segment is a name (not '**', no trailing
# '/') with "...or a '/' and anything beneath": 1.x "(?:(?P<ps_d>/)|$)", 0.12 "(?:/.*)?$".
_BENEATH_SUFFIXES = ("(?:(?P<ps_d>/)|$)", "(?:/.*)?$")


def _dir_like(pattern: str) -> bool:
    """The documented rule, written out from the spec independently of globs.py."""
    if pattern.endswith("/"):
        return True
    last = pattern.split("/")[-1]
    name = re.sub(r"\\(.)", r"\1", last)
    return last == "**" or (not set("*?[") & set(name) and "." not in name[1:])


def _reference(pattern: str, path: str) -> bool:
    """Does `pattern` cover `path` under the lock rule? Built from pathspec alone.

    pathspec implements gitignore, where every pattern covers what it matches plus
    everything beneath. Its regex for a pattern is literally "<the path itself matches>"
    followed by an alternative for "or anything beneath". So:
    - dir-like pattern (covers beneath by the rule): pathspec's verdict, unchanged;
    - file-like pattern: pathspec's own regex with that trailing alternative cut off
      and replaced by end-of-string, i.e. exactly "pathspec matches the path itself".
    Only a literal suffix of pathspec's output is edited, so the reference is plainly
    right (and the assert makes a change in pathspec's translation fail loudly).
    """
    compiled = _PathspecPattern(pattern)
    if _dir_like(pattern):
        return compiled.match_file(path) is not None
    regex = compiled.regex.pattern
    if regex == ".":  # pathspec special-cases "*" and "**/*" to "." (every path). Every
        # path's last segment matches "*" itself, so there is nothing to cut off.
        assert re.sub(r"(\*\*/)+", "**/", pattern.lstrip("/")) in ("*", "**/*"), pattern
        return bool(path)
    suffix = next((x for x in _BENEATH_SUFFIXES if regex.endswith(x)), None)
    assert suffix is not None, f"unexpected pathspec regex {regex!r} for {pattern!r}"
    return re.search(regex[: -len(suffix)] + "$", path) is not None


def _accepts(pattern: str, path: str) -> bool:
    """Run the compiled NFA directly on a concrete path (independently of path_matches)."""
    nfa = globs._compile(normalize_pattern(pattern))
    cur = {0}
    for ch in path:
        cur = {t for s in cur for cs, t in nfa.edges[s] if any(lo <= ord(ch) <= hi for lo, hi in cs)}
    return bool(cur & nfa.accept)


_settings = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*.md", "x.md/y", False),
        ("*.md", "x.md", True),
        ("docs", "a/docs/y", True),
        ("src/*", "src/a/b", False),
        ("a/**/b", "a/x/b/c", True),
        ("[!a]", "b/a", False),
        ("[!a]", "b/c", True),
        ("*", "a.b/c", True),
    ],
)
def test_reference_implements_the_rule(pattern: str, path: str, expected: bool) -> None:
    assert _reference(pattern, path) is expected
    assert _PathspecPattern(pattern).match_file(path) is not None  # plain gitignore says yes to all


@_settings
@given(patterns(), paths)
def test_automaton_agrees_with_reference(p: str, path: str) -> None:
    assert _accepts(p, path) == _reference(p, path) == path_matches([p], path)


@_settings
@given(patterns(), patterns(), paths)
def test_common_path_implies_overlap(p: str, q: str, path: str) -> None:
    if _reference(p, path) and _reference(q, path):
        assert pattern_overlap(p, q)


@_settings
@given(patterns(), patterns())
def test_overlap_has_valid_witness(p: str, q: str) -> None:
    w = overlap_witness(p, q)
    assert (w is not None) == pattern_overlap(q, p)  # symmetric
    if w is not None:
        assert _reference(p, w) and _reference(q, w), w
        assert path_matches([p], w) and path_matches([q], w), w
        assert ".." not in w.split("/") and not w.startswith("/") and not w.endswith("/")


@_settings
@given(patterns())
def test_normalize_is_idempotent(p: str) -> None:
    n = normalize_pattern(p)
    assert normalize_pattern(n) == n
    assert pattern_overlap(p, n)
