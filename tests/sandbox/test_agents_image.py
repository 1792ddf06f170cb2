"""The agents image built from this host's programs: what is inside, who runs, and that it is rebuilt only when
its inputs change."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

from aictl.sandbox.agents_image import agents_dockerfile, build_agents_image
from aictl.sandbox.agents_rootfs import Rootfs, plan_rootfs

REPO = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, str]:
    text = (REPO / ".ci" / "install-agent-clis").read_text()
    return {
        "claude-code": re.search(r"^CLAUDE_CODE_VERSION=(\S+)", text, re.M).group(1),
        "codex": re.search(r"^CODEX_VERSION=(\S+)", text, re.M).group(1),
    }


@pytest.mark.docker
def test_the_image_has_the_tools_and_the_pinned_clis_and_runs_unprivileged(agents_image, docker_engine, tmp_path):
    script = (
        "whoami; id -u; git --version; python3 -c 'import ssl, sqlite3, json; print(\"py ok\")'; node --version; "
        "claude --version; codex --version 2>/dev/null; curl --version | head -1; ls /bin/sh; "
        "cd /tmp && git init -q r && cd r && echo x > a && git add a && git -c user.name=n -c user.email=e "
        "commit -qm m && git log --format=%s"
    )
    out = docker_engine.containers.run(
        agents_image, ["sh", "-c", script], remove=True, network_mode="none", read_only=True, tmpfs={"/tmp": ""}
    ).decode()
    lines = out.splitlines()
    assert lines[0] != "root" and lines[1] != "0"
    assert lines[2].startswith("git version ") and lines[3] == "py ok" and lines[4].startswith("v")
    pins = _pins()
    assert lines[5] == f"{pins['claude-code']} (Claude Code)" and lines[6] == f"codex-cli {pins['codex']}"
    assert lines[7].startswith("curl ") and lines[8] == "/bin/sh" and lines[-1] == "m"
    labels = docker_engine.images.get(agents_image).labels
    assert labels["aictl.cli.claude-code"] == pins["claude-code"] and labels["aictl.cli.codex"] == pins["codex"]


@pytest.mark.docker
def test_a_second_build_with_unchanged_inputs_is_the_cached_image(agents_image, docker_engine):
    again = build_agents_image(agents_image, client=docker_engine)
    assert again.cached and again.id == docker_engine.images.get(agents_image).id
    assert docker_engine.images.get(f"aictl-agents:{again.digest[:16]}").id == again.id


def test_the_digest_follows_every_input(tmp_path):
    (tmp_path / "bin").mkdir()
    tool = tmp_path / "bin" / "tool"
    tool.write_text("v1")
    fs = Rootfs(paths={"usr/bin": str(tmp_path / "bin")}, made={"etc/passwd": b"root:x:0:0::/:/bin/sh\n"})
    first = fs.digest(65534, 65534)
    assert fs.digest(65534, 65534) == first
    assert fs.digest(1000, 1000) != first  # the passwd entries and the default user differ per uid
    tool.write_text("v2 longer")
    changed = fs.digest(65534, 65534)
    assert changed != first
    fs.links["usr/local/bin/claude"] = "/opt/x"
    assert fs.digest(65534, 65534) != changed


def test_a_missing_cli_prefix_is_a_clear_error(tmp_path):
    from aictl.sandbox.base import SandboxError

    with pytest.raises(SandboxError, match="not found under") as e:
        plan_rootfs(tmp_path)
    assert "install-agent-clis" in e.value.hint


def test_the_internet_dockerfile_in_the_docs_is_the_one_aictl_generates():
    docs = (REPO / "docs" / "sandbox.md").read_text()
    block = re.search(r"```dockerfile\n(.*?)```", docs, re.S)
    assert block is not None, "docs/sandbox.md shows the agents Dockerfile"
    assert block.group(1) == agents_dockerfile("node:22-bookworm", _pins())


@pytest.mark.docker
def test_moving_a_tag_removes_the_image_it_named_before(agents_image, docker_engine, tmp_path):
    import io
    import tarfile

    from docker.errors import ImageNotFound

    old_digest = "0" * 64
    tarball = tmp_path / "tiny.tar"
    with tarfile.open(tarball, "w") as tar:
        info = tarfile.TarInfo("marker")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    old_name, tag = f"aictl-agents:{old_digest[:16]}", "aictl-agents:pytest-moved"
    docker_engine.api.import_image_from_file(
        str(tarball), repository="aictl-agents", tag=old_digest[:16], changes=[f"LABEL aictl.digest={old_digest}"]
    )
    old = docker_engine.images.get(old_name)
    old.tag("aictl-agents", "pytest-moved")  # the tag names an image built from other inputs
    try:
        built = build_agents_image(tag, client=docker_engine)
        assert built.cached and docker_engine.images.get(tag).id == built.id != old.id
        with pytest.raises(ImageNotFound):
            docker_engine.images.get(old.id)  # its digest name untagged, nothing held it: gone
    finally:
        docker_engine.images.remove(tag)
        with contextlib.suppress(ImageNotFound):
            docker_engine.images.remove(old.id, force=True)
