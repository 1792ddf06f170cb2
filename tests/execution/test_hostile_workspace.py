"""A hostile agent's worktree against the host-side reads and the collector: special files, symlinks out,
a sabotaged .git. Real `aictl task execute` processes; nothing may hang, read outside, or re-run for free."""

from __future__ import annotations

import json
import os
import stat
import time

from tests.conftest import run_cli


def create(root, *args) -> int:
    r = run_cli("task", "create", *args, "-o", "json", cwd=root)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["id"]


def execute(root, tid, *args, timeout=60):
    r = run_cli("task", "execute", str(tid), "--owner", "w1", *args, "-o", "json", cwd=root, timeout=timeout)
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    return r, next(x for x in lines if x.get("type") == "report")


def evidence_text(root, digest) -> str:
    return run_cli("audit", "evidence", digest, cwd=root).stdout


def test_special_files_in_the_reports_are_refused_not_read(git_project, tmp_path):
    """/dev/zero behind a report name used to read without bound; a FIFO hung the verify step for ever."""
    junit = "<testsuite tests='1' failures='0' errors='0' skipped='0'><testcase name='a'/></testsuite>"
    tid = create(
        git_project,
        "hostile",
        "--lock",
        "src/**",
        "--command",
        "echo y > src/y.py",
        "--verify",
        f"cd $AICTL_REPORT_DIR && ln -s /dev/zero zero.xml && mkfifo pipe.xml"
        f' && ln -s /etc/hostname out.xml && echo "{junit}" > good.xml',
    )
    t = time.monotonic()
    r, rep = execute(git_project, tid, timeout=60)
    assert time.monotonic() - t < 50
    verify = next(e for e in rep["evidence"] if e["kind"] == "verify_log")
    refused = {x["path"]: x["reason"] for x in verify["summary"]["refused_files"]}
    assert set(refused) == {".aictl-reports/zero.xml", ".aictl-reports/pipe.xml", ".aictl-reports/out.xml"}
    assert "symbolic link" in refused[".aictl-reports/zero.xml"] and "FIFO" in refused[".aictl-reports/pipe.xml"]
    assert [e["name"] for e in rep["evidence"] if e["kind"] == "test_report"] == ["good.xml"]
    assert "pipe.xml: refused: a FIFO" in evidence_text(git_project, verify["digest"])
    assert r.returncode == 0 and rep["outcome"] == "done"


def test_a_reports_directory_linked_to_the_host_is_not_read(git_project, tmp_path):
    host = tmp_path / "host-reports"
    host.mkdir()
    (host / "secret.xml").write_text("<testsuite tests='1' failures='0'><testcase name='host-secret'/></testsuite>")
    tid = create(
        git_project,
        "hostile",
        "--lock",
        "src/**",
        "--command",
        f"echo y > src/y.py; ln -s {host} .aictl-reports",
        "--verify",
        "true",
    )
    _, rep = execute(git_project, tid)
    assert not [e for e in rep["evidence"] if e["kind"] == "test_report"]
    verify = next(e for e in rep["evidence"] if e["kind"] == "verify_log")
    assert verify["summary"]["refused_files"] == [{"path": ".aictl-reports", "reason": "refused: a symbolic link"}]
    assert "host-secret" not in json.dumps(rep)


def test_a_sabotaged_git_file_is_a_counted_attempt_with_its_evidence(git_project):
    """`.git` pointed elsewhere made collection raise and dropped the run's output; it must fail the attempt
    (counted, backoff), keep stdout and the error, and `task execute` must not repeat it for ever."""
    tid = create(
        git_project,
        "saboteur",
        "--lock",
        "src/**",
        "--max-attempts",
        "2",
        "--command",
        "echo wrote-something; echo y > src/y.py; printf 'gitdir: /tmp/nowhere\\n' > .git",
    )
    for attempt in (1, 2):
        r, rep = execute(git_project, tid)
        assert r.returncode == 1 and rep["task"]["attempts"] == attempt, rep
        assert rep["outcome"] == ("retrying" if attempt == 1 else "failed")
        names = {e["name"]: e for e in rep["evidence"]}
        assert {"stdout.txt", "run.json", "executor_error.txt"} <= set(names), names
        assert "wrote-something" in evidence_text(git_project, names["stdout.txt"]["digest"])
        assert "not an aictl workspace" in evidence_text(git_project, names["executor_error.txt"]["digest"])
        assert "collect" in rep["reason"]
    assert rep["task"]["status"] == "failed"
    assert run_cli("task", "execute", str(tid), "--owner", "w1", cwd=git_project).returncode == 4


def test_a_deleted_git_file_is_a_counted_attempt(git_project):
    tid = create(
        git_project, "saboteur", "--lock", "src/**", "--max-attempts", "1", "--command", "echo gone; rm -f .git"
    )
    r, rep = execute(git_project, tid)
    assert r.returncode == 1 and rep["outcome"] == "failed" and rep["task"]["attempts"] == 1
    assert {"stdout.txt", "executor_error.txt"} <= {e["name"] for e in rep["evidence"]}


def test_collection_strips_setuid_bits_and_says_so(git_project):
    tid = create(git_project, "suid", "--lock", "**", "--command", "cp /bin/sh ./sush && chmod 6755 ./sush")
    r, rep = execute(git_project, tid, "--keep-workspace")
    assert r.returncode == 0 and rep["outcome"] == "done"
    assert not os.stat(os.path.join(rep["workspace"], "sush")).st_mode & (stat.S_ISUID | stat.S_ISGID)
    changes = next(e for e in rep["evidence"] if e["name"] == "changed_paths.json")
    assert changes["summary"]["refused_files"] == ["sush: setuid/setgid bit removed"]


def test_a_git_file_replaced_by_a_fifo_fails_the_attempt_without_hanging(git_project):
    tid = create(
        git_project,
        "saboteur",
        "--lock",
        "src/**",
        "--max-attempts",
        "1",
        "--command",
        "echo y > src/y.py; rm -f .git; mkfifo .git",
    )
    r, rep = execute(git_project, tid, timeout=60)
    assert r.returncode == 1 and rep["outcome"] == "failed" and rep["task"]["attempts"] == 1
    assert "not an aictl workspace" in rep["reason"]
