"""A real OpenID Provider for the tests, run as a process: panva's oidc-provider (certified by the
OpenID Foundation) from npm, on Node.js, configured per test by tests/oidc/provider.mjs.

    with OidcProvider(
        clients=[{"client_id": "tessera", "client_secret": "s3cret",
                  "redirect_uris": ["http://127.0.0.1:8000/callback"]}],
        accounts={"alice": {"email": "alice@example.com", "email_verified": True}},
    ) as provider:
        provider.issuer                                  # http://127.0.0.1:PORT
        redirect = sign_in(authorize_url, "alice", http)  # the client's redirect_uri?code=..&state=..

The provider keeps its sessions, codes and tokens in memory: stop() and start() (or down()) make
it unreachable and bring it back empty; rotate_keys() restarts it signing with a new key."""

from __future__ import annotations

import atexit
import base64
import hashlib
import json
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urljoin

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.servers import npm_package

# 8.x supports Node.js 18 and later (9.x warns on anything older than Node.js 22).
OIDC_PROVIDER_VERSION = "8.8.1"
HERE = Path(__file__).resolve().parent
PROVIDER_JS = HERE / "provider.mjs"
START_TIMEOUT = 15.0

Json = dict[str, Any]


def ensure_oidc_provider() -> Path:
    """oidc-provider installed with npm into tests/oidc/node_modules (ignored by git)."""
    return npm_package(HERE, "oidc-provider", OIDC_PROVIDER_VERSION)


def new_signing_key() -> Json:
    """A private RS256 JWK with a fresh kid, for the provider to sign ID tokens with."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: Json = json.loads(RSAAlgorithm.to_jwk(key))
    # PyJWT writes key_ops ["sign"], which oidc-provider would publish with the public half: a
    # relying party (joserfc) rightly refuses to verify with a key that says it only signs.
    jwk.pop("key_ops", None)
    return {**jwk, "kid": secrets.token_urlsafe(8), "alg": "RS256", "use": "sig"}


def public_jwk(private: Json) -> Json:
    """The public half of a private RSA JWK, as the provider publishes it."""
    return {name: private[name] for name in ("kty", "kid", "alg", "use", "n", "e")}


def new_pkce() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) for one authorization request."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OidcProvider:
    """oidc-provider as a subprocess on 127.0.0.1, started by the context manager (or start())."""

    def __init__(
        self,
        clients: list[Json],
        accounts: dict[str, Json],
        port: int | None = None,
        settings: Json | None = None,
    ) -> None:
        """clients: oidc-provider client metadata (client_id, client_secret, redirect_uris and
        any other registered metadata, e.g. token_endpoint_auth_method); accounts: account id
        (the `sub`) to its claims (email, email_verified, name, ...); port: None for a free one,
        kept across restarts; settings: merged over provider.mjs's oidc-provider configuration."""
        self.clients = clients
        self.accounts = accounts
        self.settings = settings or {}
        self.port = port or 0
        self.signing_keys: list[Json] = [new_signing_key()]  # the first one signs
        self._cookie_keys = [secrets.token_urlsafe(32)]
        self._dir = Path(tempfile.mkdtemp(prefix="tessera-oidc-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        atexit.register(self.close)

    @property
    def issuer(self) -> str:
        if not self.port:
            raise RuntimeError("the provider has not been started yet")
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> OidcProvider:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Starts the provider and waits until its discovery document answers."""
        if self.running:
            return
        ensure_oidc_provider()
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is missing: install Debian's nodejs")
        config = self._dir / "config.json"
        config.write_text(
            json.dumps(
                {
                    "clients": self.clients,
                    "accounts": self.accounts,
                    "jwks": {"keys": self.signing_keys},
                    "cookie_keys": self._cookie_keys,
                    "settings": self.settings,
                }
            )
        )
        log = self._log_path
        self._log_offset = log.stat().st_size if log.exists() else 0
        with log.open("ab") as out:
            self._process = subprocess.Popen(
                [node, str(PROVIDER_JS), str(config), str(self.port)],
                cwd=HERE,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.port = self._wait_until_listening()
        self._wait_until_discovery_answers()

    def stop(self) -> None:
        """Stops the process: the issuer refuses connections (the "provider down" case). Its
        sessions, codes and tokens are gone; start() brings it back on the same port."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    @contextmanager
    def down(self) -> Iterator[None]:
        """The provider is unreachable inside the block and back (empty) after it."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def rotate_keys(self, keep_previous: bool = True) -> Json:
        """Restarts the provider signing with a new key, returned (a private JWK). The previous
        keys stay published in the JWKS unless keep_previous is False, as a provider does while
        tokens it signed before are still in use."""
        key = new_signing_key()
        self.signing_keys = [key, *self.signing_keys] if keep_previous else [key]
        if self.running:
            self.restart()
        return key

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def discovery(self) -> Json:
        response = httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=5)
        response.raise_for_status()
        document: Json = response.json()
        return document

    def log(self) -> str:
        """What the provider process wrote since its last start (warnings, errors)."""
        if not self._log_path.exists():
            return ""
        with self._log_path.open("rb") as log:
            log.seek(self._log_offset)
            return log.read().decode("utf-8", "replace")

    @property
    def _log_path(self) -> Path:
        return self._dir / "provider.log"

    def _wait_until_listening(self) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            found = re.search(r"^listening http://127\.0\.0\.1:(\d+)$", self.log(), re.MULTILINE)
            if found:
                return int(found.group(1))
            if not self.running:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"oidc-provider did not start:\n{self.log()}")

    def _wait_until_discovery_answers(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self.discovery()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or not self.running:
                    self.stop()
                    raise RuntimeError(f"oidc-provider does not answer:\n{self.log()}") from None
                time.sleep(0.02)


_FORM_ACTION = re.compile(r'<form method="post" action="(/interaction/[^/"]+/(login|confirm))">')


def sign_in(
    authorize_url: str,
    account: str,
    http: httpx.Client | None = None,
    *,
    acr: str | None = None,
    amr: list[str] | None = None,
    approve: bool = True,
) -> str:
    """Follows an authorization request through the provider as its user would: signs in as
    `account` (with the given acr/amr, if any) and grants consent, or cancels if approve is
    False. Returns the URL the provider finally redirects to, on the client's redirect_uri (with
    `code` and `state`, or `error`), without following it. Passing `http` keeps the provider's
    session cookies, so a second request may skip the login (and the consent already given)."""
    own = http is None
    client = http if http is not None else httpx.Client(timeout=10)
    try:
        return _follow(client, authorize_url, account, acr, amr, approve)
    finally:
        if own:
            client.close()


def _follow(
    http: httpx.Client,
    url: str,
    account: str,
    acr: str | None,
    amr: list[str] | None,
    approve: bool,
) -> str:
    provider = httpx.URL(url).copy_with(path="/", query=None, fragment=None)
    response = http.get(url, follow_redirects=False)
    for _ in range(20):
        if response.is_redirect:
            target = urljoin(str(response.url), response.headers["location"])
            if httpx.URL(target).copy_with(path="/", query=None, fragment=None) != provider:
                return target  # left the provider: the client's redirect_uri
            response = http.get(target, follow_redirects=False)
            continue
        form = _FORM_ACTION.search(response.text) if response.status_code == 200 else None
        if form is None:
            raise RuntimeError(
                f"unexpected answer from the provider to {response.url}: "
                f"{response.status_code} {response.text[:500]}"
            )
        action, prompt = form.groups()
        data: dict[str, str] = {}
        if not approve:
            action = action.rsplit("/", 1)[0] + "/abort"
        elif prompt == "login":
            data = {"login": account, "acr": acr or "", "amr": " ".join(amr or [])}
        response = http.post(urljoin(str(response.url), action), data=data, follow_redirects=False)
    raise RuntimeError(f"the provider did not redirect to the client: {response.url}")
