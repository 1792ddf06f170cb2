"""Skill resolution for one task with 200 installed skills (and the registry load that precedes it).

    .venv/bin/python bench/skills.py [--skills 200] [--runs 50]

A temp project holds --skills skills: 70% shared (a third with labels, some with paths or
capabilities, one in ten requiring another with a version range), 20% per-AI for two AIs,
10% user-wide. Measured in-process after one warm-up: `load_registry` (reads and validates every
SKILL.md: what a run pays once) and `resolve` (what one AI gets for one task, requirements
checked) on a loaded registry; median and p95 in ms. Target: resolve under 10 ms. Nothing asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine, ms_stats

from aictl.domain.models import Task
from aictl.skills import load_registry, resolve, validate
from aictl.skills.delivery import system_section
from aictl.skills.manage import find_skills


def write(root: Path, name: str, i: int, extra: str = "") -> None:
    d = root / name
    d.mkdir(parents=True)
    body = "\n".join(f"- rule {k} of {name}: keep it small and tested." for k in range(20))
    (d / "SKILL.md").write_text(
        f"---\nname: {name}\ndescription: skill number {i} for the bench\nversion: 1.{i % 7}.0\n{extra}---\n{body}\n"
    )


def build(project: Path, user: Path, count: int) -> None:
    shared, per_ai = project / ".ai" / "skills", project / ".ai" / "skills" / "ai"
    for i in range(count):
        name, extra = f"skill-{i:03d}", ""
        if i % 3 == 0:
            extra += f"labels: [l{i % 10}, common]\n"
        if i % 11 == 0:
            extra += f"paths: ['src/m{i % 5}/**']\n"
        if i % 13 == 0:
            extra += "capabilities: [python]\n"
        if i % 10 == 5 and i > 10:
            extra += f"requires: ['skill-{i - 5:03d}>=1.0,<2']\n"
        kind = i % 10
        target = user if kind == 9 else (per_ai / ("ai-a" if kind % 2 else "ai-b") if kind in (7, 8) else shared)
        write(target, name, i, extra)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skills", type=int, default=200)
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project, user = Path(tmp) / "proj", Path(tmp) / "user"
        build(project, user / "skills", args.skills)
        os.environ["AICTL_CONFIG_DIR"] = str(user)
        task = Task(
            id=1,
            title="t",
            status="queued",
            created_at=0,
            updated_at=0,
            labels=["common", "l3"],
            required_capabilities=["python"],
            lock_paths=["src/m1/**"],
        )
        validate(load_registry(project))
        loads, resolves, got = [], [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            reg = load_registry(project)
            loads.append(time.perf_counter() - t0)
        for _ in range(args.runs):
            t0 = time.perf_counter()
            got = resolve(reg, task, "ai-a", "anthropic")
            resolves.append(time.perf_counter() - t0)
        prompt = {"bench_task": prompt_cost([r.skill for r in got])}
        prompt["example_skills"] = prompt_cost(find_skills(Path(__file__).resolve().parents[1] / "skills"))
    emit(
        {
            "bench": "skills",
            "skills": args.skills,
            "runs": args.runs,
            "resolved": len(got),
            "load_registry": ms_stats(loads),
            "resolve": ms_stats(resolves),
            "system_prompt_on_skills": prompt,
            "machine": machine(),
        }
    )


def prompt_cost(skills: list) -> dict:
    """System-prompt size spent on skills: index + load_skill (API connectors) versus every body inlined.
    Tokens are estimated as characters / 4 (no tokenizer here)."""
    index, inline = system_section(skills, "tool"), system_section(skills, "inline")
    return {
        "skills": len(skills),
        "index_chars": len(index),
        "inline_chars": len(inline),
        "index_tokens_est": len(index) // 4,
        "inline_tokens_est": len(inline) // 4,
    }


if __name__ == "__main__":
    main()
