"""What a finished step task tells the workflow: its outputs, its verification, and feedback for a next attempt.

Structured output, per connector:
- agents (Claude Code, Codex, the API connectors): their final message is the task's `result.summary`; a JSON
  object there (the whole message, a ```json block, or the last line that is one) is the structured output;
- command steps: the last non-empty line of stdout, when it is a JSON object.
Its keys are read with `result.<key>` (as are the result's own: summary, commit, changed_paths, branch).
`stdout` is the command's standard output; `file:<path>` a file of the task's commit. Everything read is
bounded: a model or a command decides what these contain, so nothing here trusts their size or shape.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUTPUT_MAX = 64 * 1024  # characters kept of one output (stdout, a file)
LOG_TAIL = 3000  # characters of a verify log fed back into the next attempt's prompt
_FENCED = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.S)


@dataclass
class TaskFacts:
    """A finished task, as the workflow expressions and the next attempt see it."""

    task_id: int
    status: str
    result: dict[str, Any] = field(default_factory=dict)  # the task's result plus its structured output
    verify: dict[str, Any] = field(default_factory=dict)
    stdout: str = ""
    verify_log: str = ""
    error: str | None = None

    def output(self, source: str, project: Path | None) -> Any:
        if source == "stdout":
            return self.stdout
        if source.startswith("file:"):
            return _file(project, self.result.get("commit"), source[5:])
        value: Any = self.result
        for part in source.split(".")[1:]:
            value = value.get(part) if isinstance(value, dict) else None
        return value


def structured(text: str | None) -> dict[str, Any]:
    """The JSON object a message carries (whole, fenced, or its last such line), else {}."""
    if not text or not isinstance(text, str):
        return {}
    text = text[-OUTPUT_MAX:].strip()
    candidates = [text, *reversed(_FENCED.findall(text)), *reversed([ln.strip() for ln in text.splitlines()])]
    for c in candidates:
        if c.startswith("{") and c.endswith("}"):
            try:
                value = json.loads(c)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return {}


def read_facts(store: Any, settings: Any, row: dict[str, Any]) -> TaskFacts:
    """Facts of a finished task row (done, failed or cancelled), from its result and its last attempt's evidence."""
    from aictl.audit.evidence import EvidenceStore

    result = json.loads(row["result"]) if row.get("result") else {}
    result = result if isinstance(result, dict) else {"value": result}
    ev = EvidenceStore(store, settings.home, actor=settings.actor)
    refs = [r for r in ev.list(row["id"]) if r.lease_epoch == row["lease_epoch"] and r.verified]
    facts = TaskFacts(task_id=row["id"], status=row["status"], error=result.get("error"))

    def text(kind: str, name: str | None = None) -> str:
        found = [r for r in refs if r.kind == kind and (name is None or r.name == name)]
        if not found:
            return ""
        try:
            return ev.get(found[-1].digest)[-OUTPUT_MAX:].decode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - unreadable evidence is an empty output, never a crashed advance
            return ""

    facts.stdout = text("log", "stdout.txt")
    logs = [r for r in refs if r.kind == "verify_log"]
    if logs:
        facts.verify = {"ran": True, **(logs[-1].summary or {})}
        facts.verify_log = text("verify_log")[-LOG_TAIL:]
    else:
        facts.verify = {"ran": False, "passed": row["status"] in ("done", "merged")}
    extra = structured(result.get("summary")) or structured(facts.stdout)
    facts.result = {**extra, **{k: v for k, v in result.items() if k not in extra}}
    return facts


def feedback_of(step_id: str, attempt: int, facts: TaskFacts, outputs: dict[str, Any]) -> str:
    """What the next attempt is told about this one."""
    lines = [f"Attempt {attempt} of step {step_id} (task {facts.task_id}) did not pass (status {facts.status})."]
    if facts.error:
        lines.append(f"Reason: {facts.error}")
    v = facts.verify
    if v.get("ran"):
        lines.append(f"Verification `{v.get('command')}` exited {v.get('exit_code')}:")
        lines.append(facts.verify_log)
    if outputs:
        lines.append(f"Outputs: {json.dumps(outputs, sort_keys=True)[:LOG_TAIL]}")
    summary = facts.result.get("summary")
    if summary:
        lines.append(f"Its final message: {str(summary)[:LOG_TAIL]}")
    return "\n".join(lines)


def _file(project: Path | None, commit: Any, path: str) -> str | None:
    """A file of the task's commit, at most OUTPUT_MAX characters; None when there is none."""
    if project is None or not isinstance(commit, str) or not re.fullmatch(r"[0-9a-f]{7,64}", commit):
        return None
    if path.startswith(("/", "-")) or ".." in Path(path).parts:
        return None
    spec = f"{commit}:{path}"
    try:
        kind = subprocess.run(
            ["git", "-C", str(project), "cat-file", "-t", spec], capture_output=True, text=True, timeout=10
        )
        if kind.returncode != 0 or kind.stdout.strip() != "blob":
            return None
        size = subprocess.run(
            ["git", "-C", str(project), "cat-file", "-s", spec], capture_output=True, text=True, timeout=10
        )
        if size.returncode != 0 or int(size.stdout.strip() or 0) > 4 * OUTPUT_MAX:
            return None  # a file the agent made huge is not read into memory
        out = subprocess.run(["git", "-C", str(project), "cat-file", "blob", spec], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout[:OUTPUT_MAX].decode("utf-8", "replace") if out.returncode == 0 else None


__all__ = ["TaskFacts", "feedback_of", "read_facts", "structured"]
