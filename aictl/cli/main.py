"""The `aictl` entry point: global options, sub-apps, and the one place errors become exit codes."""

import json
import os
import sys
from typing import Annotated

import typer
from typer._click import exceptions as click_exceptions

from aictl import __version__
from aictl.cli import params
from aictl.cli.context import state
from aictl.domain.errors import AictlError, ExitCode

HELP = "Control plane for AI coding agents: tasks, leases, path locks, policy and audit on one repository."
# noun → module holding its Typer app. Only the invoked noun's module is imported and
# built: building every command of every noun costs ~0.1 s on each call (Typer has no
# lazy loading), and the CLI's budget for a whole hot command is 0.2 s.
NOUNS = {
    "task": "aictl.cli.task",
    "audit": "aictl.cli.audit",
    "policy": "aictl.cli.policy",
    "config": "aictl.cli.config",
    "sandbox": "aictl.cli.sandbox",
    "workspace": "aictl.cli.workspace",
    "daemon": "aictl.cli.daemon",
    "notify": "aictl.cli.notify",
    "schedule": "aictl.cli.schedule",
    "ai": "aictl.cli.ai",
    "skill": "aictl.cli.skill",
    "workflow": "aictl.cli.workflow",
    "mcp": "aictl.cli.mcp",
}
COMMANDS = {
    "init": ("aictl.cli.config", "init"),
    "route": ("aictl.cli.route", "route"),
    "merge": ("aictl.cli.merge", "merge"),
    "usage": ("aictl.cli.usage", "usage"),
    "console": ("aictl.cli.console", "console"),
    "plan": ("aictl.cli.plan", "plan"),
}
params.install()


def build_app(only: str | None = None) -> typer.Typer:
    """The command tree; with `only`, just that noun (or top-level command) under the root options."""
    import importlib

    app = typer.Typer(
        name="aictl",
        help=HELP,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(root)
    for noun, module in NOUNS.items():
        if only is None or only == noun:
            app.add_typer(importlib.import_module(module).app, name=noun)
    for name, (module, func) in COMMANDS.items():
        if only is None or only == name:
            app.command(name)(getattr(importlib.import_module(module), func))
    return app


def __getattr__(name: str) -> typer.Typer:
    if name == "app":  # the whole tree, for docs and tests: `from aictl.cli.main import app`
        return build_app()
    raise AttributeError(name)


def _version(value: bool) -> None:
    if value:
        print(f"aictl {__version__}")
        raise typer.Exit()


def root(
    project: Annotated[
        str | None,
        typer.Option("--project", "-C", help="Project directory (default: nearest with .ai/). Env AICTL_PROJECT."),
    ] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="Store URL (env AICTL_DATABASE_URL).", show_default=False)
    ] = None,
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = None,
) -> None:
    state.project = project
    state.overrides = {"database_url": database_url}


def _invoked_noun(argv: list[str]) -> str | None:
    """The first word that is not a root option (or an option's value)."""
    takes_value = {"--project", "-C", "--database-url"}
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a in takes_value:
            skip = True
        elif not a.startswith("-"):
            return a
    return None


def _output_mode_guess(argv: list[str]) -> str:
    """The output mode even when the error came before the command parsed its options."""
    if state.output_mode:
        return state.output_mode
    for i, a in enumerate(argv):
        if a in ("-o", "--output") and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--output="):
            return a.split("=", 1)[1]
        if a.startswith("-o") and len(a) > 2:
            return a[2:]
    return os.environ.get("AICTL_OUTPUT", "table")


def _report(err: AictlError, argv: list[str]) -> None:
    if _output_mode_guess(argv) == "json":
        sys.stderr.write(json.dumps({"error": err.to_dict()}, ensure_ascii=False) + "\n")
        return
    sys.stderr.write(f"error: {err.message}\n")
    if err.hint:
        sys.stderr.write(f"hint: {err.hint}\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("AICTL_DEBUG") not in (None, "", "0")
    noun = _invoked_noun(argv)
    command = typer.main.get_command(build_app(noun if noun in NOUNS or noun in COMMANDS else None))
    state.reset()
    code = ExitCode.OK
    try:
        rv = command.main(args=argv, prog_name="aictl", standalone_mode=False)
        code = rv if isinstance(rv, int) else ExitCode.OK
    except AictlError as e:
        if debug:
            import traceback

            traceback.print_exc()
        _report(e, argv)
        code = e.exit_code
    except typer.Exit as e:
        code = e.exit_code
    except click_exceptions.ClickException as e:
        e.show()
        code = ExitCode.USAGE if isinstance(e, click_exceptions.UsageError) else ExitCode.FAILURE
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("interrupted\n")
        code = ExitCode.INTERRUPTED
    except BrokenPipeError:
        # stdout closed early (| head): exit quietly, as coreutils do.
        sys.stderr.close()
        code = ExitCode.OK
    except Exception as e:  # a bug, not a user error: one line unless AICTL_DEBUG
        if debug:
            raise
        err = AictlError(
            f"internal error: {type(e).__name__}: {e}", hint="rerun with AICTL_DEBUG=1 for the traceback, and report it"
        )
        _report(err, argv)
        code = ExitCode.FAILURE
    finally:
        state.close()
    return code


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
