"""The console in a real browser (headless Chromium through Selenium) on a project with scripted command runs:
a task appears and finishes on the open page without a reload, an awaiting task is approved from the inbox and
resumes, its diff is rendered; a screenshot of each view is kept (the folder is printed after the run)."""

from __future__ import annotations

import json
import time

import pytest

WAIT_S = 20  # an upper bound for a live update to arrive, never a measured time


def _wait(driver, condition, what: str):
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:  # a live update may replace an element between finding and reading it: look again
        wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))
        return wait.until(condition)
    except TimeoutException:
        body = driver.find_element(By.TAG_NAME, "body").text
        raise AssertionError(f"{what}: not seen at {driver.current_url}; the page says:\n{body[:3000]}") from None


def _cli(proc_cli, cwd, *args):
    done = proc_cli(*args, cwd=cwd)
    assert done.returncode in (0, 5), done.stderr  # 5: parked for approval
    return json.loads(done.stdout) if "-o" in args and done.stdout.strip() else done


def _get(driver, url: str) -> None:
    """Open a page; again while Chromium drops it because the host's interfaces change (other tests' containers)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        driver.get(url)
        if "ERR_NETWORK_CHANGED" not in driver.page_source:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{url}: Chromium kept reporting ERR_NETWORK_CHANGED: {driver.page_source[:1500]}")
        time.sleep(0.2)


def _flash_after_submit(driver, back: str) -> str | None:
    """The message the page shows after a form POST; None when Chromium lost the response to a network change
    (other tests' containers), in which case the page is opened again (the caller checks the store instead)."""
    from selenium.webdriver.common.by import By

    def settled(d):
        if "ERR_NETWORK_CHANGED" in d.page_source:
            return "lost"
        found = d.find_elements(By.ID, "flash")
        return found[0].text if found else False

    text = _wait(driver, settled, "the page after the POST")
    if text == "lost":
        _get(driver, back)
        return None
    return text


def _live(driver) -> bool:
    """The page's stream is open and its first update has replaced the live part (elements found now stay)."""
    return driver.find_element("id", "conn").text == "live" and driver.execute_script(
        "return Number(document.body.dataset.updates || 0) > 0"
    )


def test_a_task_appears_and_finishes_live_and_an_approval_resumes_it(
    console_project, console, browser, screenshots, proc_cli, monkeypatch
):
    from selenium.webdriver.common.by import By

    monkeypatch.setenv("AICTL_ACTOR", "operator@console-test")
    c = console(console_project)
    _get(browser, c.url + "/")
    _wait(browser, _live, "the queue page's event stream opens")
    browser.execute_script("window.__sameDocument = 'yes'")  # gone if the page ever reloads

    tid = _cli(proc_cli, console_project, "task", "create", "write hello", "--lock", "src/**",
               "--command", "echo hello > src/hello.py", "-o", "json")["id"]  # fmt: skip
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"#task-{tid}[data-status=queued]"), "task appears")
    proc_cli("task", "execute", str(tid), "--owner", "w1", cwd=console_project)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"#task-{tid}[data-status=done]"), "task finishes")
    assert browser.execute_script("return window.__sameDocument") == "yes"  # it came over the stream
    browser.save_screenshot(str(screenshots / "queue.png"))

    merge = proc_cli("merge", cwd=console_project)  # the default policy: a human approves merges
    assert merge.returncode == 5, merge.stderr + merge.stdout

    mid = _cli(proc_cli, console_project, "task", "create", "add a migration", "-l", "migration", "--lock", "src/**",
               "--command", "printf 'CREATE TABLE t (id int);\\n' > src/0001_init.sql", "-o", "json")["id"]  # fmt: skip
    parked = proc_cli("task", "execute", str(mid), "--owner", "w1", "-o", "json", cwd=console_project)
    assert parked.returncode == 5, parked.stderr
    _get(browser, c.url + "/approvals")
    _wait(browser, _live, "the inbox's event stream opens")
    item = browser.find_element(By.ID, f"approval-{mid}")
    assert "migrations are approved by a human" in item.text and "require_approval" in item.text
    waiting_merge = browser.find_element(By.ID, f"approval-{tid}")
    assert "a human approves merges" in waiting_merge.text
    added = waiting_merge.find_elements(By.CSS_SELECTOR, ".diff .gi")  # the diff that would land, highlighted
    assert any("+hello" in el.text for el in added)
    browser.save_screenshot(str(screenshots / "approvals.png"))
    browser.find_element(By.ID, f"comment-{mid}").send_keys("schema looks fine")
    browser.find_element(By.ID, f"approve-{mid}").click()
    flash = _flash_after_submit(browser, c.url + "/approvals")
    assert flash is None or f"task {mid}: approved by operator@console-test" in flash
    _wait(browser, _live, "the inbox's stream opens again")
    assert not browser.find_elements(By.ID, f"approval-{mid}")
    browser.find_element(By.ID, f"approve-{tid}").click()
    flash = _flash_after_submit(browser, c.url + "/approvals")
    assert flash is None or f"task {tid}: approved by operator@console-test" in flash
    _wait(browser, _live, "the inbox's stream opens again")
    assert browser.find_elements(By.ID, "no-approvals")
    merged = proc_cli("merge", cwd=console_project)
    assert merged.returncode == 0, merged.stderr + merged.stdout
    assert _cli(proc_cli, console_project, "task", "get", str(tid), "-o", "json")["status"] == "merged"

    task = _cli(proc_cli, console_project, "task", "get", str(mid), "-o", "json")
    assert task["status"] == "queued"
    events = _cli(proc_cli, console_project, "audit", "log", "--task", str(mid), "-o", "json")
    approve = next(e for e in events if e["action"] == "approve")
    assert approve["actor"] == "operator@console-test" and approve["data"]["comment"] == "schema looks fine"
    pdrs = _cli(proc_cli, console_project, "audit", "decisions", "--task", str(mid), "-o", "json")
    assert any(d["action"] == "approve" and d["effect"] == "allow" and d["actor"] == "operator@console-test"
               for d in pdrs)  # fmt: skip

    _get(browser, f"{c.url}/tasks/{mid}")
    _wait(browser, _live, "the task page's event stream opens")
    resumed = proc_cli("task", "execute", str(mid), "--owner", "w1", cwd=console_project)
    assert resumed.returncode == 0, resumed.stderr
    _wait(browser, lambda d: d.find_element(By.ID, "task-status").get_attribute("data-status") == "done", "resumes")
    added = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".diff .gi"), "the diff is highlighted")
    assert any("CREATE TABLE t" in el.text for el in added)
    browser.save_screenshot(str(screenshots / "task.png"))

    for path, name, marker in (
        ("/agents", "agents", "agents"),
        ("/usage", "usage", "chart"),
        ("/audit", "audit", "verify"),
        ("/workflows", "workflows", "workflows"),
        ("/", "queue-final", "counts"),
    ):
        _get(browser, c.url + path)
        _wait(browser, lambda d, m=marker: d.find_elements(By.ID, m), f"{path} renders")
        browser.save_screenshot(str(screenshots / f"{name}.png"))
    _get(browser, c.url + "/audit")
    _wait(browser, _live, "the audit page's stream opens")  # its first update replaces the elements
    assert browser.find_element(By.ID, "verify").text.startswith("Audit log intact")
    assert {p.name for p in screenshots.iterdir()} >= {"queue.png", "approvals.png", "task.png", "audit.png"}


@pytest.mark.parametrize("view", ["/", "/approvals", "/audit"])
def test_nothing_secret_is_rendered(console_project, console, browser, proc_cli, view):
    from selenium.webdriver.common.by import By

    secret = "sk-ant-api03-" + "Q" * 40
    tid = _cli(proc_cli, console_project, "task", "create", f"rotate key {secret}", "-l", "migration",
               "--lock", "src/**", "--command", "true", "-o", "json")["id"]  # fmt: skip
    proc_cli("task", "execute", str(tid), "--owner", "w1", cwd=console_project)
    c = console(console_project)
    _get(browser, c.url + view)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "rotate key" in body and secret not in body and secret not in browser.page_source
