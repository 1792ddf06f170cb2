"""`aictl usage`: runs of real connectors (the anthropic SDK against the fake provider) leave usage evidence;
the report's totals are the sums of those blobs, and a run without a price keeps an unknown cost (null, not 0)."""

from __future__ import annotations

import json

import pytest

from tests.agents.sdk_variants import KEYS
from tests.fakeprovider import reply, tool


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)


def _register(capsys, fp, name: str, model: str) -> None:
    from tests.agents.cli_fixtures import cli_json

    cli_json(
        capsys, "ai", "register", name, "--connector", "anthropic", "--model", model, "--base-url", fp.url,
        "--api-key-env", "ANTHROPIC_API_KEY", "--config", "retry_backoff_s=0.01",
    )  # fmt: skip


def _run(capsys, fp, ai: str, path: str, usage: tuple[int, int], *labels: str) -> int:
    from tests.agents.cli_fixtures import cli_json, execute

    more = [x for label in labels for x in ("-l", label)]
    tid = cli_json(capsys, "task", "create", f"create {path}", "--lock", path, *more)["id"]
    fp.script(reply("ok", [tool("write_file", {"path": path, "content": "x\n"})], usage=usage), reply("done"))
    code, rep, err = execute(capsys, str(tid), "--ai", ai)
    assert code == 0 and rep["outcome"] == "done", (rep.get("reason"), err)
    return tid


def test_usage_totals_are_the_sum_of_the_usage_evidence(fake_provider, git_project, capsys):
    from tests.agents.cli_fixtures import cli_json, evidence_of

    _register(capsys, fake_provider, "priced", "claude-haiku-4-5")
    _register(capsys, fake_provider, "unpriced", "claude-from-the-future-9")
    tasks = [
        _run(capsys, fake_provider, "priced", "a.txt", (1000, 20)),
        _run(capsys, fake_provider, "priced", "b.txt", (3000, 40), "workflow:feature", "workflow-run:1"),
        _run(capsys, fake_provider, "unpriced", "c.txt", (500, 7)),
    ]
    blobs = [json.loads(evidence_of(capsys, t)["usage"]) for t in tasks]

    by_ai = cli_json(capsys, "usage", "--by", "ai")
    assert by_ai["total"]["runs"] == 3
    for field, key in (("input_tokens", "input"), ("output_tokens", "output"), ("total_tokens", "total")):
        assert by_ai["total"][field] == sum(b["tokens"][key] for b in blobs)
    rows = {r["key"]: r for r in by_ai["rows"]}
    assert set(rows) == {"priced", "unpriced"}
    assert rows["priced"]["cost_usd"] == pytest.approx(blobs[0]["cost_usd"] + blobs[1]["cost_usd"])
    assert rows["priced"]["cost_usd"] > 0 and rows["priced"]["runs_without_cost"] == 0
    assert rows["unpriced"]["cost_usd"] is None and rows["unpriced"]["runs_without_cost"] == 1  # unknown, not 0
    assert by_ai["total"]["cost_usd"] == pytest.approx(rows["priced"]["cost_usd"])

    by_task = cli_json(capsys, "usage", "--by", "task")
    assert [r["key"] for r in by_task["rows"]] == [str(t) for t in tasks]
    assert [r["total_tokens"] for r in by_task["rows"]] == [b["tokens"]["total"] for b in blobs]
    by_flow = {r["key"]: r["total_tokens"] for r in cli_json(capsys, "usage", "--by", "workflow")["rows"]}
    assert by_flow == {
        "feature": blobs[1]["tokens"]["total"],
        "-": blobs[0]["tokens"]["total"] + blobs[2]["tokens"]["total"],
    }
    by_day = cli_json(capsys, "usage", "--by", "day")
    assert sum(r["total_tokens"] for r in by_day["rows"]) == by_ai["total"]["total_tokens"]
    later = cli_json(capsys, "usage", "--since", "2999-01-01")
    assert later["total"]["runs"] == 0 and later["since"] == "2999-01-01T00:00:00+00:00"


def test_usage_refuses_an_unknown_grouping(project, cli):
    code, _out, err = cli("usage", "--by", "colour")
    assert code == 2 and "cannot group usage by 'colour'" in err


def test_usage_of_a_project_without_runs_is_empty_not_an_error(project, j):
    report = j("usage")
    assert report["rows"] == [] and report["total"]["runs"] == 0 and report["total"]["cost_usd"] is None
