"""`aictl sandbox …`: build the image, check the engine, clean up, try a command."""

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from aictl.cli.context import state
from aictl.cli.options import DryRunOpt, OutputOpt, noun_app
from aictl.cli.output import cell, info
from aictl.domain.errors import ExitCode, UsageError

app = noun_app("Sandbox backends (local, docker): build the image, check the engine, run a command.")

DEFAULT_IMAGE = "aictl-sandbox:latest"  # keep in step with aictl.sandbox.image.DEFAULT_IMAGE (not imported: speed)

CONTAINER_COLUMNS = [
    ("id", lambda c: c["id"]),
    ("name", lambda c: c["name"]),
    ("state", lambda c: c["state"]),
    ("owner", lambda c: f"{c['owner_host']}:{c['owner_pid']}"),
    ("owner_alive", lambda c: c["owner_alive"]),
    ("status", lambda c: c["status"]),
]


@app.command("build")
def build(
    tag: Annotated[str, typer.Option("--tag", "-t", help="Name of the image to build.")] = DEFAULT_IMAGE,
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            help="Build FROM this image already in the local engine, e.g. a Debian made with "
            "`debootstrap bookworm dir && tar -C dir -c . | docker import - debian:local`.",
        ),
    ] = None,
    rootfs: Annotated[
        Path | None,
        typer.Option("--rootfs", help="Import this root filesystem tarball as the base (aictl-base:rootfs)."),
    ] = None,
    preset: Annotated[
        str,
        typer.Option(
            "--preset",
            help="busybox: the minimal image for commands; agents: git, sh, coreutils, Python, Node and the "
            "pinned Claude Code and Codex CLIs, from this host's programs (tagged by a digest of its inputs, "
            "rebuilt only when they change).",
        ),
    ] = "busybox",
    force: Annotated[bool, typer.Option("--force", help="agents: rebuild even if the digest's image exists.")] = False,
    output: OutputOpt = None,
) -> None:
    """Build the sandbox image locally, with no registry: by default from the host's static busybox."""
    out = state.output(output)
    if preset == "agents":
        from aictl.sandbox.agents_image import AGENTS_IMAGE, build_agents_image

        if base or rootfs:
            raise UsageError(
                "--preset agents is built from this host's programs; --base/--rootfs do not apply",
                hint="with a registry, build docs/sandbox.md's Dockerfile (FROM node:22-bookworm) instead",
            )
        agents = build_agents_image(AGENTS_IMAGE if tag == DEFAULT_IMAGE else tag, force=force, progress=info)
        out.emit(
            agents,
            name=lambda i: i.tag,
            human=lambda i: (
                f"{'up to date' if i.cached else 'built'} {i.tag} (digest {i.digest[:16]}, "
                f"{i.size_bytes / 1e6:.0f} MB) with " + ", ".join(f"{k} {v}" for k, v in sorted(i.versions.items()))
            ),
        )
        return
    if preset != "busybox":
        raise UsageError(f"unknown --preset {preset!r}", hint="--preset busybox or --preset agents")
    from aictl.sandbox.image import build_image

    image = build_image(tag, base=base, rootfs=rootfs, progress=info)
    out.emit(
        image,
        name=lambda i: i.tag,
        human=lambda i: f"built {i.tag} ({i.id[7:19]}, {i.size_bytes / 1e6:.1f} MB) from {i.base} [{i.base_source}]",
    )


def _status_human(s: dict[str, Any]) -> str:
    if not s["reachable"]:
        return f"docker engine: not reachable: {s.get('error')}\n  hint: {s.get('hint')}"
    lines = [
        f"docker engine: {s['version']} (API {s['api_version']}, cgroup v{s['cgroup_version']}, "
        f"{s['cgroup_driver']} driver)",
        f"image {s['image']}: "
        + (f"present ({s['image_id'][7:19]})" if s["image_present"] else "missing; build it with: aictl sandbox build"),
    ]
    lines += [f"warning: {w}" for w in s.get("warnings", [])]
    containers = s.get("containers", [])
    lines.append(
        f"aictl containers: {len(containers)}"
        + (" (remove strays: aictl sandbox cleanup)" if any(c["owner_alive"] is False for c in containers) else "")
    )
    lines += [
        f"  {c['id']} {c['name']} {c['state']} owner {c['owner_host']}:{c['owner_pid']} alive={cell(c['owner_alive'])}"
        for c in containers
    ]
    return "\n".join(lines)


@app.command("status")
def status(
    image: Annotated[str, typer.Option("--image", help="Image to look for.")] = DEFAULT_IMAGE,
    output: OutputOpt = None,
) -> None:
    """Engine reachable? Version, cgroup version, image present, containers left behind. Exit 1 if unreachable."""
    from aictl.sandbox.image import engine_status

    out = state.output(output)
    s = engine_status(image)
    out.emit(s, name=lambda s: s.get("version") or "unreachable", human=_status_human)
    if not s["reachable"]:
        raise typer.Exit(ExitCode.FAILURE)


def _doctor_human(d: dict[str, Any]) -> str:
    lines = [_status_human({**d["engine"], "containers": []}).splitlines()[0]]
    if not d["engine"]["reachable"]:
        return "\n".join(lines)
    if not d["engine"]["image_present"]:
        return "\n".join([*lines, f"image {d['image']}: missing; {d.get('hint')}"])
    fresh = {True: "up to date", False: "stale: rebuild with aictl sandbox build --preset agents", None: "?"}
    lines.append(f"image {d['image']}: digest {str(d.get('digest'))[:16]} ({fresh[d.get('up_to_date')]})")
    inside = d["inside"]
    if inside.get("error"):
        lines.append(f"inside: could not run: {inside['error']}")
    else:
        lines.append(f"inside: user {inside.get('user')} (uid {inside.get('uid')})")
        lines += [f"  {k}: {inside.get(k) or 'missing'}" for k in ("git", "python", "node", "claude-code", "codex")]
    eg = d["egress"]
    if eg.get("error"):
        lines.append(f"egress control: could not check: {eg['error']}")
    else:
        lines.append(
            f"egress control: {'works' if eg['ok'] else 'BROKEN'} (HTTP status of the allowed host "
            f"{eg.get('allowed')}, of the forbidden one {eg.get('forbidden')} through the proxy and "
            f"{eg.get('around')} around it; {eg.get('recorded')} attempts recorded)"
        )
    return "\n".join(lines)


@app.command("doctor")
def doctor(
    image: Annotated[str, typer.Option("--image", help="Agents image to examine.")] = "aictl-agents:latest",
    output: OutputOpt = None,
) -> None:
    """What the engine and the agents image can do: CLIs and versions inside, the user, whether egress control works.

    Runs two short containers. Exit 1 if the engine, the image or egress control fails.
    """
    from aictl.sandbox.doctor import doctor as examine

    out = state.output(output)
    report = examine(image)
    out.emit(report, name=lambda d: "ok" if d["ok"] else "failed", human=_doctor_human)
    if not report["ok"]:
        raise typer.Exit(ExitCode.FAILURE)


@app.command("cleanup")
def cleanup(
    all_: Annotated[
        bool, typer.Option("--all", help="Also containers of live runs (stops them); needs --yes.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Confirm --all.")] = False,
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
) -> None:
    """Remove aictl containers (and egress networks) whose owner on this host has died. None is not an error."""
    from aictl.sandbox.docker import cleanup_containers

    out = state.output(output)
    if all_ and not (yes or dry_run):
        raise UsageError(
            "--all also stops the containers of runs in progress", hint="aictl sandbox cleanup --all --yes"
        )
    removed = cleanup_containers(all_=all_, dry_run=dry_run)
    if dry_run:
        info(f"dry run: would remove {len(removed)} container(s)")
    else:
        from aictl.sandbox.docker import connect
        from aictl.sandbox.runs import remove_orphan_networks

        networks = remove_orphan_networks(connect().api, all_=all_)  # after their containers: in use until then
        if out.mode == "table":
            info(f"removed {len(removed)} container(s) and {len(networks)} egress network(s)")
    out.emit(removed, columns=CONTAINER_COLUMNS, name=lambda c: c["id"])


def _env(items: list[str] | None) -> dict[str, str]:
    env = {}
    for item in items or []:
        name, eq, value = item.partition("=")
        if not name:
            raise UsageError(f"bad --env {item!r}", hint="--env NAME=VALUE, or --env NAME to pass aictl's own value")
        if not eq:
            if name not in os.environ:
                raise UsageError(f"--env {name}: not set in aictl's environment")
            value = os.environ[name]
        env[name] = value
    return env


def _egress(items: list[str] | None) -> list[str] | None:
    if not items:
        return None
    from aictl.sandbox.egress import parse_hostport

    for item in items:
        try:
            parse_hostport(item)
        except ValueError as e:
            raise UsageError(
                f"bad --egress {item!r}: {e}", hint="--egress HOST:PORT, e.g. api.anthropic.com:443"
            ) from None
    return list(items)


@app.command("run", context_settings={"allow_interspersed_args": False})
def run(
    command: Annotated[
        list[str], typer.Argument(help="Command and its arguments (put them after --).", show_default=False)
    ],
    backend: Annotated[str, typer.Option("--backend", "-b", help="local (not isolated) or docker.")] = "docker",
    workdir: Annotated[Path, typer.Option("--workdir", "-w", help="Workspace directory (default: current).")] = Path(
        "."
    ),
    image: Annotated[str, typer.Option("--image", help="Docker image.")] = DEFAULT_IMAGE,
    network: Annotated[bool, typer.Option("--network", help="Allow network (docker: bridge).")] = False,
    egress: Annotated[
        list[str] | None,
        typer.Option(
            "--egress",
            help="docker: HOST:PORT reachable through a per-run egress proxy, nothing else (repeatable; "
            "the attempts are in -o json's settings.egress).",
        ),
    ] = None,
    cpus: Annotated[float, typer.Option("--cpus", help="CPU limit (docker).")] = 1.0,
    memory_mb: Annotated[int, typer.Option("--memory-mb", help="Memory limit in MB, no swap (docker).")] = 1024,
    pids: Annotated[int, typer.Option("--pids", help="Process limit (docker).")] = 256,
    timeout: Annotated[float, typer.Option("--timeout", help="Kill after this many seconds.")] = 600.0,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env", "-e", help="NAME=VALUE, or NAME to pass aictl's value (repeatable). Nothing else is passed."
        ),
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Run a command in a sandbox, as the executor would: `aictl sandbox run -- sh -c 'make test'`.

    Output streams as it comes; with -o json the RunResult is printed at the end instead.
    Exit code: the command's, or 1 when the sandbox could not start.
    """
    from aictl.sandbox import SandboxSpec, get_sandbox

    out = state.output(output)
    spec = SandboxSpec(
        backend=backend,
        image=image,
        network=network,
        cpus=cpus,
        memory_mb=memory_mb,
        pids=pids,
        timeout_s=timeout,
        env=_env(env),
        egress=_egress(egress),
    )

    def echo(stream: str, line: str) -> None:
        stream_file = sys.stdout if stream == "stdout" else sys.stderr
        stream_file.write(line + "\n")
        stream_file.flush()

    result = get_sandbox(spec.backend).run(
        list(command), workdir=workdir, spec=spec, on_output=echo if out.mode == "table" else None
    )
    if out.mode == "table":
        notes = [ln for ln in result.stderr.splitlines() if ln.startswith("[aictl: ")]
        for note in notes:
            info(note)
        info(
            f"{result.backend}: exit {result.exit_code} in {result.duration_s:.2f}s"
            + ("" if result.sandboxed else " (not sandboxed)")
        )
    else:
        out.emit(result, name=lambda r: r.exit_code)
    if result.start_error:
        info(f"error: {result.start_error}")
        raise typer.Exit(ExitCode.FAILURE)
    raise typer.Exit(result.exit_code if result.exit_code is not None else ExitCode.FAILURE)
