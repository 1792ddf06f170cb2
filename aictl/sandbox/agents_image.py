"""The agents image (git, sh, coreutils, Python, Node, curl, the pinned agent CLIs), built with no registry.

Its root filesystem comes from this host (agents_rootfs.py: the programs, their
libraries, Python's standard library and the npm directories of the pinned
CLIs) and is imported with `docker import`; the image runs as nobody (or the
invoking user) and carries the CLI versions as labels. On a clean Debian
machine this needs only packages: nodejs, git, python3, curl and the CLIs' npm
install.

Caching: the image is tagged `aictl-agents:<digest>` (Rootfs.digest: the
recipe, the sandbox uid and every input file's path, size, mode and mtime); a
build whose digest tag already exists does nothing but move the tag asked for,
and the image that tag named before is removed.

With a public registry, `agents_dockerfile(base)` is the same image the usual
way (FROM node:22-bookworm, apt-get and npm install); docs/sandbox.md shows it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aictl.domain.errors import AictlError
from aictl.sandbox.agents_rootfs import CLI_PACKAGES, CLIS_IN_IMAGE, Rootfs, plan_rootfs, write_rootfs
from aictl.sandbox.base import SandboxError
from aictl.sandbox.image import SANDBOX_PATH, ImageInfo, Progress
from aictl.sandbox.ownership import sandbox_user

AGENTS_REPO = "aictl-agents"
AGENTS_IMAGE = f"{AGENTS_REPO}:latest"


def agents_dockerfile(base: str = "node:22-bookworm", versions: dict[str, str] | None = None) -> str:
    """The same image where a registry is reachable: Debian's packages and npm's, as a Dockerfile."""
    v = versions or {}
    pkgs = " ".join(f"{CLI_PACKAGES[k]}@{v[k]}" if k in v else CLI_PACKAGES[k] for k in CLI_PACKAGES)
    return "\n".join(
        [
            f"FROM {base}",
            "RUN apt-get update && apt-get install -y --no-install-recommends git python3 curl ca-certificates"
            " && rm -rf /var/lib/apt/lists/*",
            f"RUN npm install -g --no-audit --no-fund {pkgs}",
            "LABEL aictl.sandbox=true aictl.agents=true",
            "ENV HOME=/tmp LANG=C.UTF-8",
            "WORKDIR /workspace",
            "USER 65534:65534",
            'CMD ["sh"]',
            "",
        ]
    )


class AgentsImage(ImageInfo):
    digest: str
    cached: bool
    versions: dict[str, str]


def build_agents_image(
    tag: str = AGENTS_IMAGE,
    *,
    clis_prefix: Path | None = None,
    force: bool = False,
    client: Any = None,
    progress: Progress | None = None,
) -> AgentsImage:
    """Build (or find, by digest) the agents image from this host's programs and tag it `tag` too."""
    from aictl.sandbox.docker import connect

    say = progress or (lambda _msg: None)
    uid, gid = sandbox_user()
    fs = plan_rootfs(clis_prefix, uid=uid, gid=gid)
    digest = fs.digest(uid, gid)
    digest_tag = f"{AGENTS_REPO}:{digest[:16]}"
    client = client or connect()
    from docker.errors import ImageNotFound

    cached = False
    try:
        image = client.images.get(digest_tag)
        cached = not force
    except ImageNotFound:
        image = None
    if not cached:
        with tempfile.TemporaryDirectory(prefix="aictl-agents-") as tmp:
            tarball = Path(tmp) / "rootfs.tar"
            say(f"writing the agents root filesystem ({len(fs.paths)} paths, CLIs {fs.versions})")
            n = write_rootfs(fs, tarball)
            say(f"importing {n} entries ({tarball.stat().st_size / 1e6:.0f} MB) as {digest_tag}")
            labels = {
                "aictl.sandbox": "true",
                "aictl.agents": "true",
                "aictl.digest": digest,
                **{f"aictl.cli.{k}": v for k, v in fs.versions.items()},
            }
            changes = [
                f"ENV PATH={SANDBOX_PATH}",
                "ENV HOME=/tmp",
                "ENV LANG=C.UTF-8",
                f"USER {uid}:{gid}",
                "WORKDIR /workspace",
                'CMD ["sh"]',
                "LABEL " + " ".join(f'{k}="{v}"' for k, v in labels.items()),
            ]
            repository, _, version = digest_tag.rpartition(":")
            try:
                client.api.import_image_from_file(str(tarball), repository=repository, tag=version, changes=changes)
            except Exception as e:  # noqa: BLE001 - any engine error here means the import failed
                raise SandboxError(f"docker import of the agents image failed: {e}") from None
        image = client.images.get(digest_tag)
    else:
        say(f"{digest_tag} is current (inputs unchanged): nothing to build")
    if tag != digest_tag:
        replaced = _image_labels(client, tag)
        repository, _, version = tag.rpartition(":")
        image.tag(repository, version or "latest")
        old_digest = replaced.get("aictl.digest")
        if old_digest and old_digest != digest:
            _untag(client, f"{AGENTS_REPO}:{old_digest[:16]}", say)
    return AgentsImage(
        tag=tag,
        id=image.id,
        base="scratch",
        base_source=f"host:{fs.python}",
        size_bytes=image.attrs.get("Size", 0),
        digest=digest,
        cached=cached,
        versions=fs.versions,
    )


def for_agents(spec: Any, client: Any = None) -> Any:
    """An AI's run in docker: the agents image (git, Python, Node, a shell, coreutils) instead of the default
    busybox one, once `sandbox build --preset agents` made it; a sandbox_image the user named stays."""
    from docker.errors import DockerException

    from aictl.sandbox.image import DEFAULT_IMAGE

    if spec.image != DEFAULT_IMAGE:
        return spec
    try:
        if client is None:
            from aictl.sandbox.docker import connect

            client = connect()
        client.images.get(AGENTS_IMAGE)
    except (DockerException, AictlError):  # not built (or no engine: the run will say so itself)
        return spec
    return spec.model_copy(update={"image": AGENTS_IMAGE})


def _image_labels(client: Any, name: str) -> dict[str, str]:
    from docker.errors import DockerException

    try:
        return dict(client.images.get(name).labels or {})
    except DockerException:
        return {}


def _untag(client: Any, name: str, say: Progress) -> None:
    """The image `tag` pointed to before: ~900 MB each, they would pile up with every change of the host's inputs.
    Untagging its digest name deletes it unless another tag or a container still holds it."""
    from docker.errors import DockerException

    try:
        client.images.remove(name, noprune=False)
        say(f"removed {name}, which {AGENTS_REPO} was built as before")
    except DockerException:  # gone already, or a container still uses it
        pass


__all__ = [
    "AGENTS_IMAGE",
    "AGENTS_REPO",
    "CLIS_IN_IMAGE",
    "AgentsImage",
    "Rootfs",
    "agents_dockerfile",
    "build_agents_image",
    "for_agents",
    "plan_rootfs",
    "write_rootfs",
]
