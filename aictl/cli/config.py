"""`aictl init` and `aictl config show`."""

from pathlib import Path
from typing import Annotated

import typer

from aictl.cli.context import state
from aictl.cli.options import OutputOpt, noun_app
from aictl.cli.output import info

app = noun_app("Show settings and where each value comes from.")


@app.command("show")
def show(output: OutputOpt = None) -> None:
    """Effective settings with the source of each (flag, env, file, default)."""
    from aictl.config import USER_KEYS

    out = state.output(output)
    s = state.settings()
    rows = [{"key": k, "value": _shown(k, getattr(s, k)), "source": s.sources.get(k, "default")} for k in USER_KEYS]
    rows.append({"key": "project_dir", "value": str(s.project_dir) if s.project_dir else None, "source": "resolved"})
    rows.append({"key": "home", "value": str(s.home) if s.home else None, "source": "resolved"})
    if out.mode in ("json", "yaml"):
        out.emit({r["key"]: {"value": r["value"], "source": r["source"]} for r in rows})
    else:
        out.emit(
            rows,
            name=lambda r: r["key"],
            columns=[("key", lambda r: r["key"]), ("value", lambda r: r["value"]), ("source", lambda r: r["source"])],
        )


def _shown(key: str, value: object) -> object:
    """A setting as `config show` prints it: a database password masked."""
    if key == "database_url" and isinstance(value, str):
        from aictl.domain.redact import mask_url

        return mask_url(value)
    return value


def init(
    directory: Annotated[Path | None, typer.Argument(help="Repository to initialise (default: current dir).")] = None,
    with_examples: Annotated[
        bool, typer.Option("--with-examples", help="Also copy aictl's example skills (skills/) into .ai/skills/.")
    ] = False,
    output: OutputOpt = None,
) -> None:
    """Create .ai/ (config.yaml, policy.yaml, skills/, workflows/) and the state store. Safe to rerun."""
    from importlib import resources

    from aictl.config import load_settings
    from aictl.store import open_store

    out = state.output(output)
    root = (directory or Path(state.project or ".")).resolve()
    home = root / ".ai"
    created = []
    for sub in ("skills", "workflows"):
        if not (home / sub).is_dir():
            (home / sub).mkdir(parents=True)
            created.append(f".ai/{sub}/")
    templates = resources.files("aictl") / "templates"
    for name, target in (("config.yaml", "config.yaml"), ("policy.yaml", "policy.yaml"), ("gitignore", ".gitignore")):
        path = home / target
        if not path.exists():
            path.write_text(templates.joinpath(name).read_text(encoding="utf-8"), encoding="utf-8")
            created.append(f".ai/{target}")
    if with_examples:
        from aictl.skills.manage import copy_examples

        created += copy_examples(root)
    from aictl.skills.resolve import check_project

    check_project(root)  # a broken skill stops here (exit 2, file:line), not mid-run
    settings = load_settings(root, state.overrides)
    store = open_store(settings.resolved_database_url, busy_timeout_ms=settings.busy_timeout_ms)
    if settings.home is not None:
        from aictl.store.identity import write_marker

        write_marker(store, settings.home)  # the store other commands expect (aictl.store.identity)
    store.close()
    result = {
        "project_dir": str(root),
        "home": str(settings.home),
        "created": created,
        "database_url": _shown("database_url", settings.resolved_database_url),
    }
    if out.mode == "table":
        info(f"initialised aictl in {home}" + (f" (created {', '.join(created)})" if created else " (already set up)"))
        info("next: aictl task create \"My first task\" --lock 'src/**'")
    else:
        out.emit(result, name=lambda r: r["home"])
