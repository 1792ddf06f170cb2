"""`aictl skill …`: the skills each AI gets (shared, per-AI, user-wide), added, switched and checked."""

from pathlib import Path
from typing import Annotated, Any

import typer

from aictl.cli.context import state
from aictl.cli.options import DryRunOpt, OutputOpt, noun_app
from aictl.cli.output import cell, info
from aictl.domain.errors import NotInitialized

app = noun_app("Skills: instructions each AI loads on demand (shared, per-AI, user-wide; docs/skills.md).")

NameArg = Annotated[str, typer.Argument(help="Skill name, e.g. python-tests.", show_default=False)]
AiOpt = Annotated[
    str | None, typer.Option("--ai", help="One AI's own skills (.ai/skills/ai/<id>/) instead of the shared ones.")
]


def _project() -> Path:
    settings = state.settings()
    if settings.project_dir is None:
        raise NotInitialized("no aictl project here (no .ai/ found)", hint="aictl init")
    return Path(settings.project_dir)


def _row(skill: Any, enabled: bool | None = None, **extra: Any) -> dict[str, Any]:
    row = skill.summary()
    if enabled is not None:
        row["enabled"] = enabled
    row.update(extra)
    return row


SKILL_COLUMNS = [
    ("name", lambda r: r["name"]),
    ("version", lambda r: r["version"]),
    ("scope", lambda r: r["scope"] + (f":{r['ai']}" if r.get("ai") else "")),
    ("enabled", lambda r: r.get("enabled")),
    ("description", lambda r: r["description"]),
]


def _human(r: dict[str, Any]) -> str:
    lines = [
        f"skill {r['name']}@{r['version']} ({r['scope']}" + (f", AI {r['ai']}" if r.get("ai") else "") + ")",
        f"  description:  {r['description']}",
        f"  source:       {r['source']}",
    ]
    for key in ("requires", "labels", "capabilities", "paths", "connectors", "files"):
        if key in r:
            lines.append(f"  {key + ':':<13} {cell(r[key])}")
    if r.get("digest"):
        lines.append(f"  digest:       {r['digest']}")
    if r.get("body"):
        lines += ["", r["body"]]
    return "\n".join(lines)


@app.command("list")
def list_(
    ai: Annotated[
        str | None, typer.Option("--ai", help="What this AI sees (its own skills over shared over user).")
    ] = None,
    task: Annotated[int | None, typer.Option("--task", help="What each AI (or --ai) would get for this task.")] = None,
    output: OutputOpt = None,
) -> None:
    """Installed skills, or with --task what each registered AI would get for that task (requirements included)."""
    from aictl.skills import load_registry, resolve

    out = state.output(output)
    registry = load_registry(_project())
    if task is None:
        rows = [_row(s, registry.state.enabled(s.name, ai)) for _, s in sorted(registry.view(ai).items())]
        if ai is None:  # every AI's own skills too, so nothing installed is hidden
            rows += [
                _row(s, registry.state.enabled(s.name, s.ai))
                for s in sorted((s for d in registry.per_ai.values() for s in d.values()), key=lambda s: (s.ai, s.name))
            ]
        out.emit(rows, columns=SKILL_COLUMNS, name=lambda r: r["name"])
        return
    from aictl.agents.registry import Registry
    from aictl.execution.skills import denied_skills

    the_task = state.queries().get(task)
    ais = [Registry(state.store()).get(ai)] if ai else [a for a in Registry(state.store()).list() if a.enabled]
    gate = state.gate()
    rows = []
    for a in ais:
        resolved = resolve(registry, the_task, a.id, a.connector)
        denied = denied_skills(gate, a, the_task, resolved)
        rows += [
            _row(
                r.skill,
                for_ai=a.id,
                reason=denied.get(r.skill.name) or r.reason,
                delivered=r.skill.name not in denied,
                digest=r.skill.digest,
            )
            for r in resolved
        ]
    out.emit(
        rows,
        columns=[
            ("ai", lambda r: r["for_ai"]),
            ("name", lambda r: r["name"]),
            ("version", lambda r: r["version"]),
            ("scope", lambda r: r["scope"]),
            ("delivered", lambda r: r["delivered"]),
            ("reason", lambda r: r["reason"]),
        ],
        name=lambda r: f"{r['for_ai']}:{r['name']}",
    )


@app.command("show")
def show(name: NameArg, ai: AiOpt = None, output: OutputOpt = None) -> None:
    """One skill as the AI (or every AI) sees it: metadata, files, digest and body."""
    from aictl.domain.errors import NotFound
    from aictl.skills import load_registry

    out = state.output(output)
    registry = load_registry(_project())
    skill = registry.find(name, ai)
    if skill is None:
        raise NotFound(f"no skill {name!r}" + (f" for AI {ai}" if ai else ""), hint="aictl skill list")
    row = _row(
        skill,
        registry.state.enabled(name, ai),
        files=skill.files(),
        digest=skill.digest,
        body=skill.body,
        tests=list(skill.tests),
    )
    out.emit(row, human=_human, name=lambda r: r["name"])


@app.command("add")
def add(
    source: Annotated[
        str, typer.Argument(help="A skill folder, a .yaml skill, a folder of skills, or a git URL.", show_default=False)
    ],
    ai: AiOpt = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Copy skills into the registry (validated with the rest: all are added or none). A git URL is cloned."""
    from aictl.skills.manage import add as add_skills

    out = state.output(output)
    skills = add_skills(_project(), source, ai=ai, dry_run=dry_run)
    if dry_run:
        info("dry run: nothing was changed")
    out.emit([_row(s, True) for s in skills], columns=SKILL_COLUMNS, name=lambda r: r["name"])


def _switch(name: str, on: bool, ai: str | None, dry_run: bool, output: str | None) -> None:
    from aictl.skills.manage import set_enabled

    out = state.output(output)
    skill = set_enabled(_project(), name, on, ai=ai, dry_run=dry_run)
    if dry_run:
        info("dry run: nothing was changed")
    out.emit(_row(skill, on, **({"for_ai": ai} if ai else {})), columns=SKILL_COLUMNS, name=lambda r: r["name"])


@app.command("enable")
def enable(name: NameArg, ai: AiOpt = None, dry_run: DryRunOpt = False, output: OutputOpt = None) -> None:
    """Switch a skill back on, for every AI or (--ai) for one (.ai/skills/state.yaml)."""
    _switch(name, True, ai, dry_run, output)


@app.command("disable")
def disable(name: NameArg, ai: AiOpt = None, dry_run: DryRunOpt = False, output: OutputOpt = None) -> None:
    """Switch a skill off without deleting it; refused while an enabled skill requires it."""
    _switch(name, False, ai, dry_run, output)


@app.command("remove")
def remove(name: NameArg, ai: AiOpt = None, dry_run: DryRunOpt = False, output: OutputOpt = None) -> None:
    """Delete a skill from the registry; refused while another skill requires it."""
    from aictl.skills.manage import remove as remove_skill

    out = state.output(output)
    skill = remove_skill(_project(), name, ai=ai, dry_run=dry_run)
    if dry_run:
        info("dry run: nothing was changed")
    out.emit(_row(skill), columns=SKILL_COLUMNS, name=lambda r: r["name"])


@app.command("validate")
def validate(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Skill folders or files (default: the registry).", show_default=False)
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Check skills: keys, versions, requirements (present, in range, no cycle); errors name file:line (exit 2)."""
    from aictl.skills import load_registry
    from aictl.skills import validate as validate_registry
    from aictl.skills.manage import find_skills

    out = state.output(output)
    skills = [s for p in paths for s in find_skills(p)] if paths else validate_registry(load_registry(_project()))
    if out.mode == "table":
        info(f"{len(skills)} skill(s) valid")
    out.emit(
        [_row(s) for s in skills],
        columns=[("name", lambda r: r["name"]), ("version", lambda r: r["version"]), ("source", lambda r: r["source"])],
        name=lambda r: r["name"],
    )


@app.command("test")
def test(
    name: NameArg,
    ai: Annotated[str, typer.Option("--ai", help="The registered AI that runs the cases.", show_default=False)],
    output: OutputOpt = None,
) -> None:
    """Run the skill's `tests:` cases with an AI, each in a throwaway project; exit 1 when a case fails."""
    from aictl.execution.skilltest import run_skill_tests

    out = state.output(output)
    results = run_skill_tests(_project(), state.store(), name, ai)
    out.emit(
        results,
        columns=[
            ("case", lambda r: r["case"]),
            ("ok", lambda r: r["ok"]),
            ("outcome", lambda r: r["outcome"]),
            ("failures", lambda r: "; ".join(r["failures"])),
        ],
        name=lambda r: r["case"],
    )
    if not all(r["ok"] for r in results):
        raise typer.Exit(1)
