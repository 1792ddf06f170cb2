"""A docker run's own network with no route out, and the egress proxy that is its only door.

For a run whose spec names `egress` (host:port pairs), the docker backend
opens a RunNetwork before it creates the container:

    network  aictl-net-<id>: a bridge created `internal` (the engine gives it no
             route off the host), labelled like the run's container
             (aictl.managed, owner host and pid, task, epoch)
    proxy    an EgressProxy (egress.py) in this process, listening on the
             network's gateway address, serving only the network's subnet
    env      HTTP(S)_PROXY / ALL_PROXY (both cases) pointing at it, NO_PROXY empty

The container joins only that network. `close()` stops the proxy and removes the
network, after the container is gone. A proxy is a thread of the run's owner,
so it dies with it; a network whose owner died (SIGKILL) is removed with its
container by `stop_stale_runs` on reclaim and by `aictl sandbox cleanup`
(runs.remove_orphan_networks). The run's settings (evidence) name the network, the allow list and
every attempt.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from aictl.sandbox.base import SandboxSpec
from aictl.sandbox.egress import EgressProxy

NETWORK_PREFIX = "aictl-net-"
PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


class RunNetwork:
    def __init__(self, api: Any, spec: SandboxSpec, labels: Mapping[str, str]):
        """`labels`: the run container's own (docker.owner_labels), so the same sweeps find both."""
        self.api = api
        self.name = f"{NETWORK_PREFIX}{uuid.uuid4().hex[:12]}"
        self.allowed = sorted(spec.egress or [])
        created = api.create_network(
            self.name, driver="bridge", internal=True, labels=dict(labels), check_duplicate=True
        )
        self.id: str = created["Id"]
        try:
            ipam = (api.inspect_network(self.id).get("IPAM") or {}).get("Config") or [{}]
            self.gateway, self.subnet = ipam[0]["Gateway"], ipam[0]["Subnet"]
            self.proxy = EgressProxy(
                self.allowed,
                bind=self.gateway,
                clients=self.subnet,
                on_attempt=spec.on_egress,
                decide=spec.egress_decide,
            )
        except BaseException:
            self._remove()
            raise

    def env(self) -> dict[str, str]:
        url = self.proxy.url
        return {**dict.fromkeys(PROXY_ENV, url), "NO_PROXY": "", "no_proxy": ""}

    def settings(self) -> dict[str, Any]:
        return {
            "network": "egress-proxy",
            "network_name": self.name,
            "egress_proxy": self.proxy.url,
            "egress_allowed": list(self.allowed),
            "egress": self.proxy.attempts(),
        }

    def close(self) -> None:
        self.proxy.close()
        self._remove()

    def _remove(self) -> None:
        from docker.errors import DockerException, NotFound

        for _ in range(3):
            try:
                self.api.remove_network(self.id)
                return
            except NotFound:
                return
            except DockerException:  # an endpoint not yet released by the removed container
                time.sleep(0.2)


__all__ = ["NETWORK_PREFIX", "PROXY_ENV", "RunNetwork"]
