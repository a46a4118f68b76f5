"""The web page of ``mgfrec serve`` in a real headless Chromium (Debian's chromium + chromium-driver),
driven by Selenium: a typed history, the person's feedback typed into the page, the ranking shown; a user
picked from the test split, with the target's place."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from servekit import SCRIPT_TITLES

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
DRIVER = Path(shutil.which("chromedriver") or "/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM.is_file() or not DRIVER.is_file():
        pytest.skip(f"{CHROMIUM} or {DRIVER} is absent: apt-get install -y chromium chromium-driver (see .ci/run)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (dev extra) drives the browser")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, limit_s: float = 180):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, limit_s, poll_frequency=0.2).until(condition)


def test_you_are_the_user_in_the_page(browser, server, serve_run):
    from selenium.webdriver.common.by import By

    _, _, ds = serve_run
    browser.get(server.url + "/")
    wait_for(browser, lambda d: "agent run" in d.find_element(By.ID, "runinfo").text)
    browser.find_element(By.ID, "history").send_keys(f"{ds.titles[0]}\n{ds.titles[2]}")
    browser.find_element(By.ID, "k").clear()
    browser.find_element(By.ID, "k").send_keys("5")
    browser.find_element(By.ID, "mode-human").click()
    browser.find_element(By.ID, "start").click()

    ask = browser.find_element(By.ID, "ask")
    wait_for(browser, lambda d: ask.is_displayed())
    assert browser.find_element(By.ID, "ask-title").text == ds.titles[SCRIPT_TITLES[0]]
    shown = browser.find_elements(By.CSS_SELECTOR, "#turn-0 .items li")  # the items to judge, before any feedback
    assert len(shown) == 10 and shown[0].text == ds.titles[SCRIPT_TITLES[0]]
    assert ds.titles[SCRIPT_TITLES[0]] in browser.find_element(By.ID, "turn-0").text  # the turn streamed in
    browser.find_element(By.ID, "feedback").send_keys("too loud, I want quiet records")
    browser.find_element(By.ID, "send").click()

    wait_for(browser, lambda d: "heard: too loud, I want quiet records" in d.find_element(By.ID, "turns").text)
    assert "feedback: too loud, I want quiet records" in browser.find_element(By.ID, "turn-0").text
    wait_for(browser, lambda d: ask.is_displayed())
    browser.find_element(By.ID, "simulated").click()  # let the simulated user answer this one
    wait_for(browser, lambda d: "From what I have enjoyed" in d.find_element(By.ID, "turn-1").text)
    wait_for(browser, lambda d: ask.is_displayed())
    shot = os.environ.get("MGFREC_SCREENSHOT")
    if shot:  # docs/img/serve.png is made this way (see docs/serve.md)
        browser.find_element(By.ID, "feedback").send_keys("Closer to the folk records, please")
        browser.set_window_size(1280, 1400)
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(shot)
        browser.find_element(By.ID, "feedback").clear()
    browser.find_element(By.ID, "answer-now").click()

    wait_for(browser, lambda d: d.find_elements(By.ID, "ranking"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#ranking tr")[1:]
    assert len(rows) == 5 and rows[0].find_elements(By.TAG_NAME, "td")[1].text == ds.titles[SCRIPT_TITLES[2]]
    assert "answers: " + ds.titles[SCRIPT_TITLES[2]] in browser.find_element(By.ID, "turn-3").text
    assert browser.find_element(By.ID, "status").text == "Done."


def test_a_user_of_the_test_split_shows_the_targets_place(browser, server, serve_run):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _, _, ds = serve_run
    test = ds.split("test")
    user, target = str(test.user_id.iloc[0]), int(test.target.iloc[0])
    browser.get(server.url + "/")
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#user option")) > 1)
    Select(browser.find_element(By.ID, "user")).select_by_value(user)
    browser.find_element(By.ID, "k").clear()
    browser.find_element(By.ID, "k").send_keys("75")
    browser.find_element(By.ID, "start").click()
    line = wait_for(browser, lambda d: d.find_elements(By.CLASS_NAME, "target-line"))[0].text
    assert line.startswith(f"Target: {ds.titles[target]} at place ")
    place = int(line.rsplit(" ", 1)[1])
    marked = browser.find_elements(By.CSS_SELECTOR, "#ranking tr.target")
    if place <= 75:  # the target's row is highlighted at its place
        assert len(marked) == 1 and marked[0].find_elements(By.TAG_NAME, "td")[0].text == str(place)


def test_a_bad_request_is_shown_not_swallowed(browser, server):
    from selenium.webdriver.common.by import By

    browser.get(server.url + "/")
    wait_for(browser, lambda d: "agent run" in d.find_element(By.ID, "runinfo").text)
    browser.find_element(By.ID, "start").click()  # no history, no user
    status = browser.find_element(By.ID, "status")
    wait_for(browser, lambda d: "exactly one" in status.text or "history" in status.text)
    assert "err" in status.get_attribute("class")


def test_feedback_the_server_refuses_is_asked_for_again(browser, server, serve_run):
    """The ask box was hidden before the feedback was sent and never shown again when the server refused it: the
    person could neither resend nor answer, and the conversation waited out --feedback-timeout (review s36)."""
    from selenium.webdriver.common.by import By

    _, _, ds = serve_run
    browser.get(server.url + "/")
    wait_for(browser, lambda d: "agent run" in d.find_element(By.ID, "runinfo").text)
    assert browser.find_element(By.ID, "feedback").get_attribute("maxlength") == "2000"  # the server's own limit
    browser.find_element(By.ID, "history").send_keys(ds.titles[0])
    browser.find_element(By.ID, "mode-human").click()
    browser.find_element(By.ID, "start").click()
    ask = browser.find_element(By.ID, "ask")
    wait_for(browser, lambda d: ask.is_displayed())
    # a lone surrogate (what a broken paste can hold): JSON.stringify writes it as "\ud800", the server refuses it
    browser.execute_script("document.getElementById('feedback').value = 'calmer \\ud800';")
    browser.find_element(By.ID, "send").click()
    status = browser.find_element(By.ID, "status")
    wait_for(browser, lambda d: "err" in (status.get_attribute("class") or ""), 60)
    assert status.text.startswith("text: "), status.text  # the field the server refused
    wait_for(browser, lambda d: ask.is_displayed())  # asked again, the text kept to be mended
    assert browser.execute_script("return document.getElementById('feedback').value.startsWith('calmer')")
    browser.find_element(By.ID, "answer-now").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "ranking"))
