"""The console in a real headless Chromium (Selenium, Debian's chromium and chromedriver):
sign in, open a running job, page its records, open a journey, Refresh and see progress grow
with the selection kept, cancel a job through its confirm step, approve a record, and watch
Live Ops show the runtime down once `cxrun runtime` stops. A screenshot of each page is saved
under the test's tmp_path. Without Chromium it is skipped (it fails under CI)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from apiserver import EXECUTABLE, answer, environment, make_keys, poll, serving
from conftest import CONTACTS, write_project
from servers import FakeServer
from test_api import SLOW  # the AI step at two calls at a time, its model slow
from test_io_runtime import KEY, Model, llm, people, record_of

from cxrun.ops import open_context

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
WAIT_S = 30.0
ROWS, QUICK = 300, 256  # QUICK: the rows of the runtime's first batch of I/O calls

BULK = """table: people
key: id
steps:
  - id: hello
    log: "hi {{ name }}"
"""

BOOM = """table: contacts
key: id
steps:
  - id: boom
    set: {x: "error('a very long error: ' || repeat('nowheretobreak', 120) || email)"}
"""

GATE = """table: contacts
key: id
steps:
  - id: check
    approval: {prompt: "Send to {{ email }}?"}
"""


@pytest.fixture(scope="module")
def chromium() -> None:
    if not (CHROMIUM.exists() and DRIVER.exists()):
        why = f"no {CHROMIUM} or {DRIVER} (`make test` installs them as root)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture
def driver(chromium: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager, if asked at all, fetches nothing

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1440,1000")
    browser = webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=options)
    browser.implicitly_wait(0)
    yield browser
    browser.quit()


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """A project with a slow AI spinner (its model: a server here), a quick one, an approval."""
    with FakeServer(Slowing()) as server:
        config = yaml.safe_dump({"name": "browser", "providers": llm(server.url)})
        root = write_project(
            tmp_path / "proj",
            {"bulk": BULK, "slow": SLOW, "gate": GATE, "boom": BOOM},
            {"people": people(ROWS), "contacts": CONTACTS},
            config,
        )
        open_context(str(root)).secrets.set("LLM_KEY", KEY)
        yield root


class Slowing(Model):
    """The model: quick for the first batch of records (they finish while the job runs on),
    then half a second an answer."""

    def __call__(self, request: Any) -> Any:
        if int(record_of(request)) > QUICK:
            self.release.wait(0.5)
        return super().__call__(request)


def run(root: Path, *args: str) -> int:
    done = subprocess.run(
        [str(EXECUTABLE), *args], cwd=root, env=environment(), capture_output=True, timeout=120
    )
    return done.returncode


def test_an_operator_works_the_console(driver: Any, root: Path, tmp_path: Path) -> None:
    assert run(root, "publish") == 0
    assert [run(root, "run-now", n) for n in ("bulk", "gate", "gate", "boom")] == [0, 6, 6, 3]
    keys = make_keys(root, {"ops": ("read", "control"), "viewer": ("read",)})
    key = keys["ops"]
    shots = Shots(driver, tmp_path / "screenshots")
    runtime = subprocess.Popen(
        [str(EXECUTABLE), "runtime"],
        cwd=root,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with serving(root, "--no-runtime") as served:
            api = served.client(key)
            web = Web(driver, served.origin, shots)
            web.sign_in(key)
            web.records_and_journey(1)
            web.long_errors_wrap(4)
            slow = answer(api.post("/spinners/slow/runs"), 202)["job"]
            web.refresh_grows(slow, lambda: answer(api.get(f"/jobs/{slow}"), 200))
            web.read_key_cannot_cancel(keys["viewer"], 3)
            web.sign_in(key)
            web.cancel(3)
            web.approve()
            web.runtime_goes_down(runtime)
    finally:
        if runtime.poll() is None:
            runtime.kill()
        runtime.wait()
    print("screenshots:", *shots.saved, sep="\n  ")
    assert len(shots.saved) == 14


class Shots:
    """Screenshots, numbered in the order taken."""

    def __init__(self, driver: Any, folder: Path) -> None:
        self.driver, self.folder, self.saved = driver, folder, []
        folder.mkdir(parents=True)

    def take(self, name: str) -> None:
        path = self.folder / f"{len(self.saved) + 1:02d}-{name}.png"
        assert self.driver.save_screenshot(str(path)), path
        self.saved.append(path)


class Web:
    """What the operator does, step by step, in the browser."""

    def __init__(self, driver: Any, origin: str, shots: Shots) -> None:
        self.d, self.origin, self.shots = driver, origin, shots

    def css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.d.find_element(By.CSS_SELECTOR, selector)

    def until(self, check: Callable[[], Any], seconds: float = WAIT_S) -> Any:
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        # Live Ops swaps its cards every 5 s: an element found just before a swap goes stale.
        wait = WebDriverWait(self.d, seconds, 0.1, [StaleElementReferenceException])
        return wait.until(lambda _: check())

    def open(self, path: str) -> None:
        self.d.get(self.origin + path)

    def sign_in(self, key: str, name: str = "ops") -> None:
        self.open("/")
        assert self.d.current_url.endswith("/sign-in?why=signed-out")
        if not self.shots.saved:
            self.shots.take("sign-in")
        self.css("#key").send_keys(key)
        self.css("form.sign-in button").click()
        self.until(lambda: f"key: {name}" in self.css("header").text)
        assert key not in self.d.page_source

    def sign_out(self) -> None:
        self.css("form.who button").click()
        self.until(lambda: "/sign-in" in self.d.current_url)

    def read_key_cannot_cancel(self, viewer: str, job: int) -> None:
        self.sign_out()
        self.sign_in(viewer, "viewer")
        self.open(f"/?job={job}")
        assert self.css("#records h2 .badge").text == "waiting"
        self.css("#records a.button.cancel").click()
        self.until(lambda: f"Cancel job {job}?" in self.css(".question").text)
        self.css("#confirm").click()
        self.until(lambda: "has no 'control' scope" in self.css("main").text)
        self.shots.take("read-key-refused")
        self.open(f"/?job={job}")
        assert self.css("#records h2 .badge").text == "waiting"  # the job is as it was
        self.shots.take("read-key-job-unchanged")
        self.sign_out()

    def records_and_journey(self, job: int) -> None:
        self.css(f'a[href="/?job={job}"]').click()
        self.until(lambda: f"Job {job} · bulk" in self.css("#records h2").text)
        assert "page 1 of 12" in self.css("#records .pager").text
        self.css('#records .pager a[href*="rpage=2"]').click()
        self.until(lambda: "page 2 of 12" in self.css("#records .pager").text)
        self.shots.take("records-page-2")
        self.css("#records a.key").click()  # record 26, the first of page 2
        self.until(lambda: "Journey of record 26" in self.css("#journey").text)
        assert "hi p26" in self.css("#journey").text
        self.shots.take("journey")

    def long_errors_wrap(self, job: int) -> None:
        self.open(f"/?job={job}&rstatus=failed")
        self.until(lambda: "a very long error" in self.css("#records pre.error").text)
        wide = self.d.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert wide <= 0, f"the page is {wide} px wider than the window"
        self.shots.take("long-errors")

    def refresh_grows(self, job: int, detail: Callable[[], dict[str, Any]]) -> None:
        poll(
            detail, lambda d: d["status"] == "running" and d["processed"] < d["total"], WAIT_S, 0.1
        )
        self.open("/live")  # the chart draws the running job's records per minute
        self.until(lambda: self.css("#live svg.chart polyline.series"))
        assert f"job {job} (slow)" in self.css("#live svg.chart").text
        self.shots.take("live-chart")
        self.open("/")
        self.css(f'#runs a[href="/?job={job}"]').click()
        self.until(lambda: f"Job {job} · slow" in self.css("#records h2").text)
        before = self.processed()
        self.d.execute_script("window.notReloaded = true; window.scrollTo(0, 120);")
        poll(detail, lambda d: d["processed"] > before, WAIT_S, 0.1)
        self.css("#refresh").click()
        self.until(lambda: self.processed() > before)
        assert self.d.execute_script("return window.notReloaded === true")
        assert f"#{job} slow" in self.css("#runs .run.selected").text
        self.shots.take("refreshed")

    def processed(self) -> int:
        return int(self.css("#records .counts").text.split("/")[0])

    def cancel(self, job: int) -> None:
        self.open(f"/?job={job}")
        self.css("#records a.button.cancel").click()
        self.until(lambda: f"Cancel job {job}?" in self.css(".question").text)
        self.shots.take("confirm-cancel")
        self.css("#confirm").click()
        self.until(lambda: "cancelled" in self.css("#new-status").text)
        self.shots.take("cancelled")

    def approve(self) -> None:
        self.open("/approvals")
        first = self.css(".approval .where").text
        assert first.startswith("job 2 (gate)"), first
        assert "Send to ada@example.org?" in self.css(".approval .prompt").text
        self.shots.take("approvals")
        self.css(".approval button.approve").click()
        self.until(lambda: "approved" in self.css("h1").text)
        self.shots.take("approved")

    def runtime_goes_down(self, runtime: subprocess.Popen[bytes]) -> None:
        self.open("/live")
        self.until(lambda: self.css("#runtime-state").text == "up")
        self.shots.take("live-up")
        runtime.send_signal(signal.SIGTERM)
        assert runtime.wait(60) == 0
        self.until(lambda: self.css("#runtime-state").text == "down")  # polled, no reload
        self.shots.take("live-down")
