"""Building the sandbox image with no registry: the busybox root filesystem, --base and --rootfs."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile

import pytest

from aictl.sandbox import SandboxSpec, get_sandbox
from aictl.sandbox.base import SandboxError
from aictl.sandbox.image import build_image, find_static_busybox, is_static_elf, write_busybox_rootfs


def test_static_busybox_is_told_apart_from_dynamic_binaries():
    busybox = find_static_busybox()
    assert is_static_elf(busybox)
    assert not is_static_elf("/bin/sh" if os.path.realpath("/bin/sh") != str(busybox) else sys.executable)
    assert not is_static_elf(__file__)  # not ELF at all


def test_no_static_busybox_says_what_to_install(tmp_path, monkeypatch):
    import shutil

    from aictl.sandbox import image

    monkeypatch.setattr(image, "BUSYBOX_PATHS", [])
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxError) as e:
        find_static_busybox()
    assert "no busybox" in e.value.message and "busybox-static" in e.value.hint
    dynamic = shutil.which("true", path="/usr/bin:/bin")
    shutil.copy(dynamic, tmp_path / "busybox")
    with pytest.raises(SandboxError) as e:
        find_static_busybox()
    assert "dynamically linked" in e.value.message and "busybox-static" in e.value.hint


def test_rootfs_has_applets_tmp_workspace_and_the_invoking_user(tmp_path):
    tar_path = tmp_path / "rootfs.tar"
    n = write_busybox_rootfs(tar_path, find_static_busybox(), uid=1234, gid=4321)
    with tarfile.open(tar_path) as tar:
        members = {m.name: m for m in tar.getmembers()}
        passwd = tar.extractfile("etc/passwd").read().decode()
        group = tar.extractfile("etc/group").read().decode()
    assert n > 100 and members["bin/sh"].linkname == "/bin/busybox" and members["bin/busybox"].isfile()
    assert members["tmp"].mode == 0o1777 and (members["workspace"].uid, members["workspace"].gid) == (1234, 4321)
    assert "aictl:x:1234:4321:" in passwd and "aictl:x:4321:" in group and passwd.startswith("root:x:0:0:")


def test_the_docker_sdk_is_not_imported_with_the_sandbox_package():
    code = (
        "import sys, aictl.sandbox, aictl.sandbox.docker, aictl.sandbox.image, aictl.sandbox.local, aictl.cli.main;"
        "bad = [m for m in ('docker', 'requests') if m in sys.modules]; assert not bad, bad"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


@pytest.mark.docker
def test_build_from_an_existing_local_image(docker_engine, sandbox_image, tmp_path):
    tag = "aictl-sandbox:pytest-from-base"
    try:
        info = build_image(tag, base=sandbox_image, client=docker_engine)
        assert info.base == sandbox_image and info.base_source == "image"
        labels = docker_engine.images.get(tag).labels
        assert labels["aictl.sandbox"] == "true" and labels["aictl.base-image"] == sandbox_image
        r = get_sandbox("docker").run(
            ["sh", "-c", "echo ok"], workdir=tmp_path, spec=SandboxSpec(backend="docker", image=tag, timeout_s=60)
        )
        assert r.stdout == "ok\n"
    finally:
        docker_engine.images.remove(tag, noprune=False)


@pytest.mark.docker
def test_build_from_a_rootfs_tarball(docker_engine, tmp_path):
    tar_path = tmp_path / "rootfs.tar"
    write_busybox_rootfs(tar_path, find_static_busybox())
    tag = "aictl-sandbox:pytest-rootfs"
    try:
        info = build_image(tag, rootfs=tar_path, client=docker_engine)
        assert info.base == "aictl-base:rootfs" and info.base_source == f"rootfs:{tar_path}"
        r = get_sandbox("docker").run(
            ["cat", "/etc/passwd"], workdir=tmp_path, spec=SandboxSpec(backend="docker", image=tag, timeout_s=60)
        )
        assert r.stdout.startswith("root:x:0:0:")
    finally:
        docker_engine.images.remove(tag)


@pytest.mark.docker
def test_a_base_that_is_not_local_is_a_clear_error(docker_engine):
    with pytest.raises(SandboxError) as e:
        build_image("aictl-sandbox:never", base="aictl-no-such-base:0", client=docker_engine)
    assert "not in the local docker engine" in e.value.message and "docker images" in e.value.hint


@pytest.mark.docker
def test_rebuilding_leaves_no_untagged_images_behind(docker_engine, sandbox_image):
    def untagged() -> set[str]:
        return {i.id for i in docker_engine.images.list(filters={"dangling": True, "label": "aictl.base=true"})}

    before = untagged()
    build_image(sandbox_image, client=docker_engine)
    build_image(sandbox_image, client=docker_engine)
    assert untagged() <= before
