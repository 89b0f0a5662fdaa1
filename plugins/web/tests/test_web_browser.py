"""The pages in a real browser: Playwright driving the Debian ``chromium`` package (.ci/run
installs it; never a browser download) against a serving station on loopback. Screenshots of
the main pages are saved under the test's tmp folder (``screenshots/``)."""

from __future__ import annotations

import os
import re
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


def test_station_test_and_tests_pages(browser: Browser, tmp_path: Path,
                                      web_station: Callable[..., Any],
                                      wait_until: Any) -> None:
    """An operator starts plans from the form (a bad one shows its error) and watches the
    table and plot update live, queues a plan, registers and edits a battery (the registry's
    errors on the form), then stops a test; a viewer sees no control; the test page draws its
    plots and cycle table and downloads the test; the tests list compares curves."""
    station = web_station(speed=300)
    shots = tmp_path / "screenshots"
    api = httpx.Client(base_url=station.url, headers=station.headers(station.operator),
                       timeout=PATIENCE_MS / 1000)
    tripped = api.post("/api/channels/3/start", json={"plan": "trip"}).json()["test_id"]
    alarm = wait_until(lambda: api.get("/api/stations/webtest/events",
                                       params={"kind": "alarm"}).json(), "an alarm")
    assert alarm[0]["test_id"] == tripped
    page = _log_in(browser, station.url, station.operator)
    expect(page.locator("tr[data-channel='3']")).to_have_class(re.compile(r"\balarm\b"))
    expect(page.locator("tr[data-channel='3']")).to_have_attribute("title",
                                                                 alarm[0]["message"])
    form = page.locator("#start")
    form.locator("input[name=channel]").fill("1")
    form.locator("select[name=plan]").select_option("bad.yaml")
    form.locator("button").click()
    expect(page.locator("#start-error")).to_contain_text("bad.yaml:4: steps[0]")
    form.locator("select[name=plan]").select_option("three-cycles.yaml")
    form.locator("button").click()
    expect(page.locator("#start-error")).to_have_text("started test 2")
    form.locator("input[name=channel]").fill("2")
    form.locator("select[name=plan]").select_option("long.yaml")
    form.locator("button").click()
    expect(page.locator("#start-error")).to_have_text("started test 3")
    row = page.locator("tr[data-channel='2']")
    expect(row.locator(".state")).to_have_text("running")
    expect(row.locator(".test a")).to_have_text("3")
    first = row.locator(".v").inner_text()
    expect(row.locator(".v")).not_to_have_text(first)  # a new sample arrived over the socket
    row.click()
    page.wait_for_function("Number(document.body.dataset.samples) > 3")
    expect(page.locator("#live-plot canvas")).to_have_count(1)
    page.select_option("#state-filter", "running")
    expect(page.locator("tr[data-channel]:visible")).to_have_count(1)
    page.select_option("#state-filter", "")

    queue = page.locator("#queue-form")  # a bad plan is refused on the form, line and field
    queue.locator("input[name=channel]").fill("4")
    queue.locator("select[name=plan]").select_option("bad.yaml")
    queue.locator("button").click()
    expect(page.locator("#queue-error")).to_contain_text("bad.yaml:4: steps[0]")
    queue.locator("select[name=plan]").select_option("long.yaml")
    queue.locator("input[name=battery]").fill("NMC-1")
    queue.locator("button").click()
    expect(page.locator("#queue-error")).to_contain_text("no battery named 'NMC-1'")

    battery = page.locator("#battery-form")  # registered, then edited, by the core's rules
    battery.locator("input[name=name]").fill("NMC-1")
    battery.locator("input[name=chemistry]").fill("NMC")
    battery.locator("input[name=nominal_capacity_ah]").fill("2.5")
    battery.locator("input[name=voltage_max_v]").fill("4.2")
    battery.locator("input[name=voltage_min_v]").fill("4.3")
    battery.locator("#battery-save").click()
    expect(page.locator("#battery-error")).to_have_text(
        "voltage_min_v (4.3 V) must be below voltage_max_v (4.2 V)")
    battery.locator("input[name=voltage_min_v]").fill("2.5")
    battery.locator("#battery-save").click()
    expect(page.locator("#battery-error")).to_have_text("registered NMC-1")
    page.locator("#batteries tr[data-battery='NMC-1'] button.edit").click()
    expect(battery.locator("input[name=name]")).to_have_js_property("readOnly", True)
    battery.locator("input[name=temperature_max_c]").fill("55")
    battery.locator("#battery-save").click()
    expect(page.locator("#battery-error")).to_have_text("saved NMC-1")
    expect(page.locator("#batteries tr[data-battery='NMC-1']")).to_contain_text("55")
    queue.locator("button").click()
    expect(page.locator("#queue-error")).to_have_text(re.compile(r"queued as entry \d+"))
    expect(page.locator("#queue tbody tr")).to_have_count(1)
    expect(page.locator("#queue tbody tr")).to_contain_text("long.yaml")
    # Channel 4 was idle: the queue starts the plan there, for the battery.
    expect(page.locator("tr[data-channel='4'] .battery")).to_have_text("NMC-1")
    page.fill("#battery-filter", "nmc-1")
    expect(page.locator("tr[data-channel]:visible")).to_have_count(1)
    page.fill("#battery-filter", "")
    page.fill("#chamber-filter", "oven")
    expect(page.locator("tr[data-channel]:visible")).to_have_attribute("data-channel", "1")
    page.fill("#chamber-filter", "")
    page.locator("tr[data-channel='4'] button.stop").click()  # (its samples only cost time)
    expect(page.locator("tr[data-channel='4'] .state")).to_have_text("idle")
    page.screenshot(path=shots / "station.png", full_page=True)
    assert shots.joinpath("station.png").stat().st_size > 10_000

    viewer = _log_in(browser, station.url, station.viewer)
    expect(viewer.locator("tr[data-channel='2'] .state")).to_have_text("running")
    expect(viewer.locator("button.stop")).to_have_count(0)
    expect(viewer.locator("#start")).to_have_count(0)
    expect(viewer.locator("#queue-form")).to_have_count(0)
    expect(viewer.locator("#battery-form")).to_have_count(0)
    expect(viewer.locator("#queue button.cancel")).to_have_count(0)
    expect(viewer.locator("#batteries tr[data-battery='NMC-1']")).to_have_count(1)
    row.locator("button.stop").click()  # the operator can
    expect(row.locator(".state")).to_have_text("idle")
    expect(viewer.locator("tr[data-channel='2'] .state")).to_have_text("idle")

    wait_until(lambda: api.get("/api/stations/webtest/tests/2").json()["status"],
               "the short test finished", check=lambda status: status == "finished")
    api.close()
    viewer.goto(f"{station.url}/stations/webtest/tests/2")
    expect(viewer.locator("#cycles tbody tr")).to_have_count(3)
    expect(viewer.locator("#test-plot canvas")).to_have_count(1)
    expect(viewer.locator("#fade-plot canvas")).to_have_count(1)
    viewer.wait_for_function(
        "Number(document.getElementById('test-plot').dataset.points) > 10")
    download = viewer.locator("a[href$='/download/bdf-csv']")
    expect(download).to_have_text("BDF CSV")
    with viewer.expect_download() as downloading:
        download.click()
    assert downloading.value.suggested_filename == "webtest-2.csv"
    assert Path(downloading.value.path()).read_text().startswith('"Test Time / s"')
    viewer.screenshot(path=shots / "test.png", full_page=True)
    viewer.goto(f"{station.url}/tests")
    expect(viewer.locator("#tests tbody tr")).to_have_count(4)
    viewer.locator("input.compare").first.check()
    viewer.locator("input.compare").last.check()
    viewer.click("#compare")
    expect(viewer.locator("#compare-plot canvas")).to_have_count(1)
    viewer.screenshot(path=shots / "tests.png", full_page=True)
