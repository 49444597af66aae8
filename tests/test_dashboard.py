"""The dashboard in a real headless browser: its numbers follow the server's."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import requests

from fakeforum import FakeForumServer

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    (CHROMIUM is None or CHROMEDRIVER is None) and not os.environ.get("FAKEFORUM_REQUIRE_BROWSER"),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
    "chromium-driver); .ci/run installs them",
)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """Headless chromium driven by selenium, with the driver's path given: nothing downloads."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.parametrize("token", [None, "s3cret"])
def test_the_dashboard_numbers_change_after_requests(browser: WebDriver, token: str | None) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    with FakeForumServer(admin_token=token) as server:
        url = server.admin_url + "/" + (f"?token={token}" if token else "")
        driver.get(url)
        wait = WebDriverWait(driver, 20)

        def shown(element_id: str) -> str:
            return str(driver.find_element(By.ID, element_id).text)

        wait.until(lambda _: shown("status").startswith("live"))
        assert shown("requests") == "0"
        with requests.Session() as session:
            for k in range(7):
                session.get(f"{server.url}/api/subjects/{k + 1}", timeout=10)
            session.get(f"{server.url}/api/nothing", timeout=10)
        wait.until(lambda _: shown("requests") == "8")
        assert shown("peak_in_flight") == "1"
        assert "200: 7" in shown("by_status")
        assert "404: 1" in shown("by_status")
        rows = driver.find_elements(By.CSS_SELECTOR, "#journal tr")
        assert len(rows) == 8
        assert "GET /api/nothing" in rows[0].text  # newest first
        routes = shown("routes")
        assert "/api/subjects/<int:subject_id>" in routes
        # The page's own polling is not counted in what it shows.
        assert server.stats.requests == 8
