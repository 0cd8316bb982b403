"""The login form in a real browser: headless Chromium (Debian's `chromium` + `chromium-driver`,
installed by `make browser`) driven through WebDriver (selenium), through the real Envoy and devgate.

The browser connects from 127.0.0.1, which this module's config does NOT make a developer by address
(network.allow is 127.0.0.2 only) but which is inside login.allow_from, so it has to log in with the
form. Each test gets a fresh browser profile (a new --user-data-dir), so no cookie leaks between them.

Screenshots for a person to look at go to target/screenshots/: login-form.png (the form as served),
login-failed.png (after a wrong password), after-login.png (the developer-only page, logged in).

What the browser sent and got (from Chromium's performance log, i.e. DevTools Network events) is
attached to every assertion about a request, so a refusal by devgate (the Origin check, say) shows
the exact headers and devgate's response details.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path

import pytest

from harness import DETAILS_HEADER
from harness import IDENTITY_HEADER as H
from test_login import ENV, PASSWORDS

CHROMIUM = Path(os.environ.get("DEVGATE_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("DEVGATE_CHROMEDRIVER", "/usr/bin/chromedriver"))
REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "target" / "screenshots"
LOGIN = "/.devgate/login"
PAGE = "/_debug/page"
WAIT = 15.0  # seconds, for every explicit wait

FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1024,768",
    "--hide-scrollbars",
]


def config() -> dict:
    """127.0.0.1 (the browser) is not a developer by address, but may log in."""
    return {
        "network": {"allow": ["127.0.0.2"]},
        "protect": ["/_debug/"],
        "public": ["/healthz"],
        "keys": [{"id": "k1", "secret_env": "DEVGATE_E2E_LOGIN_KEY"}],
        "tokens": {},
        "login": {"users_env": "DEVGATE_E2E_USERS", "allow_from": ["127.0.0.0/8", "::1"]},
        "upstream_challenge": "login",
    }


@pytest.fixture(scope="module")
def gw(gate):
    return gate(config(), env=ENV)


@pytest.fixture(scope="module")
def base(gw) -> str:
    return f"http://127.0.0.1:{gw.port_for('127.0.0.1')}"


# --------------------------------------------------------------------------------------------------
# The browser
# --------------------------------------------------------------------------------------------------


def _webdriver():
    """The selenium modules, or a failure (never a skip) saying how to install what is missing."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: run `make browser` (installs Debian's chromium "
                    "and chromium-driver)", pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        pytest.fail(f"selenium is not installed ({e}): run `make venv` (tests/requirements.txt)", pytrace=False)
    return webdriver, Service


class Browser:
    """One headless Chromium with a fresh profile; keeps every browser and network log entry."""

    def __init__(self, workdir: Path):
        webdriver, Service = _webdriver()
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir))
        self.driver_log = workdir / "chromedriver.log"
        opts = webdriver.ChromeOptions()
        opts.binary_location = str(CHROMIUM)
        for flag in FLAGS + [f"--user-data-dir={self.profile}"]:
            opts.add_argument(flag)
        # No password manager, no leak check (it would call out to the network).
        opts.add_experimental_option("prefs", {
            "credentials_enable_service": False,
            "profile.password_manager_enabled": False,
            "profile.password_manager_leak_detection": False,
        })
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        opts.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True, "enablePage": False})
        # The explicit driver and browser paths keep Selenium Manager (which would download) out.
        service = Service(executable_path=str(CHROMEDRIVER), service_args=["--verbose"],
                          log_output=str(self.driver_log))
        try:
            self.driver = webdriver.Chrome(options=opts, service=service)
        except Exception as e:  # noqa: BLE001 - turned into a failure with the driver's log
            log = self.driver_log.read_text(errors="replace")[-3000:] if self.driver_log.exists() else ""
            pytest.fail(f"Chromium did not start: {e}\nchromedriver log (tail):\n{log}", pytrace=False)
        self.driver.set_page_load_timeout(WAIT)
        self.console: list[dict] = []
        self.network: list[dict] = []

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # -- logs (get_log drains, so everything is kept here) ---------------------------------------

    def drain(self) -> None:
        self.console += self.driver.get_log("browser")
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg["method"].startswith("Network."):
                self.network.append(msg)

    def console_messages(self) -> list[str]:
        self.drain()
        return [f"{e['level']} {e['message']}" for e in self.console]

    def exchanges(self, path: str | None = None) -> list[dict]:
        """Every request the browser made (optionally only those to `path`), as
        {method, url, sent (the headers on the wire), status, received, request_id}."""
        self.drain()
        by_id: dict[str, dict] = {}
        order: list[dict] = []

        def get(rid: str) -> dict:
            # A redirect reuses the request id: each requestWillBeSent starts a new exchange.
            return by_id.setdefault(rid, {"request_id": rid, "sent": {}, "received": {}, "status": None})

        for m in self.network:
            p, kind = m["params"], m["method"]
            rid = p.get("requestId")
            if kind == "Network.requestWillBeSent":
                if "redirectResponse" in p and rid in by_id:
                    prev = by_id.pop(rid)
                    prev["status"] = prev["status"] or p["redirectResponse"]["status"]
                    prev["received"] = prev["received"] or p["redirectResponse"]["headers"]
                x = get(rid)
                x.update(method=p["request"]["method"], url=p["request"]["url"])
                x["sent"] = {**p["request"]["headers"], **x["sent"]}
                order.append(x)
            elif kind == "Network.requestWillBeSentExtraInfo":
                get(rid)["sent"].update(p["headers"])  # what really went out: Cookie, Origin, Host...
            elif kind == "Network.responseReceived":
                x = get(rid)
                x["status"] = p["response"]["status"]
                x["received"] = {**p["response"]["headers"], **x["received"]}
            elif kind == "Network.responseReceivedExtraInfo":
                x = get(rid)
                x["received"].update(p["headers"])
                x["status"] = x["status"] or p.get("statusCode")
        # Only the web: not the browser's own chrome:// pages (its start page loads a few).
        out = [x for x in order if x.get("url", "").startswith(("http:", "https:"))]
        if path is not None:
            out = [x for x in out if urllib.parse.urlsplit(x["url"]).path == path]
        return out

    def report(self) -> str:
        """What the browser sent and got, for an assertion message."""
        lines = []
        for x in self.exchanges():
            if urllib.parse.urlsplit(x["url"]).path == "/favicon.ico":
                continue
            lines.append(f"{x['method']} {x['url']} -> {x['status']}")
            lines += [f"    > {k}: {v}" for k, v in x["sent"].items()]
            lines += [f"    < {k}: {v}" for k, v in x["received"].items()]
        lines += [f"console: {m}" for m in self.console_messages()]
        return "\n".join(lines)

    # -- pages -----------------------------------------------------------------------------------

    def wait(self, condition, what: str):
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, WAIT).until(condition)
        except TimeoutException:
            pytest.fail(f"timed out after {WAIT}s waiting for {what}; now at {self.driver.current_url}\n"
                        f"{self.report()}", pytrace=False)

    def wait_for_path(self, path: str) -> None:
        self.wait(lambda d: urllib.parse.urlsplit(d.current_url).path == path, f"the browser to reach {path}")
        self.wait(lambda d: d.execute_script("return document.readyState") == "complete", f"{path} to load")

    def find(self, css: str):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC

        return self.wait(EC.visibility_of_element_located((By.CSS_SELECTOR, css)), f"`{css}` to be visible")

    def present(self, css: str):
        """An element in the DOM, visible or not (a hidden input)."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC

        return self.wait(EC.presence_of_element_located((By.CSS_SELECTOR, css)), f"`{css}` in the page")

    def json_page(self) -> dict:
        """The JSON document the browser shows (Chromium renders it in a <pre>)."""
        text = self.find("pre").text
        try:
            return json.loads(text)
        except ValueError:
            pytest.fail(f"not JSON at {self.driver.current_url}: {text[:500]!r}\n{self.report()}", pytrace=False)

    def screenshot(self, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        out = SHOTS / name
        assert self.driver.save_screenshot(str(out)), out
        return out

    def one(self, path: str, method: str = "GET") -> dict:
        """The single exchange with `path` by `method` (a clear failure, with the log, otherwise)."""
        found = [x for x in self.exchanges(path) if x["method"] == method]
        if len(found) != 1:
            pytest.fail(f"expected one {method} {path}, the browser made {len(found)}\n{self.report()}",
                        pytrace=False)
        return found[0]

    def log_in(self, user: str, password: str) -> None:
        """Types into the form on the current page and submits it with the button."""
        self.find("#username").clear()
        self.find("#username").send_keys(user)
        self.find("#password").send_keys(password)
        self.find("button[type=submit]").click()


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path)
    yield b
    b.quit()


def echoed(page: dict, name: str) -> list[str]:
    return [v for k, v in page["headers"] if k.lower() == name]


def csp_messages(browser: Browser) -> list[str]:
    return [m for m in browser.console_messages() if "content security policy" in m.lower()]


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------


def test_the_console_check_sees_a_csp_violation(browser):
    """Control for the CSP assertion below: a style sheet whose hash is not the CSP's is reported in
    the browser log this suite reads (otherwise "no CSP message" would prove nothing)."""
    bad = ("<!DOCTYPE html><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
           "style-src 'sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='\"><style>p{color:red}</style><p>x")
    browser.driver.get("data:text/html;charset=utf-8," + urllib.parse.quote(bad))
    browser.find("p")
    browser.wait(lambda d: csp_messages(browser), "a Content Security Policy message in the browser log")


def test_login_in_a_real_browser(browser, base, gw):
    d = browser.driver
    d.get(f"{base}{LOGIN}?back={PAGE}")
    browser.wait_for_path(LOGIN)
    assert d.title == "Developer login"
    page = browser.one(LOGIN)
    assert page["status"] == 200, browser.report()

    # The inline style sheet applied (its hash matches the CSP) and nothing was refused.
    assert csp_messages(browser) == [], browser.report()
    button = browser.find("button[type=submit]")
    assert button.text == "Log in"
    assert button.value_of_css_property("background-color") in ("rgb(29, 78, 216)", "rgba(29, 78, 216, 1)")
    card = browser.find("main").rect
    width = d.execute_script("return document.documentElement.clientWidth")
    assert abs(card["x"] - (width - card["x"] - card["width"])) <= 2, (card, width)  # centred
    labels = [e.text for e in d.find_elements("css selector", "label")]
    assert labels == ["User name", "Password"]
    assert d.switch_to.active_element == browser.find("#username")  # autofocus
    assert browser.present("input[name=back]").get_attribute("value") == PAGE
    browser.screenshot("login-form.png")

    browser.log_in("alice", PASSWORDS["alice"])
    browser.wait_for_path(PAGE)

    # The form post: the browser's own Origin and Host; devgate answered 303 to `back`.
    post = browser.one(LOGIN, "POST")
    sent = {k.lower(): v for k, v in post["sent"].items()}
    assert sent.get("origin") == base and sent.get("host") == urllib.parse.urlsplit(base).netloc, browser.report()
    assert sent.get("content-type") == "application/x-www-form-urlencoded", browser.report()
    assert post["status"] == 303, browser.report()
    received = {k.lower(): v for k, v in post["received"].items()}
    assert received.get("location") == PAGE, browser.report()

    # The developer-only page: the upstream saw alice, and no session cookie.
    shown = browser.json_page()
    assert shown["path"] == PAGE
    assert echoed(shown, H) == ["alice"], browser.report()
    assert not any("devgate_session" in c for c in echoed(shown, "cookie")), shown
    got = browser.one(PAGE)
    assert got["status"] == 200, browser.report()
    assert "devgate_session=" in {k.lower(): v for k, v in got["sent"].items()}.get("cookie", "")
    browser.screenshot("after-login.png")

    # The cookie as the browser keeps it.
    (cookie,) = [c for c in d.get_cookies() if c["name"] == "devgate_session"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["secure"] is False
    assert cookie["path"] == "/"
    # Script on the page cannot read it (HttpOnly).
    assert "devgate_session" not in d.execute_script("return document.cookie")
    assert not gw.devgate_problems()


def test_without_a_session_the_page_is_401(browser, base):
    d = browser.driver
    d.get(f"{base}{PAGE}")
    browser.wait_for_path(PAGE)
    got = browser.one(PAGE)
    assert got["status"] == 401, browser.report()
    received = {k.lower(): v for k, v in got["received"].items()}
    assert received.get("www-authenticate") == "x-wsgiorg.developer_user"
    assert received.get(DETAILS_HEADER) == "devgate_no_credential", browser.report()
    assert browser.find("body").text.strip() == "Unauthorized"
    assert not [c for c in d.get_cookies() if c["name"] == "devgate_session"]


def test_wrong_password_says_login_failed(browser, base):
    d = browser.driver
    d.get(f"{base}{LOGIN}?back={PAGE}")
    browser.wait_for_path(LOGIN)
    browser.log_in("alice", "wrong horse")
    error = browser.find("p.error")
    assert error.text == "Login failed."
    assert urllib.parse.urlsplit(d.current_url).path == LOGIN
    post = browser.one(LOGIN, "POST")
    assert post["status"] == 401, browser.report()
    assert browser.present("input[name=back]").get_attribute("value") == PAGE  # still goes back there
    assert csp_messages(browser) == [], browser.report()
    assert not [c for c in d.get_cookies() if c["name"] == "devgate_session"]
    browser.screenshot("login-failed.png")


def test_upstream_challenge_leads_through_the_form_and_back(browser, base):
    """upstream_challenge "login": the application's 401 sends the browser to the form, and the form
    sends it back to the page it asked for, now as a developer."""
    d = browser.driver
    target = "/needs-developer/page?x=1"
    d.get(base + target)
    browser.wait_for_path(LOGIN)
    hops = browser.exchanges()
    assert [(urllib.parse.urlsplit(x["url"]).path, x["status"]) for x in hops[:2]] == [
        ("/needs-developer/page", 303), (LOGIN, 200)], browser.report()
    assert browser.present("input[name=back]").get_attribute("value") == target
    browser.log_in("bob", PASSWORDS["bob"])
    browser.wait_for_path("/needs-developer/page")
    shown = browser.json_page()
    assert shown["path"] == target
    assert echoed(shown, H) == ["bob"], browser.report()
