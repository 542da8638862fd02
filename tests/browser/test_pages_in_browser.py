"""A person's whole journey through the pages, in a real browser (Debian's chromium, driven by
Playwright) against a real `tessera serve`: register, the verification mail's link, sign in,
my account, a passkey made by the browser's own virtual authenticator, sign out, sign in with
the passkey alone, its removal, two-step sign-in, sign out, sign in with a code, a reset from
its mail link, and deletion. The CSP is enforced throughout (any violation fails), every page is checked by
axe-core (no serious or critical violation) and photographed at full width and at 375 px."""

from __future__ import annotations

import email
import email.policy
import io
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
import zxingcpp
from PIL import Image

from tests.browser.harness import (
    CHROMIUM_FLAGS,
    SCREENSHOTS,
    ensure_axe,
    ensure_chromium,
    virtual_authenticator,
)
from tests.conftest import FAST_ARGON2
from tests.e2e.test_serve import tessera
from tests.oidc.harness import OidcProvider
from tests.servers import free_port, wait_for_port

playwright = pytest.importorskip("playwright.sync_api")

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "tangerine lighthouse at dusk"
EMAIL = "ada@example.com"


def serve(
    tmp_path: Path, stores: dict[str, str] | None = None, port: int = 0, **environ: str
) -> Iterator[tuple[str, Path]]:
    """`tessera serve` on the embedded default; with `stores` (DATABASE_URL, REDIS_URL) also a
    `tessera projector` and a `tessera worker`, as a deployment on PostgreSQL + Redis runs.
    Mail goes to DATA_DIR/mail either way (no MAIL_SERVER)."""
    port = port or free_port()
    # localhost, not 127.0.0.1: a passkey's RP ID (PUBLIC_URL's host) must be a domain name.
    base = f"http://localhost:{port}"
    data_dir = tmp_path / "var"
    env = {
        **os.environ,
        **FAST_ARGON2,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATA_DIR": str(data_dir),
        "PUBLIC_URL": base,
        "WORKER_METRICS_PORT": str(free_port()),
        **environ,
    }
    for name in ("DATABASE_URL", "REDIS_URL", "MAIL_SERVER", "LOG_FILE"):
        env.pop(name, None)
    env.update(stores or {})
    commands = ["serve", "projector", "worker"] if stores else ["serve"]
    processes = []
    for command in commands:
        with (tmp_path / f"{command}.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [tessera(), command],
                    env=env,
                    cwd=tmp_path,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        wait_for_port(port, timeout=30)
        yield base, data_dir
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=15)


@pytest.fixture(params=["sqlite", "postgres+redis"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    stores = None
    if request.param == "postgres+redis":
        cluster = request.getfixturevalue("postgres")
        stores = {
            "DATABASE_URL": cluster.new_database(),
            "REDIS_URL": request.getfixturevalue("redis_url"),
        }
    yield from serve(tmp_path, stores)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = ensure_chromium()
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


def scanned(png: bytes) -> list[str]:
    """What a QR reader (zxing-cpp) finds in a screenshot."""
    with Image.open(io.BytesIO(png)) as image:
        return [code.text for code in zxingcpp.read_barcodes(image.convert("L"))]


class Person:
    """One browser tab, checked on every page it reaches."""

    def __init__(self, page: Any, base: str, mail: Path) -> None:
        self.page = page
        self.base = base
        self.mail = mail
        self.shots = 0
        self.csp_violations: list[str] = []
        self.missing: list[str] = []  # anything tessera's pages asked it for and did not get
        self.axe = ensure_axe().read_text()
        page.on("console", self._console)
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text:
            self.csp_violations.append(message.text)

    def _response(self, response: Any) -> None:
        if response.status == 404 and response.url.startswith(self.base):
            self.missing.append(response.url)

    def check(self, name: str) -> None:
        """axe-core finds no serious or critical violation; the page fits 375 px; and a
        screenshot of each width goes to var/screenshots/."""
        page = self.page
        # Evaluated through the driver, not by a <script> of the page's: the CSP stays on.
        if not page.evaluate("typeof window.axe !== 'undefined'"):
            page.evaluate(self.axe)
        violations = page.evaluate(
            "async () => (await axe.run(document)).violations"
            ".filter(v => ['serious', 'critical'].includes(v.impact))"
            ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))"
        )
        assert violations == [], (name, violations)
        self.shots += 1
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        stem = SCREENSHOTS / f"{self.shots:02d}-{name}"
        page.screenshot(path=f"{stem}.png", full_page=True)
        size = page.viewport_size
        page.set_viewport_size({"width": 375, "height": 740})
        overflow = page.evaluate("document.documentElement.scrollWidth")
        page.screenshot(path=f"{stem}-375.png", full_page=True)
        page.set_viewport_size(size)
        assert overflow <= 375, (name, "wider than a 375 px screen", overflow)
        assert self.csp_violations == [], self.csp_violations
        assert self.missing == [], self.missing

    def press(self, name: str) -> None:
        self.page.get_by_role("button", name=name, exact=True).click()
        self.page.wait_for_load_state()

    def heading(self) -> str:
        return str(self.page.inner_text("h1"))

    def link_from_mail(self, kind: str, seen: set[str]) -> str:
        """The newest link of `kind` mailed to EMAIL that the test has not opened yet."""
        pattern = re.compile(rf"{re.escape(self.base)}/{kind}\?token=[A-Za-z0-9_-]+")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for path in self.mail.glob("*.eml"):
                message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                body = message.get_body(("plain",))
                if message["To"] != EMAIL or body is None:
                    continue
                for link in pattern.findall(body.get_content()):
                    if link not in seen:
                        seen.add(link)
                        return str(link)
            time.sleep(0.1)
        raise TimeoutError(f"no {kind} mail to {EMAIL}")


def test_a_person_goes_the_whole_way_through_the_pages(
    browser: Any, server: tuple[str, Path]
) -> None:
    base, data_dir = server
    print(f"\nscreenshots: {SCREENSHOTS}")
    context = browser.new_context(base_url=base, viewport={"width": 1100, "height": 800})
    page = context.new_page()
    me = Person(page, base, data_dir / "mail")
    links: set[str] = set()

    # Register.
    answer = page.goto("/register")
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")
    me.check("register")
    # The icon the layout links, and /favicon.ico, each load as an image under the page's CSP.
    for icon in (page.get_attribute("link[rel=icon]", "href"), "/favicon.ico"):
        width = page.evaluate(
            "src => new Promise(done => { const image = new Image();"
            " image.onload = () => done(image.naturalWidth); image.onerror = () => done(0);"
            " image.src = src; })",
            icon,
        )
        assert width > 0, icon
    page.fill("#email", EMAIL)
    page.fill("#username", "ada")
    page.fill("#password", PASSWORD)
    me.press("Create account")
    assert me.heading() == "Check your mail"
    me.check("check-your-mail")

    # The verification link from the mail: the page spends nothing until the button.
    page.goto(me.link_from_mail("verify-email", links))
    me.check("verify-email")
    me.press("Confirm my email address")
    page.wait_for_url(f"{base}/login?done=verified")
    assert "verified" in page.inner_text("[role=status]")
    me.check("sign-in")

    # Sign in with the password; my account; the display name.
    page.fill("#login", "ada")
    page.fill("#password", PASSWORD)
    me.press("Sign in")
    assert me.heading() == "My account", page.inner_text("main")
    me.check("account")
    page.fill("#display_name", "Ada Lovelace")
    me.press("Save")
    page.wait_for_url(f"{base}/account?done=profile")
    assert page.input_value("#display_name") == "Ada Lovelace"

    # A forged post (no CSRF token), though it carries the browser's own cookies: refused.
    forged = context.request.post(f"{base}/account/profile", form={"display_name": "Mallory"})
    assert forged.status == 403
    page.reload()
    assert page.input_value("#display_name") == "Ada Lovelace"

    # A passkey, made by the browser's own virtual authenticator.
    cdp, authenticator = virtual_authenticator(context, page)
    page.fill("#passkey-name", "Ada's laptop")
    page.fill("#passkey-add-password", PASSWORD)  # re-authenticated: a new way in
    page.click("#passkey-add")
    # The page's script posts the credential, then goes back to my account (no eval: the CSP).
    page.locator("[data-passkey-list]").get_by_text("Ada's laptop").wait_for()
    assert "Ada's laptop" in page.inner_text("[data-passkey-list]")
    me.check("account-passkey")

    # Sign out; sign in with the passkey alone (no login, no password typed).
    me.press("Sign out")
    page.wait_for_url(f"{base}/login?done=signed-out")
    me.check("sign-in-passkey")
    page.click("#passkey-sign-in")
    page.wait_for_url(f"{base}/account")
    assert me.heading() == "My account"
    assert page.input_value("#display_name") == "Ada Lovelace"

    # Remove it: the password again, since a stolen session alone must not take it away.
    page.fill("#passkey-1-password", PASSWORD)
    page.get_by_role("button", name="Remove the passkey Ada's laptop").click()
    page.wait_for_url(f"{base}/account?done=passkey-removed")
    assert "No passkey yet" in page.inner_text("[data-passkey-list]")
    credentials = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert len(credentials["credentials"]) == 1  # the browser keeps it; tessera refuses it now

    # Two-step sign-in: the link as a QR code that a camera reads back, the key as text beside
    # it; a code from it turns MFA on.
    me.press("Set up two-step sign-in")
    secret = page.inner_text("#totp-secret").strip()
    uri = page.inner_text("#totp-uri").strip()
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
    assert scanned(page.locator("#totp-qr").screenshot()) == [uri]
    me.check("mfa-setup")
    page.set_viewport_size({"width": 375, "height": 740})
    assert scanned(page.locator("#totp-qr").screenshot()) == [uri]  # on a phone's width too
    page.set_viewport_size({"width": 1100, "height": 800})
    totp = pyotp.TOTP(secret)
    page.fill("#confirm-code", totp.now())
    me.press("Turn on two-step sign-in")
    recovery_codes = [c.strip() for c in page.locator(".codes code").all_inner_texts()]
    assert len(recovery_codes) == 10
    me.check("recovery-codes")
    # Readable at 375 px: each code on one line, within the screen.
    page.set_viewport_size({"width": 375, "height": 740})
    lines = page.eval_on_selector_all(
        ".codes code",
        "codes => codes.map(c => [c.getClientRects().length, c.getBoundingClientRect().right])",
    )
    assert all(rects == 1 and right <= 375 for rects, right in lines), lines
    page.set_viewport_size({"width": 1100, "height": 800})
    # And kept as a text file: the browser really downloads it, with its name.
    with page.expect_download() as started:
        page.get_by_role("link", name="Download the codes as a text file").click()
    download = started.value
    assert download.failure() is None
    assert download.suggested_filename == "tessera-recovery-codes.txt"
    kept = Path(download.path()).read_text(encoding="utf-8").splitlines()
    assert [line for line in kept if line in recovery_codes] == recovery_codes

    # Sign out; sign in again with the password and then a code (the next step's: the code
    # used to confirm is spent, and the window allows one step either side).
    me.press("Sign out")
    page.wait_for_url(f"{base}/login?done=signed-out")
    assert context.request.get(f"{base}/account", max_redirects=0).status == 303
    page.fill("#login", EMAIL)
    page.fill("#password", PASSWORD)
    me.press("Sign in")
    assert me.heading() == "Two-step sign-in"
    me.check("sign-in-code")
    page.fill("#code", totp.at(time.time() + 30))
    me.press("Continue")
    page.wait_for_url(f"{base}/account")
    assert "Two-step sign-in" in page.inner_text("#mfa-heading")
    assert page.locator("text=On: signing in asks for a code").count() == 1

    # A password reset from its mail link ends every session, this browser's too.
    page.goto("/forgot-password")
    me.check("forgot-password")
    page.fill("#email", EMAIL)
    me.press("Send me a reset link")
    assert me.heading() == "Check your mail"
    page.goto(me.link_from_mail("reset-password", links))
    me.check("reset-password")
    page.fill("#new_password", NEW_PASSWORD)
    me.press("Set the new password")
    page.wait_for_url(f"{base}/login?done=password-reset")
    assert context.request.get(f"{base}/account", max_redirects=0).status == 303

    # Sign in with the new password and a recovery code; then delete the account.
    page.fill("#login", "ada")
    page.fill("#password", NEW_PASSWORD)
    me.press("Sign in")
    page.fill("#code", recovery_codes[0])
    me.press("Continue")
    page.wait_for_url(f"{base}/account")
    page.fill("#delete-password", NEW_PASSWORD)
    page.fill("#delete-code", recovery_codes[1])
    me.press("Delete my account")
    page.wait_for_url(f"{base}/login?done=deleted")
    me.check("deleted")

    # Gone: the same credentials are refused like any unknown login.
    page.fill("#login", "ada")
    page.fill("#password", NEW_PASSWORD)
    me.press("Sign in")
    assert "incorrect" in page.inner_text("[role=alert]")
    context.close()


def test_with_pages_disabled_no_page_route_exists(tmp_path: Path) -> None:
    for base, _ in serve(tmp_path, PAGES_ENABLED="false"):
        with httpx.Client(base_url=base, timeout=10) as http:
            for path in ("/login", "/register", "/account", "/verify-email?token=x"):
                assert http.get(path).status_code == 404, path
            assert http.get("/health/live").status_code == 200


def test_a_person_signs_in_through_another_identity_provider(browser: Any, tmp_path: Path) -> None:
    """The sign-in page's button, the provider's own login and consent pages (a real
    oidc-provider), and back: the flow cookie survives the cross-site round trip, the landing
    page spends nothing until its form posts (the script posts it at once), and the person is
    on my account, with the identity listed."""
    port = free_port()
    base = f"http://localhost:{port}"
    secret = "browser-test-client-secret"
    client = {
        "client_id": "tessera",
        "client_secret": secret,
        "redirect_uris": [f"{base}/api/auth/oidc/corp/callback"],
    }
    accounts = {"grace-sub": {"email": "grace@example.org", "email_verified": True}}
    with OidcProvider(clients=[client], accounts=accounts) as idp:
        provider = {
            "OIDC_PROVIDERS": "corp",
            "OIDC_CORP_ISSUER": idp.issuer,
            "OIDC_CORP_CLIENT_ID": "tessera",
            "OIDC_CORP_CLIENT_SECRET": secret,
            "OIDC_CORP_LABEL": "Corp",
        }
        for _, data_dir in serve(tmp_path, None, port, **provider):
            context = browser.new_context(base_url=base, viewport={"width": 1100, "height": 800})
            page = context.new_page()
            me = Person(page, base, data_dir / "mail")
            page.goto("/login")
            page.get_by_role("link", name="Sign in with Corp").click()
            page.fill("input[name=login]", "grace-sub")  # the provider's login page
            page.get_by_role("button", name="continue").click()
            page.get_by_role("button", name="continue").click()  # its consent page
            page.wait_for_url(f"{base}/account")
            assert me.heading() == "My account"
            assert "grace@example.org" in page.inner_text("main")
            me.check("account-identity")
            context.close()
