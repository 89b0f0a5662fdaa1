"""The pages in a real browser: Playwright driving the Debian ``chromium`` package (.ci/run
installs it; never a browser download) against a serving station on loopback. Screenshots of
the main pages are saved under the test's tmp folder (``screenshots/``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

pytestmark = pytest.mark.browser
PATIENCE_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium from the Debian package, headless."""
    executable = shutil.which("chromium")
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("the chromium package is missing (.ci/run installs it)")
        pytest.skip("the chromium package is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable,
                                              args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


def _log_in(browser: Browser, url: str, token: str) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(PATIENCE_MS)
    page.goto(url + "/")
    expect(page).to_have_url(url + "/login?next=%2F")
    page.fill("input[name=token]", token)
    page.click("button:has-text('log in')")
    expect(page.locator("#live-status")).to_have_text("live")
    return page


def test_station_page_is_live_and_starts_plans(browser: Browser, tmp_path: Path,
                                               web_station: Callable[..., Any]) -> None:
    station = web_station(speed=60)
    page = _log_in(browser, station.url, station.operator)
    shots = tmp_path / "screenshots"
    form = page.locator("#start")
    form.locator("input[name=channel]").fill("1")
    form.locator("select[name=plan]").select_option("bad.yaml")
    form.locator("button").click()
    expect(page.locator("#start-error")).to_contain_text("bad.yaml:4: steps[0]")
    form.locator("select[name=plan]").select_option("long.yaml")
    form.locator("button").click()
    expect(page.locator("#start-error")).to_have_text("started test 1")
    row = page.locator("tr[data-channel='1']")
    expect(row.locator(".state")).to_have_text("running")
    expect(row.locator(".test a")).to_have_text("1")
    first = row.locator(".v").inner_text()
    expect(row.locator(".v")).not_to_have_text(first)  # a new sample arrived over the socket
    row.click()
    page.wait_for_function("Number(document.body.dataset.samples) > 3")
    expect(page.locator("#live-plot canvas")).to_have_count(1)
    page.select_option("#state-filter", "running")
    expect(page.locator("tr[data-channel]:visible")).to_have_count(1)
    page.screenshot(path=shots / "station.png", full_page=True)
    row.locator("button.stop").click()
    expect(row.locator(".state")).to_have_text("idle")
    assert shots.joinpath("station.png").stat().st_size > 10_000


def test_viewer_cannot_stop_and_test_pages(browser: Browser, tmp_path: Path,
                                           web_station: Callable[..., Any],
                                           wait_until: Any) -> None:
    station = web_station(speed=2000)
    shots = tmp_path / "screenshots"
    api = httpx.Client(base_url=station.url, headers=station.headers(station.operator),
                       timeout=PATIENCE_MS / 1000)
    done = api.post("/api/channels/1/start", json={"plan": "three-cycles"}).json()["test_id"]
    running = api.post("/api/channels/2/start", json={"plan": "long"}).json()["test_id"]
    wait_until(lambda: api.get(f"/api/stations/webtest/tests/{done}").json()["status"],
               "the short test finished", check=lambda status: status == "finished")
    page = _log_in(browser, station.url, station.viewer)
    row = page.locator("tr[data-channel='2']")
    expect(row.locator(".state")).to_have_text("running")
    expect(page.locator("button.stop")).to_have_count(0)
    expect(page.locator("#start")).to_have_count(0)
    assert api.get(f"/api/stations/webtest/tests/{running}").json()["status"] == "running"

    page.goto(f"{station.url}/stations/webtest/tests/{done}")
    expect(page.locator("#cycles tbody tr")).to_have_count(3)
    expect(page.locator("#test-plot canvas")).to_have_count(1)
    expect(page.locator("#fade-plot canvas")).to_have_count(1)
    page.wait_for_function("Number(document.getElementById('test-plot').dataset.points) > 10")
    page.screenshot(path=shots / "test.png", full_page=True)
    page.goto(f"{station.url}/tests")
    expect(page.locator("#tests tbody tr")).to_have_count(2)
    page.locator("input.compare").first.check()
    page.locator("input.compare").last.check()
    page.click("#compare")
    expect(page.locator("#compare-plot canvas")).to_have_count(1)
    page.screenshot(path=shots / "tests.png", full_page=True)
    api.close()
