"""Build the sandbox image locally, with no registry.

Default: a root filesystem made from the host's static busybox (the binary,
a symlink per applet, /tmp, /workspace, /etc/passwd and /etc/group naming the
invoking uid/gid) is imported as `aictl-base:busybox`, and the sandbox image is
built FROM it with a generated Dockerfile. `base=` builds FROM an image already
in the local engine (e.g. a Debian made with debootstrap and `docker import`);
`rootfs=` imports a root filesystem tarball as the base first. Nothing is pulled.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from aictl import __version__
from aictl.sandbox.base import SandboxError

DEFAULT_IMAGE = "aictl-sandbox:latest"
BUSYBOX_BASE = "aictl-base:busybox"
ROOTFS_BASE = "aictl-base:rootfs"
BUSYBOX_HINT = "install it: apt-get install -y busybox-static"
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PT_INTERP = 3
# Where Debian's busybox-static (and busybox) put the binary, after whatever `busybox` PATH finds.
BUSYBOX_PATHS = ["/bin/busybox", "/usr/bin/busybox", "/usr/lib/busybox/busybox"]

Progress = Callable[[str], None]


class ImageInfo(BaseModel):
    tag: str
    id: str
    base: str
    base_source: str  # "busybox:/bin/busybox", "rootfs:/path.tar" or "image"
    size_bytes: int


def is_static_elf(path: Path) -> bool:
    """An ELF executable with no program interpreter (PT_INTERP): it runs in an empty root filesystem."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF":
                return False
            is64, little = head[4] == 2, head[5] == 1
            end = "<" if little else ">"
            if is64:
                (phoff,) = struct.unpack(end + "Q", head[32:40])
                phentsize, phnum = struct.unpack(end + "HH", head[54:58])
            else:
                (phoff,) = struct.unpack(end + "I", head[28:32])
                phentsize, phnum = struct.unpack(end + "HH", head[42:46])
            for i in range(phnum):
                f.seek(phoff + i * phentsize)
                (p_type,) = struct.unpack(end + "I", f.read(4))
                if p_type == _PT_INTERP:
                    return False
            return True
    except (OSError, struct.error):
        return False


def find_static_busybox() -> Path:
    candidates = [shutil.which("busybox"), *BUSYBOX_PATHS]
    seen = []
    for c in candidates:
        if c and os.path.isfile(c) and c not in seen:
            seen.append(c)
            if is_static_elf(Path(c)):
                return Path(c)
    if seen:
        raise SandboxError(
            f"busybox at {', '.join(seen)} is dynamically linked: it cannot run in an empty image", hint=BUSYBOX_HINT
        )
    raise SandboxError("no busybox found on this host", hint=BUSYBOX_HINT)


def busybox_applets(busybox: Path) -> list[str]:
    """Install paths of every applet, e.g. 'bin/sh', 'usr/bin/wget'."""
    try:
        out = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        raise SandboxError(f"{busybox} --list-full failed: {e}", hint=BUSYBOX_HINT) from None
    return sorted({line.strip().lstrip("/") for line in out.stdout.splitlines() if line.strip()})


def _passwd(uid: int, gid: int) -> tuple[str, str]:
    passwd = ["root:x:0:0:root:/root:/bin/sh", "nobody:x:65534:65534:nobody:/nonexistent:/bin/false"]
    group = ["root:x:0:", "nogroup:x:65534:"]
    if uid not in (0, 65534):
        passwd.append(f"aictl:x:{uid}:{gid}:aictl sandbox user:/tmp:/bin/sh")
    if gid not in (0, 65534):
        group.append(f"aictl:x:{gid}:")
    return "\n".join(passwd) + "\n", "\n".join(group) + "\n"


def write_busybox_rootfs(dest: Path, busybox: Path, *, uid: int | None = None, gid: int | None = None) -> int:
    """A tarball of a minimal root filesystem around a static busybox; returns the number of applet links."""
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid

    def entry(name: str, kind: bytes, mode: int, *, owner: tuple[int, int] = (0, 0)) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode = kind, mode
        info.uid, info.gid = owner
        info.mtime = 0
        return info

    applets = [a for a in busybox_applets(busybox) if a != "bin/busybox"]
    dirs = {"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "home", "var", "run"}
    dirs |= {str(Path(a).parent) for a in applets if str(Path(a).parent) != "."}
    with tarfile.open(dest, "w") as tar:
        for d in sorted(dirs):
            tar.addfile(entry(d, tarfile.DIRTYPE, 0o755))
        tar.addfile(entry("root", tarfile.DIRTYPE, 0o700))
        tar.addfile(entry("tmp", tarfile.DIRTYPE, 0o1777))
        tar.addfile(entry("workspace", tarfile.DIRTYPE, 0o755, owner=(uid, gid)))
        with open(busybox, "rb") as f:
            info = entry("bin/busybox", tarfile.REGTYPE, 0o755)
            info.size = os.fstat(f.fileno()).st_size
            tar.addfile(info, f)
        for applet in applets:
            link = entry(applet, tarfile.SYMTYPE, 0o777)
            link.linkname = "/bin/busybox"
            tar.addfile(link)
        passwd, group = _passwd(uid, gid)
        for name, text in (("etc/passwd", passwd), ("etc/group", group)):
            data = text.encode()
            info = entry(name, tarfile.REGTYPE, 0o644)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return len(applets)


def import_rootfs(client: Any, tarball: Path, tag: str) -> str:
    repository, _, version = tag.rpartition(":")
    try:
        client.api.import_image_from_file(
            str(tarball),
            repository=repository,
            tag=version,
            changes=[f"ENV PATH={SANDBOX_PATH}", 'CMD ["/bin/sh"]', "LABEL aictl.base=true"],
        )
    except Exception as e:  # noqa: BLE001 - any engine error here means the import failed
        raise SandboxError(f"docker import of {tarball} as {tag} failed: {e}") from None
    return client.images.get(tag).id


def dockerfile(base: str) -> str:
    return "\n".join(
        [
            f"FROM {base}",
            f"LABEL aictl.sandbox=true aictl.version={__version__} aictl.base-image={base}",
            f"ENV PATH={SANDBOX_PATH} HOME=/tmp LANG=C.UTF-8",
            "WORKDIR /workspace",
            'CMD ["sh"]',
            "",
        ]
    )


def build_image(
    tag: str = DEFAULT_IMAGE,
    *,
    base: str | None = None,
    rootfs: Path | None = None,
    client: Any = None,
    progress: Progress | None = None,
) -> ImageInfo:
    """Build `tag` from busybox (default), an existing local image (base) or a rootfs tarball."""
    from aictl.sandbox.docker import connect

    if base and rootfs:
        raise SandboxError("give --base or --rootfs, not both")
    say = progress or (lambda _msg: None)
    client = client or connect()
    from docker.errors import BuildError, DockerException, ImageNotFound

    imported_base = ROOTFS_BASE if rootfs else None if base else BUSYBOX_BASE
    replaced = [i for i in (_image_id(client, tag), _image_id(client, imported_base)) if i]

    if rootfs is not None:
        if not Path(rootfs).is_file():
            raise SandboxError(f"root filesystem tarball {rootfs} not found")
        say(f"importing {rootfs} as {ROOTFS_BASE}")
        import_rootfs(client, Path(rootfs), ROOTFS_BASE)
        base, source = ROOTFS_BASE, f"rootfs:{rootfs}"
    elif base is not None:
        try:
            client.images.get(base)
        except ImageNotFound:
            raise SandboxError(
                f"base image {base} is not in the local docker engine (there is no registry here)",
                hint="docker images  # or import one: aictl sandbox build --rootfs ROOTFS.tar",
            ) from None
        source = "image"
    else:
        busybox = find_static_busybox()
        with tempfile.TemporaryDirectory(prefix="aictl-rootfs-") as tmp:
            tarball = Path(tmp) / "rootfs.tar"
            n = write_busybox_rootfs(tarball, busybox)
            say(f"importing a root filesystem from {busybox} ({n} applets) as {BUSYBOX_BASE}")
            import_rootfs(client, tarball, BUSYBOX_BASE)
        base, source = BUSYBOX_BASE, f"busybox:{busybox}"
    say(f"building {tag} from {base}")
    with tempfile.TemporaryDirectory(prefix="aictl-build-") as ctx:
        Path(ctx, "Dockerfile").write_text(dockerfile(base))
        try:
            image, _logs = client.images.build(path=ctx, tag=tag, pull=False, rm=True, forcerm=True)
        except BuildError as e:
            raise SandboxError(f"docker build of {tag} failed: {e.msg}") from None
        except DockerException as e:
            raise SandboxError(f"docker build of {tag} failed: {e}") from None
    _remove_untagged(client, replaced)
    return ImageInfo(tag=tag, id=image.id, base=base, base_source=source, size_bytes=image.attrs.get("Size", 0))


def _image_id(client: Any, name: str | None) -> str | None:
    from docker.errors import ImageNotFound

    try:
        return client.images.get(name).id if name else None
    except ImageNotFound:
        return None


def _remove_untagged(client: Any, image_ids: list[str]) -> None:
    """Rebuilding moves the tags; the images they left would pile up untagged. Remove them (not if still in use)."""
    from docker.errors import DockerException

    for image_id in image_ids:  # the sandbox image before its base, which it depends on
        try:
            if not client.images.get(image_id).tags:
                client.images.remove(image_id)
        except DockerException:  # gone already, or a container still uses it
            pass


def engine_status(image: str = DEFAULT_IMAGE) -> dict[str, Any]:
    """Is the engine reachable, which version and cgroup version, is the image there, what was left behind."""
    from aictl.sandbox.docker import EngineUnavailable, connect, list_containers

    status: dict[str, Any] = {"reachable": False, "image": image, "image_present": False}
    try:
        client = connect(timeout=10)
    except EngineUnavailable as e:
        status.update(error=e.message, hint=e.hint)
        return status
    from docker.errors import ImageNotFound

    try:
        info, version = client.info(), client.version()
        status.update(
            reachable=True,
            version=version.get("Version"),
            api_version=version.get("ApiVersion"),
            cgroup_version=info.get("CgroupVersion"),
            cgroup_driver=info.get("CgroupDriver"),
            warnings=info.get("Warnings") or [],
        )
        try:
            img = client.images.get(image)
            status.update(image_present=True, image_id=img.id, image_created=img.attrs.get("Created"))
        except ImageNotFound:
            status["hint"] = "build it with: aictl sandbox build"
        status["containers"] = list_containers(client)
    finally:
        client.close()
    return status
