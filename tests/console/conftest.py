"""Fixtures for the console: a real `aictl console` process, and headless Chromium driven by Selenium.

Chromium and its driver come from Debian (`apt-get install chromium chromium-driver`, .ci/run does it).
Without them the browser tests skip with the reason, except in CI (CI=true), where that is a failure.
Screenshots go to AICTL_CONSOLE_SCREENSHOTS, or to one tmp folder per test session; the folder is printed at
the end of the run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.execution.conftest import git, git_project  # noqa: F401  (fixture)

APPROVAL_RULE = """
  - id: migrations-need-a-human
    effect: require_approval
    match: {actions: [execute], task_labels: [migration]}
    reason: migrations are approved by a human before they run
"""


@pytest.fixture
def console_project(git_project):  # noqa: F811
    """The executor's git project, with a rule that parks migration-labelled tasks for approval."""
    policy = git_project / ".ai" / "policy.yaml"
    policy.write_text(policy.read_text() + APPROVAL_RULE)
    git(git_project, "add", "-A")
    git(git_project, "commit", "-qm", "policy")
    return git_project


class ConsoleProcess:
    def __init__(self, proc: subprocess.Popen, url: str):
        self.proc, self.url = proc, url

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_console(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 30) -> ConsoleProcess:
    """`aictl console --port 0 ARGS` as a real process; returns once it announced its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "aictl", "console", "--port", "0", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    found: list[str] = []
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            m = re.search(r"(http://\S+?)/?(\s|$)", line)
            if m and not found:
                found.append(m.group(1))

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not found and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not found:
        proc.kill()
        proc.wait()
        raise AssertionError(f"console did not start: {''.join(lines)}")
    return ConsoleProcess(proc, found[0])


@pytest.fixture
def console():
    started: list[ConsoleProcess] = []

    def start(cwd: Path, *args: str, env: dict[str, str] | None = None) -> ConsoleProcess:
        c = start_console(cwd, *args, env=env)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


BROWSER_REQUIRED = os.environ.get("CI", "").lower() == "true" or os.environ.get("AICTL_REQUIRE_BROWSER") == "1"


# Read at import: the autouse fixture in tests/conftest.py removes AICTL_* variables before each test.
SCREENSHOTS = os.environ.get("AICTL_CONSOLE_SCREENSHOTS")


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Iterator[Path]:
    """Where the views' screenshots go: AICTL_CONSOLE_SCREENSHOTS (CI keeps it as an artifact), else a tmp dir."""
    if SCREENSHOTS:
        path = Path(SCREENSHOTS)
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = tmp_path_factory.mktemp("console-screenshots")
    yield path
    shots = sorted(p.name for p in path.iterdir())
    if shots:
        sys.stderr.write(f"\nconsole screenshots ({len(shots)}): {path}\n")


@pytest.fixture
def browser(tmp_path) -> Iterator[object]:
    """Headless Chromium with a fresh profile, no background traffic."""
    chromium = shutil.which("chromium")
    driver_bin = shutil.which("chromedriver")
    if chromium is None or driver_bin is None:
        why = "chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver)"
        if BROWSER_REQUIRED:
            pytest.fail(why)
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_bin), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
