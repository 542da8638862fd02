"""What keeps the pages safe: the page session's cookies, CSRF tokens, origins and headers."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from application.ports import VersionedKey
from application.tokens import versioned
from application.views import TokenPair

# No inline script or style anywhere, so the policy can forbid both: an injected <script> or
# style attribute does nothing even if some template ever failed to escape it.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    # The mail links carry their token in the URL: no page may pass it on as a referrer.
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str:
    """scheme://host[:port] as a browser writes it in an Origin header (no default port)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    return (
        f"{scheme}://{host}"
        if port in (None, _DEFAULT_PORTS.get(scheme))
        else (f"{scheme}://{host}:{port}")
    )


def same_site_path(target: str | None) -> str | None:
    """`target` when it is a path on this site ("/account?done=x"), else None: where a sign-in
    goes next comes from a URL anyone can write, so it must never lead to another site (an open
    redirect). Browsers read "//host" and "/\\host" as another host, and drop tabs and line
    breaks inside a URL first, so each of these is refused, not cleaned."""
    if not target or len(target) > 512 or not target.startswith("/"):
        return None
    if target.startswith(("//", "/\\")) or any(
        c == "\\" or ord(c) < 0x21 or ord(c) == 0x7F for c in target
    ):
        return None
    parts = urlsplit(target)
    return target if not (parts.scheme or parts.netloc) else None


def plain_local_http(public_url: str) -> bool:
    """Only a developer's own machine is served over plain HTTP; everywhere else the cookies
    are Secure, so they never travel unencrypted."""
    parts = urlsplit(public_url)
    return parts.scheme == "http" and (parts.hostname or "") in _LOCAL_HOSTS


@dataclass(frozen=True)
class CookieJar:
    """The page session: the tessera session's token pair, each in an HttpOnly cookie that
    script cannot read, SameSite=Strict so that no other site's page or form sends them, and
    a CSRF nonce beside them. `__Host-` names (Secure, Path=/, no Domain) where HTTPS is used,
    so a sibling subdomain cannot plant one."""

    secure: bool
    max_age: int

    @property
    def _prefix(self) -> str:
        return "__Host-" if self.secure else ""

    @property
    def access(self) -> str:
        return f"{self._prefix}tessera-access"

    @property
    def refresh(self) -> str:
        return f"{self._prefix}tessera-refresh"

    @property
    def nonce(self) -> str:
        return f"{self._prefix}tessera-csrf"

    def _cookie(self, key: str, value: str, max_age: int | None = None) -> Cookie:
        return Cookie(
            key=key,
            value=value,
            path="/",
            max_age=self.max_age if max_age is None else max_age,
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )

    def session(self, tokens: TokenPair) -> list[Cookie]:
        return [
            self._cookie(self.access, tokens.access_token),
            self._cookie(self.refresh, tokens.refresh_token),
        ]

    def csrf(self, nonce: str) -> Cookie:
        return self._cookie(self.nonce, nonce)

    def ended(self) -> list[Cookie]:
        """Cookies that replace the session's, expired at once: the browser drops them."""
        return [self._cookie(self.access, "", max_age=0), self._cookie(self.refresh, "", max_age=0)]


# Binds a started sign-in with another identity provider to the browser that started it (the
# API's start and the pages' link button set it; the callback reads it). SameSite=Lax, not
# Strict: the provider's redirect back is a cross-site top-level navigation, which Lax lets
# carry it.
OIDC_BROWSER_COOKIE = "tessera-oidc"


def oidc_browser_cookie_name(public_url: str) -> str:
    local = plain_local_http(public_url)
    return OIDC_BROWSER_COOKIE if local else f"__Host-{OIDC_BROWSER_COOKIE}"


def oidc_browser_cookie(public_url: str, max_age: int, secret: str) -> Cookie:
    return Cookie(
        key=oidc_browser_cookie_name(public_url),
        value=secret,
        path="/",
        max_age=max_age,
        secure=not plain_local_http(public_url),
        httponly=True,
        samesite="lax",
    )


class CsrfTokens:
    """A signed double-submit token: the form carries HMAC(key, nonce | session), the browser
    carries the nonce in its HttpOnly cookie. Another site can neither read the cookie nor
    compute the HMAC; the token binds to the tessera session too, and the nonce is renewed at
    each sign-in and sign-out, so a token seen before one is useless after it."""

    def __init__(self, key: bytes | VersionedKey) -> None:
        self._keys = versioned(key)

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(32)

    def token(self, nonce: str, session: str) -> str:
        """Under the key's current version; a version after 1 is named before the HMAC ("2.")."""
        version, key = self._keys.current()
        mac = _mac(key, nonce, session)
        return mac if version == 1 else f"{version}.{mac}"

    def valid(self, token: str | None, nonce: str | None, session: str) -> bool:
        if not token or not nonce:
            return False
        number, dot, mac = token.partition(".")
        if not dot:
            version, mac = 1, token
        elif _named_version(number):
            version = int(number)
        else:
            return False
        key = self._keys.version(version)
        return key is not None and hmac.compare_digest(
            mac.encode(), _mac(key, nonce, session).encode()
        )


def _named_version(number: str) -> bool:
    """A version as the tokens write it: 2 or later, in ASCII digits, with no leading zero."""
    return (
        number.isascii()
        and number.isdigit()
        and len(number) < 6
        and number[0] != "0"
        and number != "1"
    )


def _mac(key: bytes, nonce: str, session: str) -> str:
    return hmac.new(key, f"{nonce}|{session}".encode(), hashlib.sha256).hexdigest()


def from_this_site(headers: Any, public_origin: str) -> bool:
    """A form post from another origin is refused whatever it carries. Browsers name it in
    Sec-Fetch-Site, and in Origin, except that under Referrer-Policy: no-referrer (which these
    pages send, for the mail links' tokens) a form post's Origin is "null": that says nothing
    either way, and the CSRF token decides."""
    origin = headers.get("origin")
    if origin not in (None, "null") and origin != public_origin:
        return False
    return headers.get("sec-fetch-site") not in ("cross-site", "same-site")


def security_headers(https: bool) -> Callable[[ASGIApp], ASGIApp]:
    """The headers above on every page and static file, error pages included; HSTS too when
    the pages are served over HTTPS."""
    extra = {"strict-transport-security": "max-age=63072000"} if https else {}

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    _set_headers(MutableScopeHeaders.from_message(message), scope["path"], extra)
                await send(message)

            await app(scope, receive, send_with_headers)

        return middleware

    return wrap


def _set_headers(headers: MutableScopeHeaders, path: str, extra: dict[str, str]) -> None:
    for name, value in {**SECURITY_HEADERS, **extra}.items():
        headers[name] = value
    if path.startswith("/static/") or path == "/favicon.ico":
        headers["cache-control"] = "no-cache"
    else:
        # A page may show a TOTP secret or recovery codes: keep it out of every cache.
        headers["cache-control"] = "no-store"
