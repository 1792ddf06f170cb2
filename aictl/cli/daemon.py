"""`aictl daemon …`: run the scheduler in the background (or foreground), stop it, see it, read its log."""

import json
import os
import sys
import time
from typing import Annotated, Any

import typer

from aictl.cli.context import state
from aictl.cli.options import OutputOpt, noun_app
from aictl.cli.output import cell, info, iso
from aictl.domain.errors import AictlError, NotFound, NotInitialized, UsageError

app = noun_app("Run tasks autonomously: a scheduler that claims ready work and executes it.")


def _paths() -> Any:
    from aictl.daemon.process import DaemonPaths

    s = state.settings()
    if s.home is None or s.project_dir is None:
        raise NotInitialized(
            "not inside an aictl project (no .ai/ directory here or above)", hint="create one with: aictl init"
        )
    return DaemonPaths.for_home(s.home)


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _error_from(d: dict[str, Any]) -> AictlError:
    err = AictlError(d.get("message", "the daemon failed to start"), hint=d.get("hint"), details=d.get("details"))
    err.code = d.get("code", "error")
    err.exit_code = int(d.get("exit_code", 1))
    return err


@app.command("start")
def start(
    foreground: Annotated[
        bool,
        typer.Option(
            "--foreground", "-F", help="Run in this process (systemd, containers); the log goes to stderr too."
        ),
    ] = False,
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", min=1, help="Tasks run at once (default: setting daemon_workers).")
    ] = None,
    ai: Annotated[
        list[str] | None,
        typer.Option("--ai", help="Route AI tasks only to this registered AI (repeatable). Command tasks always run."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", min=0, max=65535, help="Serve Prometheus /metrics on this port (0: any)."),
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option("--metrics-host", help="Address of the metrics port (no token: keep it private)."),
    ] = "127.0.0.1",
    console: Annotated[
        bool, typer.Option("--console", help="Also serve `aictl console` from the daemon (see --console-port).")
    ] = False,
    console_port: Annotated[
        int, typer.Option("--console-port", min=0, max=65535, help="The console's port with --console (0: any).")
    ] = 8470,
    console_host: Annotated[
        str, typer.Option("--console-host", help="The console's address; not loopback needs AICTL_CONSOLE_TOKEN.")
    ] = "127.0.0.1",
    output: OutputOpt = None,
) -> None:
    """Start the daemon for this project: in the background (detached) unless --foreground. One per project and host."""
    from aictl.daemon.loop import DaemonOptions
    from aictl.daemon.process import detach, local_daemon, serve
    from aictl.skills.resolve import check_project

    out = state.output(output)
    settings = state.settings()
    check_project(settings.project_dir)  # a broken skill stops the start (exit 2, file:line), not a run
    paths = _paths()
    local = local_daemon(paths)
    if local.running:
        from aictl.domain.errors import Conflict

        raise Conflict(
            f"a daemon is already running for this project (pid {local.pid})",
            hint="see it with: aictl daemon status; stop it with: aictl daemon stop",
            details={"pid": local.pid},
        )
    options = DaemonOptions(
        workers=workers or settings.daemon_workers,
        ai_ids=_split(ai) or None,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        console_port=console_port if console else None,
        console_host=console_host,
    )
    if console:  # refused here, before anything starts, like `aictl console` itself
        from aictl.console.security import Guard

        Guard.for_bind(console_host, settings.actor)
    if foreground:

        def ready(msg: dict[str, Any]) -> None:
            if msg.get("took_over"):
                info(f"stale pid file (pid {msg['took_over']['pid']} is gone): taking over")
            info(
                f"daemon {msg['daemon_id']} running in the foreground, pid {msg['pid']}, "
                f"{msg['workers']} worker(s); log {msg['log']}; stop with Ctrl-C or: aictl daemon stop"
            )
            if not msg["store"]["reachable"]:
                info(f"warning: the store is unreachable ({msg['store']['error']}); retrying")
            if msg.get("metrics"):
                info(f"metrics: {msg['metrics']}")
            if msg.get("console"):
                info(f"console: {msg['console']}")

        code = serve(settings, options, paths, foreground=True, ready=ready)
        raise typer.Exit(code)

    project_dir = settings.project_root
    state.close()  # nothing open may cross the fork

    def body(ready: Any) -> int:
        os.chdir(project_dir)  # the daemon's working directory is the project
        return serve(settings, options, paths, foreground=False, ready=ready)

    msg = detach(paths, body)
    if not msg.get("ok"):
        raise _error_from(msg.get("error") or {})
    if msg.get("took_over"):
        info(f"stale pid file (pid {msg['took_over']['pid']} is gone): taken over")
    if not msg["store"]["reachable"]:
        info(f"warning: the store is unreachable ({msg['store']['error']}); the daemon keeps retrying")
    keys = ("pid", "daemon_id", "workers", "log", "took_over", "store", "metrics", "console")
    result = {k: msg.get(k) for k in keys}
    out.emit(
        result,
        name=lambda r: r["pid"],
        human=lambda r: (
            f"daemon {r['daemon_id']} started: pid {r['pid']}, {r['workers']} worker(s)\n"
            f"  log:    {r['log']}  (aictl daemon logs -f)\n  status: aictl daemon status"
            + (f"\n  metrics: {r['metrics']}" if r["metrics"] else "")
            + (f"\n  console: {r['console']}" if r["console"] else "")
        ),
    )


@app.command("stop")
def stop(
    drain: Annotated[
        bool, typer.Option("--drain", help="Let running tasks finish (up to daemon_grace_s), then stop. The default.")
    ] = False,
    now: Annotated[
        bool, typer.Option("--now", help="Stop at once: running tasks are cancelled and released for others.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0, help="Give up waiting after N seconds (default: the grace period + 60)."),
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Stop this project's daemon on this host (SIGTERM; --now: SIGQUIT) and wait until it has exited."""
    from aictl.daemon.process import local_daemon, lock_is_held, read_status, stop_signal

    out = state.output(output)
    if drain and now:
        raise UsageError("--drain and --now exclude each other")
    paths = _paths()
    local = local_daemon(paths)
    if not local.running:
        extra = " (its pid file is stale: the daemon died; the next start takes over)" if local.stale_pid_file else ""
        raise NotFound(f"no daemon is running for this project{extra}", hint="start one with: aictl daemon start")
    if local.pid is None:
        raise AictlError(
            f"a daemon holds {paths.lock} but its pid file is missing", hint="find it with: fuser " + str(paths.lock)
        )
    status = read_status(paths) or {}
    grace = 0.0 if now else float(status.get("grace_s", state.settings().daemon_grace_s))
    limit = timeout if timeout is not None else grace + 60.0
    t0 = time.monotonic()
    try:
        os.kill(local.pid, stop_signal(now))
    except ProcessLookupError:
        pass
    if not now:
        info(f"daemon pid {local.pid}: draining (running tasks get up to {grace:g}s)")
    while lock_is_held(paths):
        if time.monotonic() - t0 > limit:
            raise AictlError(
                f"daemon pid {local.pid} is still running after {limit:g}s",
                hint="stop it at once with: aictl daemon stop --now",
            )
        time.sleep(0.1)
    result = {
        "pid": local.pid,
        "mode": "now" if now else "drain",
        "stopped": True,
        "waited_s": round(time.monotonic() - t0, 2),
    }
    out.emit(
        result,
        name=lambda r: r["pid"],
        human=lambda r: f"daemon pid {r['pid']} stopped ({r['mode']}) after {r['waited_s']}s",
    )


def _status_data() -> tuple[dict[str, Any], bool]:
    from aictl.daemon.process import local_daemon, read_status

    paths = _paths()
    local = local_daemon(paths)
    data: dict[str, Any] = {
        "running": local.running,
        "pid": local.pid,
        "stale_pid_file": local.stale_pid_file,
        "log": str(paths.log),
    }
    st = read_status(paths) if local.running else None
    if st:
        now = time.time()
        data.update(
            {
                "daemon_id": st.get("daemon_id"),
                "state": st.get("state"),
                "host": st.get("host"),
                "started_at": iso(st.get("started_at")),
                "uptime_s": round(now - st.get("started_at", now), 1),
                "workers": st.get("workers"),
                "running_tasks": [{**r, "since": iso(r.get("since"))} for r in st.get("running", [])],
                "last_sweep_at": iso(st.get("last_sweep_at")) if st.get("last_sweep_at") else None,
                "store": st.get("store"),
                "wakeup": st.get("wakeup"),
                "policy": st.get("policy"),
                "outcomes": st.get("outcomes"),
                "grace_s": st.get("grace_s"),
                "lease_ttl": st.get("lease_ttl"),
                "ai_ids": st.get("ai_ids"),
                "status_age_s": round(now - st.get("updated_at", now), 1),
            }
        )
        for key in ("down_since", "last_ok_at"):
            if data["store"] and data["store"].get(key):
                data["store"][key] = iso(data["store"][key])
    data["store_from_here"], data["daemons"] = _registered_daemons()
    return data, local.running


def _registered_daemons() -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """Every daemon the store knows (other machines' too); the store may be down, which is news, not an error."""
    from aictl.daemon.registry import DaemonRegistry

    try:
        rows = DaemonRegistry(state.store()).list()
    except AictlError as e:
        return {"reachable": False, "error": e.message}, None
    except Exception as e:  # noqa: BLE001 - a driver error from a dying server
        return {"reachable": False, "error": f"{type(e).__name__}: {e}"}, None
    for r in rows:
        for key in ("started_at", "heartbeat_at", "stopped_at"):
            r[key] = iso(r[key]) if r[key] else None
    return {"reachable": True, "error": None}, rows


def _status_human(d: dict[str, Any]) -> str:
    if d["running"]:
        w = d.get("workers") or {}
        lines = [
            f"daemon {d.get('daemon_id')} {d.get('state')}: pid {d['pid']}, up {d.get('uptime_s')}s, "
            f"workers {w.get('busy', '?')}/{w.get('total', '?')} busy"
        ]
        for r in d.get("running_tasks") or []:
            lines.append(
                f"  task {r['task_id']} ({r.get('ai') or r.get('connector')}) since {r['since']}: {r['title']}"
            )
        store = d.get("store") or {}
        lines.append(
            f"  store: {store.get('backend')} "
            + ("reachable" if store.get("reachable") else f"UNREACHABLE: {store.get('error')}")
            + f"; last sweep {d.get('last_sweep_at') or '-'}"
        )
    else:
        lines = [
            "no daemon is running for this project on this host"
            + (" (stale pid file: the last one died)" if d["stale_pid_file"] else "")
        ]
    if d["daemons"] is None:
        lines.append(f"daemons table: store unreachable: {d['store_from_here']['error']}")
    elif d["daemons"]:
        lines.append("registered daemons:")
        for r in d["daemons"]:
            w = (r.get("info") or {}).get("workers") or {}
            lines.append(
                f"  {r['id']}  {r['status']:<8} {r['host']} pid {r['pid']}  heartbeat {r['heartbeat_age_s']}s"
                f" ago  busy {w.get('busy', '-')}/{w.get('total', '-')}  {cell(r['project'])}"
            )
    return "\n".join(lines)


@app.command("status")
def status(output: OutputOpt = None) -> None:
    """This project's daemon (uptime, workers, running tasks, store) and every daemon registered in the store.

    Exit code 3 when no daemon runs for the project on this host.
    """
    out = state.output(output)
    data, running = _status_data()
    out.emit(data, name=lambda d: d.get("pid") or "", human=_status_human)
    if not running:
        raise typer.Exit(3)


def _log_human(line: str) -> str:
    try:
        rec = json.loads(line)
    except ValueError:
        return line
    if not isinstance(rec, dict):
        return line
    ts = str(rec.pop("timestamp", ""))[:23].replace("T", " ")
    level = rec.pop("level", "")
    event = rec.pop("event", "")
    rec.pop("logger", None)
    rest = " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) or ' ' in v else v}" for k, v in rec.items())
    return f"{ts} {level:<7} {event}" + (f"  {rest}" if rest else "")


@app.command("logs")
def logs(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines (across rotations).")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="How many past lines to show first.")] = 50,
    output: OutputOpt = None,
) -> None:
    """The daemon's log: JSON lines as written with -o json, readable lines otherwise."""
    from aictl.daemon.logs import iter_log_lines

    out = state.output(output)
    paths = _paths()
    if not paths.log.exists() and not follow:
        raise NotFound(f"no daemon log yet at {paths.log}", hint="start the daemon with: aictl daemon start")
    raw = out.mode == "json"
    for line in iter_log_lines(paths, lines=lines, follow=follow):
        sys.stdout.write((line if raw else _log_human(line)) + "\n")
        if follow:
            sys.stdout.flush()
