"""Runs that must not outlive their lease: who is running what, and stopping the runs of a superseded epoch.

A local run's process group is recorded in ``<workspaces_dir>/.runs/task-<id>-e<epoch>-<pgid>.json``
(host, pgid, the leader's start time) while it runs; a docker run (its container and egress network)
carries the labels aictl.task, aictl.epoch and aictl.workspaces (the project's workspaces dir). Whoever
claims a task at epoch N calls `stop_stale_runs(workspaces_dir, task, N)` before it starts: every
earlier epoch's run of that task (its holder was reaped, so it lost the lease) is killed.
A recorded group is signalled only on the same host and only if its leader is still the process that
was recorded (start time), or gone while its group lives on (Linux never reuses a pid as long as a
group of that id exists).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["forget_run", "record_run", "remove_orphan_networks", "runs_dir", "stop_stale_runs"]

_RECORD = re.compile(r"task-(\d+)-e(\d+)-(\d+)\.json")


def runs_dir(workdir: Path, labels: Mapping[str, str] | None) -> Path | None:
    """Where a run in `workdir` is recorded: only for an aictl workspace (its parent holds `.locks`) of a task."""
    if not labels or not str(labels.get("task", "")).isdigit() or not str(labels.get("epoch", "")).isdigit():
        return None
    return workdir.parent / ".runs" if (workdir.parent / ".locks").is_dir() else None


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def record_run(workdir: Path, labels: Mapping[str, str] | None, pgid: int) -> Path | None:
    where = runs_dir(workdir, labels)
    if where is None or labels is None:
        return None
    where.mkdir(exist_ok=True)
    path = where / f"task-{labels['task']}-e{labels['epoch']}-{pgid}.json"
    record = {"host": socket.gethostname(), "pgid": pgid, "start": start_time(pgid), "owner_pid": os.getpid()}
    path.write_text(json.dumps(record))
    return path


def forget_run(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


def _kill_recorded(record: dict[str, Any]) -> bool:
    if record.get("host") != socket.gethostname():
        return False  # another machine's pid means nothing here
    pgid = int(record["pgid"])
    now = start_time(pgid)
    if now is not None and now != record.get("start"):
        return False  # the leader's pid belongs to another process now: not ours
    try:
        os.killpg(pgid, signal.SIGKILL)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def stop_stale_runs(workspaces_dir: Path, task_id: int, epoch: int) -> list[str]:
    """Kill every recorded local run and stop every docker container of `task_id` from an epoch below `epoch`."""
    stopped: list[str] = []
    if epoch <= 1:
        return stopped  # the task's first claim (epochs count claims from 1): no earlier run can exist
    where = Path(workspaces_dir) / ".runs"
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(where):
            m = _RECORD.fullmatch(name)
            if not m or int(m[1]) != task_id or int(m[2]) >= epoch:
                continue
            try:
                record = json.loads((where / name).read_text())
                if _kill_recorded(record):
                    stopped.append(f"local process group {record['pgid']} (epoch {m[2]})")
            except (OSError, ValueError, KeyError):
                pass
            (where / name).unlink(missing_ok=True)
    stopped += _stop_containers(Path(workspaces_dir).resolve(), task_id, epoch)
    return stopped


def _stop_containers(workspaces_dir: Path, task_id: int, epoch: int) -> list[str]:
    """Remove the task's containers (and egress networks) of earlier epochs, if a docker engine answers.

    Only this project's: a run's labels name its workspaces dir, and another project's task 1 is not ours.
    """
    if not (os.environ.get("DOCKER_HOST") or os.path.exists("/var/run/docker.sock")):
        return []  # no engine here: no container of ours can be running
    try:
        from aictl.sandbox.docker import MANAGED_LABEL, connect

        api = connect(timeout=5).api
        mine = [f"aictl.task={task_id}", f"aictl.workspaces={workspaces_dir}"]
        found = api.containers(all=True, filters={"label": [f"{MANAGED_LABEL}=true", *mine]})
    except Exception:  # noqa: BLE001 - no engine, no SDK: no container can be running
        return []
    stopped = []
    for c in found:
        labels = c.get("Labels") or {}
        e = labels.get("aictl.epoch", "")
        if e.isdigit() and int(e) < epoch:
            with contextlib.suppress(Exception):
                api.remove_container(c["Id"], force=True, v=True)
                stopped.append(f"container {c['Id'][:12]} (epoch {e})")
    with contextlib.suppress(Exception):  # its containers gone, an earlier epoch's egress network can go too
        gone = remove_orphan_networks(api, task_id=task_id, below_epoch=epoch, labels=mine)
        stopped += [f"network {n}" for n in gone]
    return stopped


def aictl_networks(api: Any, labels: list[str] | None = None) -> list[dict[str, Any]]:
    from aictl.sandbox.docker import MANAGED_LABEL

    return list(api.networks(filters={"label": [f"{MANAGED_LABEL}=true", *(labels or [])]}) or [])


def remove_orphan_networks(
    api: Any,
    *,
    all_: bool = False,
    task_id: int | None = None,
    below_epoch: int = 0,
    labels: list[str] | None = None,
) -> list[str]:
    """Remove run networks whose owner on this host is dead (all of them with all_; a task's older epochs with
    task_id; only those carrying every `labels` "key=value"): what a SIGKILLed run left. A network still holding a
    container stays until that container goes."""
    from docker.errors import DockerException

    from aictl.sandbox.docker import _pid_alive

    host = socket.gethostname()
    removed = []
    for net in aictl_networks(api, labels):
        found = net.get("Labels") or {}
        pid = found.get("aictl.owner_pid", "")
        if task_id is not None:
            epoch = found.get("aictl.epoch", "")
            doomed = found.get("aictl.task") == str(task_id) and epoch.isdigit() and int(epoch) < below_epoch
        else:
            doomed = all_ or (found.get("aictl.host") == host and pid.isdigit() and not _pid_alive(int(pid)))
        if doomed:
            with contextlib.suppress(DockerException):
                api.remove_network(net["Id"])
                removed.append(net.get("Name") or net["Id"][:12])
    return removed
