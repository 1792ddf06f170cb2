"""The docker backend: one throwaway container per run.

Only the workspace is writable (bind-mounted read-write at spec.mount, the
working directory), except the files the policy forbids reading
(spec.masked_paths): an empty read-only file is bind-mounted over each, so a
process inside reads nothing there and can neither replace, rename nor
hard-link it. The image's filesystem is read-only with a small /tmp
tmpfs; no network unless spec.network (see `network_mode`); every capability dropped,
no-new-privileges, limits on processes, memory (no swap) and CPU; the process
runs as the invoking uid:gid, so files it writes belong to the user who ran
aictl (never as root: see ownership.py). Output is streamed over an attach made before start (nothing is kept in
docker's log files), and the container is removed in every case, including
KeyboardInterrupt. Inside `deferred_cleanup()` (the executor's run) the removal of a container that
has exited, and of its egress network, happens on a thread while the caller collects the workspace;
leaving the block waits for it. Containers carry the label aictl.managed=true plus the
owner's host and pid, so `cleanup_containers()` can find the ones whose owner
died before its `finally` ran.

The docker SDK (and requests under it) is imported only inside these functions.
"""

from __future__ import annotations

import contextvars
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aictl.sandbox.base import (
    COMMAND_NOT_FOUND,
    OutputCallback,
    OutputSink,
    RunResult,
    SandboxError,
    SandboxSpec,
    check_run_args,
)
from aictl.sandbox.masking import mask_mounts
from aictl.sandbox.ownership import chown_tree, sandbox_user, strip_special

MANAGED_LABEL = "aictl.managed"
TMPFS = {"/tmp": "rw,size=64m,mode=1777"}
CAP_DROP = ["ALL"]
SECURITY_OPT = ["no-new-privileges"]
POLL_S = 0.05
API_TIMEOUT_S = 60
ENGINE_HINT = "start it: dockerd > /var/log/dockerd.log 2>&1 & (install it: apt-get install -y docker.io)"


class EngineUnavailable(SandboxError):
    code = "docker_unavailable"


_DEFERRED: contextvars.ContextVar[list[threading.Thread] | None] = contextvars.ContextVar(
    "aictl_docker_deferred", default=None
)


@contextmanager
def deferred_cleanup() -> Iterator[None]:
    """Within the block, a run's container (and network) is removed on a thread once the run has ended, so the
    caller goes on at once; the block ends when every such removal has. A run interrupted by an exception, or
    started on another thread than the block's, removes its container before it returns, as outside."""
    pending: list[threading.Thread] = []
    token = _DEFERRED.set(pending)
    try:
        yield
    finally:
        _DEFERRED.reset(token)
        for thread in pending:
            thread.join()


def _dispose(cleanup: Callable[[], None], defer: bool) -> None:
    pending = _DEFERRED.get() if defer else None
    if pending is None:
        cleanup()
        return
    # Not a daemon thread: an exiting process waits for it, so no container outlives its run's owner by design.
    thread = threading.Thread(target=cleanup, name="aictl-docker-cleanup")
    thread.start()
    pending.append(thread)


_API_VERSIONS: dict[str, str] = {}  # the API version each engine negotiated, by DOCKER_HOST, for this process


def connect(timeout: int = API_TIMEOUT_S) -> Any:
    """A docker client that has answered once, or EngineUnavailable.

    The first client of a process negotiates the API version (GET /version, ~9 ms); later ones reuse that
    version and only ping (~1 ms), which is what every run pays for its client."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:  # pragma: no cover - docker is a dependency
        raise EngineUnavailable("the docker Python SDK is not installed", hint="pip install 'docker>=7'") from None
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        known = _API_VERSIONS.get(where)
        if known is None:
            client = docker.from_env(timeout=timeout)
            _API_VERSIONS[where] = client.api.api_version
            return client
        client = docker.from_env(timeout=timeout, version=known)
        try:
            client.api.ping()
        except BaseException:
            client.close()
            raise
        return client
    except (DockerException, OSError) as e:  # requests' connection errors are OSErrors
        _API_VERSIONS.pop(where, None)  # an engine that comes back may be another version
        raise EngineUnavailable(f"docker engine not reachable at {where}: {_short(e)}", hint=ENGINE_HINT) from None


def _short(e: BaseException) -> str:
    text = str(getattr(e, "explanation", None) or e)
    return text if len(text) < 300 else text[:297] + "..."


def owner_labels(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    labels = {
        MANAGED_LABEL: "true",
        "aictl.host": socket.gethostname(),
        "aictl.owner_pid": str(os.getpid()),
        "aictl.started": str(int(time.time())),
    }
    for k, v in (extra or {}).items():
        labels[k if k.startswith("aictl.") else f"aictl.{k}"] = str(v)
    return labels


def effective_cpus(spec: SandboxSpec) -> float:
    """The engine refuses more CPUs than the machine has (a config error no retry would fix): cap at that."""
    return min(spec.cpus, float(os.cpu_count() or 1))


def network_mode(spec: SandboxSpec) -> str:
    """The container's network: none unless the spec allows it (the executor has put the policy's `network`
    decision into spec.network, so a config `sandbox_network: true` cannot outvote a deny)."""
    return "bridge" if spec.network else "none"


def isolation_settings(spec: SandboxSpec, workdir: Path) -> dict[str, Any]:
    """The effective settings, recorded as evidence (env names only: values may be secrets)."""
    capped = {"cpus_requested": spec.cpus} if effective_cpus(spec) != spec.cpus else {}
    return {
        "backend": "docker",
        "sandboxed": True,
        "image": spec.image,
        "network": network_mode(spec),
        "masked_paths": list(spec.masked_paths),
        "cpus": effective_cpus(spec),
        **capped,
        "memory_mb": spec.memory_mb,
        "memswap_mb": spec.memory_mb,
        "pids": spec.pids,
        "user": "{}:{}".format(*sandbox_user()),
        "read_only": True,
        "tmpfs": dict(TMPFS),
        "cap_drop": list(CAP_DROP),
        "security_opt": list(SECURITY_OPT),
        "mount": spec.mount,
        **({"mounts": [m.model_dump() for m in spec.mounts]} if spec.mounts else {}),
        "workdir": str(workdir),
        "timeout_s": spec.timeout_s,
        "env_keys": sorted(_environment(spec)),
    }


def _environment(spec: SandboxSpec) -> dict[str, str]:
    return {"HOME": "/tmp", "LANG": "C.UTF-8", **spec.env}


class DockerSandbox:
    name = "docker"

    def run(
        self,
        argv: list[str],
        *,
        workdir: Path,
        spec: SandboxSpec,
        on_output: OutputCallback | None = None,
        cancel: threading.Event | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> RunResult:
        workdir = check_run_args(argv, workdir)
        if labels and "task" in labels:  # task ids repeat across projects on one engine: say whose (runs.py)
            labels = {**labels, "workspaces": str(workdir.parent)}
        if sandbox_user() == (os.getuid(), os.getgid()):
            return self._run(argv, workdir, spec, on_output, cancel, labels)
        # Root invoked us: the unprivileged container user borrows the worktree for the run, then gives it back.
        lent = [workdir, *(Path(m.source) for m in spec.mounts if not m.read_only)]
        for path in lent:
            chown_tree(path, *sandbox_user())
        refused: list[str] = []
        try:
            res = self._run(argv, workdir, spec, on_output, cancel, labels)
        finally:
            refused = strip_special(workdir)  # before root's chown would clear the bits silently
            for path in lent:
                chown_tree(path, os.getuid(), os.getgid())
        if refused:
            res.stderr += "".join(f"[aictl: refused from the workspace: {line}]\n" for line in refused)
            res.settings["refused_files"] = refused
        return res

    def _run(
        self,
        argv: list[str],
        workdir: Path,
        spec: SandboxSpec,
        on_output: OutputCallback | None,
        cancel: threading.Event | None,
        labels: Mapping[str, str] | None,
    ) -> RunResult:
        settings = isolation_settings(spec, workdir)
        started = time.monotonic()
        sink = OutputSink(on_output)

        net: Any = None  # the run's egress network and proxy (egressnet.py), when spec.egress asks for one

        def result(**kw: Any) -> RunResult:
            if net is not None:
                settings.update(net.settings())
            out, err = sink.texts()
            return RunResult(
                backend=self.name,
                sandboxed=True,
                stdout=out,
                stderr=err,
                duration_s=time.monotonic() - started,
                settings=settings,
                **kw,
            )

        try:
            client = connect()
        except EngineUnavailable as e:
            return result(exit_code=None, start_error=f"{e.message}; {e.hint}")
        from docker.errors import APIError, DockerException, ImageNotFound

        api = client.api
        container_id: str | None = None
        blank_dir = tempfile.mkdtemp(prefix="aictl-mask-")
        defer = True  # the container has exited or never started: its removal may wait (deferred_cleanup)
        try:
            if spec.egress is not None:
                from aictl.sandbox.egressnet import RunNetwork

                try:
                    net = RunNetwork(api, spec, owner_labels(labels))
                except (DockerException, OSError) as e:
                    return result(exit_code=None, start_error=f"docker could not set up the run's network: {_short(e)}")
            try:
                masks = mask_mounts(spec, workdir, blank_dir)
                container_id = self._create(api, argv, workdir, spec, labels, masks, net)
                stream = api.attach(container_id, stdout=True, stderr=True, stream=True, logs=False, demux=True)
            except ImageNotFound:
                return result(
                    exit_code=None,
                    start_error=f"image {spec.image} not found in the local docker engine; build it with: "
                    + ("aictl sandbox build --preset agents" if "agents" in spec.image else "aictl sandbox build"),
                )
            except SandboxError as e:
                return result(exit_code=None, start_error=e.message)
            except DockerException as e:
                return result(exit_code=None, start_error=f"docker could not create the container: {_short(e)}")
            reader = threading.Thread(target=_pump, args=(stream, sink), daemon=True, name="aictl-docker-attach")
            reader.start()
            try:
                api.start(container_id)
            except APIError as e:
                stream.close()
                code = _exec_failure(e)
                if code is not None:  # the command, not the sandbox, is at fault: report it like a shell does
                    sink.note("stderr", _short(e))
                    return result(exit_code=code)
                return result(exit_code=None, start_error=f"docker could not start the container: {_short(e)}")
            settings["container"] = container_id[:12]
            timed_out, cancelled = self._wait(api, container_id, reader, spec, started, cancel)
            if timed_out or cancelled:
                sink.note(
                    "stderr",
                    f"timed out after {spec.timeout_s:g}s: container killed"
                    if timed_out
                    else "cancelled: container killed",
                )
            try:
                status, late = self._exit_status(api, container_id, started + spec.timeout_s)
                # The kernel's OOM killer sends SIGKILL (exit 137); only then is the state worth a round trip.
                state = api.inspect_container(container_id)["State"] if status.get("StatusCode") == 137 else {}
            except (DockerException, OSError) as e:  # requests' errors are OSErrors
                return result(
                    exit_code=None,
                    timed_out=timed_out,
                    cancelled=cancelled,
                    start_error=f"lost the docker engine during the run: {_short(e)}",
                )
            if late:
                timed_out = True
                sink.note("stderr", f"timed out after {spec.timeout_s:g}s: container killed")
            reader.join(5)
            oom = bool(state.get("OOMKilled"))
            if oom:
                sink.note("stderr", f"out of memory: the kernel killed a process at the {spec.memory_mb} MB limit")
            return result(exit_code=status.get("StatusCode"), timed_out=timed_out, cancelled=cancelled, oom_killed=oom)
        except BaseException:
            defer = False  # interrupted (Ctrl-C, a bug): the container may still run; remove it before going on
            raise
        finally:

            def cleanup() -> None:
                try:
                    if container_id is not None:
                        _remove(api, container_id)
                    if net is not None:
                        net.close()
                finally:
                    client.close()
                    shutil.rmtree(blank_dir, ignore_errors=True)

            _dispose(cleanup, defer)

    @staticmethod
    def _create(
        api: Any,
        argv: list[str],
        workdir: Path,
        spec: SandboxSpec,
        labels: Mapping[str, str] | None,
        masks: list[Any],
        net: Any = None,
    ) -> str:
        from docker.types import LogConfig, Mount

        host_config = api.create_host_config(
            # A structured mount, not "src:dst:rw": a workspace path may contain a colon.
            mounts=[Mount(target=spec.mount, source=str(workdir), type="bind", read_only=False), *masks]
            + [Mount(target=m.target, source=m.source, type="bind", read_only=m.read_only) for m in spec.mounts],
            read_only=True,
            tmpfs=dict(TMPFS),
            network_mode=net.name if net is not None else network_mode(spec),
            cap_drop=list(CAP_DROP),
            security_opt=list(SECURITY_OPT),
            pids_limit=spec.pids,
            mem_limit=f"{spec.memory_mb}m",
            memswap_limit=f"{spec.memory_mb}m",
            nano_cpus=int(effective_cpus(spec) * 1e9),
            # Output travels over the attach stream; a chatty agent must not fill the engine's disk with logs.
            log_config=LogConfig(type="none"),
        )
        created = api.create_container(
            spec.image,
            command=list(argv),
            working_dir=spec.mount,
            user="{}:{}".format(*sandbox_user()),
            environment={**_environment(spec), **(net.env() if net is not None else {})},
            labels=owner_labels(labels),
            host_config=host_config,
            stdin_open=False,
            tty=False,
            name=f"aictl-run-{uuid.uuid4().hex[:10]}",
        )
        return created["Id"]

    @staticmethod
    def _wait(
        api: Any,
        container_id: str,
        reader: threading.Thread,
        spec: SandboxSpec,
        started: float,
        cancel: threading.Event | None,
    ) -> tuple[bool, bool]:
        """Until the attach stream ends (the container stopped), the deadline passes, or cancel is set."""
        deadline = started + spec.timeout_s
        while True:
            reader.join(max(0.0, min(POLL_S, deadline - time.monotonic())))
            if not reader.is_alive():
                return False, False
            cancelled = cancel is not None and cancel.is_set()
            timed_out = not cancelled and time.monotonic() >= deadline
            if cancelled or timed_out:
                _kill(api, container_id)
                return timed_out, cancelled

    @staticmethod
    def _exit_status(api: Any, container_id: str, deadline: float) -> tuple[dict, bool]:
        """The exit status, and whether the container had to be killed for outliving the deadline.

        The attach stream normally ends because the container stopped, so this
        returns at once; should the stream break early, the deadline still holds.
        """
        from requests.exceptions import ConnectionError, ReadTimeout

        try:
            return api.wait(container_id, timeout=max(1.0, deadline - time.monotonic()) + 5), False
        except (ReadTimeout, ConnectionError):
            _kill(api, container_id)
            return api.wait(container_id, timeout=30), True


def _pump(stream: Any, sink: OutputSink) -> None:
    try:
        for out, err in stream:
            if out:
                sink.feed("stdout", out)
            if err:
                sink.feed("stderr", err)
    except Exception:  # noqa: BLE001 - the stream breaks when the container is removed under it
        pass
    finally:
        sink.close("stdout")
        sink.close("stderr")


def _exec_failure(e: Exception) -> int | None:
    """126/127 when docker failed to exec the command itself, None when the sandbox failed."""
    text = str(e).lower()
    if "executable file not found" in text or "no such file or directory" in text:
        return COMMAND_NOT_FOUND
    if "permission denied" in text and "exec" in text:
        return 126
    return None


def _kill(api: Any, container_id: str) -> None:
    from docker.errors import DockerException

    try:
        api.kill(container_id)
    except DockerException:  # already stopped
        pass


def _remove(api: Any, container_id: str) -> None:
    from docker.errors import DockerException, NotFound

    for _ in range(3):
        try:
            api.remove_container(container_id, force=True, v=True)
            return
        except NotFound:
            return
        except DockerException:  # "removal already in progress" and friends
            time.sleep(0.2)


def list_containers(client: Any = None) -> list[dict[str, Any]]:
    """Every aictl-managed container the engine knows, with its owner and whether that owner still lives."""
    client = client or connect()
    host = socket.gethostname()
    rows = []
    for c in client.api.containers(all=True, filters={"label": f"{MANAGED_LABEL}=true"}):
        labels = c.get("Labels") or {}
        pid = labels.get("aictl.owner_pid", "")
        same_host = labels.get("aictl.host") == host
        alive = _pid_alive(int(pid)) if same_host and pid.isdigit() else None
        rows.append(
            {
                "id": c["Id"][:12],
                "name": (c.get("Names") or ["?"])[0].lstrip("/"),
                "image": c.get("Image"),
                "state": c.get("State"),
                "status": c.get("Status"),
                "created": c.get("Created"),
                "owner_host": labels.get("aictl.host"),
                "owner_pid": int(pid) if pid.isdigit() else None,
                "owner_alive": alive,
                "labels": {k: v for k, v in labels.items() if k.startswith("aictl.") and k != MANAGED_LABEL},
            }
        )
    return rows


def cleanup_containers(*, all_: bool = False, dry_run: bool = False, client: Any = None) -> list[dict[str, Any]]:
    """Remove stray aictl containers: those whose owner process on this host is gone (or every one with all_).

    A container owned by a live process, or by another host, is in use (or
    cannot be judged from here) and is kept unless all_ is set.
    """
    client = client or connect()
    removed = []
    for row in list_containers(client):
        if all_ or row["owner_alive"] is False:
            if not dry_run:
                _remove(client.api, row["id"])
            removed.append(row)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
