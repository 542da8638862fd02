"""Apps' sessions (OpenID Provider) on both stores: a code is single use, short-lived and its
client's own; a second use ends the session the first started; an app session's refresh tokens
ride chains like tessera's own, but no other app (nor tessera's own refresh) takes them; and
whatever ends the account's sessions, or withdraws the app's consent, ends the app's too."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from application.clients.authorization_codes import CodeGrant
from application.sessions.lifecycle import AppSession
from domain.account import Account
from domain.client import ClientSettings
from domain.errors import (
    AuthorizationCodeReused,
    ConsentNotFound,
    InvalidAccessToken,
    InvalidAuthorizationCode,
    InvalidRefreshToken,
    RefreshTokenReused,
)
from domain.session import Session
from interfaces.container import Container
from tests.application.test_use_cases import CLIENT, PASSWORD, verified
from tests.conftest import FakeClock, authenticated, refreshed, run_async

WIKI = ClientSettings(
    name="Wiki",
    redirect_uris=("https://wiki.example/callback",),
    grant_types=("authorization_code", "refresh_token"),
    scopes=("openid", "profile", "email", "offline_access"),
)

# Exchanges at once, as many as a busy person's apps and tabs make, and more than the event
# log's conflict retries absorb when each one writes the same stream.
PARALLEL = 48


def _signed_in(container: Container) -> tuple[UUID, UUID, str]:
    """The account, its browser session and an app it consented to."""
    verified(container)
    tokens = container.login.log_in("ada", PASSWORD, CLIENT)
    caller = authenticated(container, tokens.access_token)
    client_id = container.clients.register(WIKI, "account:admin").client_id
    container.consents.grant(caller.account_id, client_id, ["openid", "email"], CLIENT)
    return caller.account_id, caller.session_id, client_id


def _grant(account_id: UUID, browser: UUID, client_id: str) -> CodeGrant:
    return CodeGrant(
        client_id=client_id,
        redirect_uri="https://wiki.example/callback",
        scopes=("openid", "email"),
        account_id=account_id,
        browser_session_id=browser,
        auth_time=1.0,
        amr=("pwd",),
        nonce="n-0S6_WzA2Mj",
        code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    )


def _exchanged(container: Container, code: str, client_id: str) -> AppSession:
    session_id = uuid4()
    grant = container.authorization_codes.take(code, client_id, session_id)
    return container.sessions.start_app(
        grant.account_id,
        client_id,
        grant.browser_session_id,
        CLIENT,
        session_id,
        grant.scopes,
        "https://tessera.example/oauth2/userinfo",
    )


def test_a_code_starts_one_app_session_and_its_second_use_ends_it(container: Container) -> None:
    account_id, browser, client_id = _signed_in(container)
    grant = _grant(account_id, browser, client_id)
    code = container.authorization_codes.issue(grant)
    session_id = uuid4()
    assert container.authorization_codes.take(code, client_id, session_id) == grant
    app = container.sessions.start_app(
        account_id, client_id, browser, CLIENT, session_id, grant.scopes, "https://api.example"
    )
    stored = container.log.find(app.session_id, Session)
    assert stored is not None
    assert (stored.client_id, stored.browser_session_id) == (client_id, browser)

    with pytest.raises(AuthorizationCodeReused) as reused:
        container.authorization_codes.take(code, client_id, uuid4())
    assert reused.value.session_id == app.session_id
    container.sessions.end_app_session(reused.value.session_id, "code_reused")
    with pytest.raises(InvalidRefreshToken):
        run_async(container.sessions.rotate_app(app.refresh_token, client_id))


def test_a_code_expires_after_a_minute_and_belongs_to_its_client(
    container: Container, clock: FakeClock
) -> None:
    account_id, browser, client_id = _signed_in(container)
    codes = container.authorization_codes
    late = codes.issue(_grant(account_id, browser, client_id))
    clock.advance(seconds=61)
    with pytest.raises(InvalidAuthorizationCode):
        codes.take(late, client_id, uuid4())

    other = container.clients.register(WIKI, "account:admin").client_id
    stolen = codes.issue(_grant(account_id, browser, client_id))
    with pytest.raises(InvalidAuthorizationCode):
        codes.take(stolen, other, uuid4())
    for forged in ("", "x" * 43, "y" * 500):
        with pytest.raises(InvalidAuthorizationCode):
            codes.take(forged, client_id, uuid4())


def test_an_app_refresh_token_rotates_for_its_app_only(container: Container) -> None:
    account_id, browser, client_id = _signed_in(container)
    app = _exchanged(
        container,
        container.authorization_codes.issue(_grant(account_id, browser, client_id)),
        client_id,
    )
    other = container.clients.register(WIKI, "account:admin").client_id
    with pytest.raises(InvalidRefreshToken):
        run_async(container.sessions.rotate_app(app.refresh_token, other))
    with pytest.raises(InvalidRefreshToken):  # never a first-party session's token
        refreshed(container, app.refresh_token)

    turned = run_async(container.sessions.rotate_app(app.refresh_token, client_id))
    assert turned.session_id == app.session_id and turned.account_id == account_id
    assert turned.refresh_token != app.refresh_token
    assert turned.scopes == ("openid", "email")
    run_async(container.sessions.rotate_app(turned.refresh_token, client_id))
    with pytest.raises(RefreshTokenReused):  # the same reuse rule as tessera's own sessions
        run_async(container.sessions.rotate_app(app.refresh_token, client_id))


def test_a_first_party_refresh_token_is_no_app_token(container: Container) -> None:
    _, _, client_id = _signed_in(container)
    tokens = container.login.log_in("ada", PASSWORD, CLIENT)
    with pytest.raises(InvalidRefreshToken):
        run_async(container.sessions.rotate_app(tokens.refresh_token, client_id))


@pytest.mark.parametrize("ending", ["everywhere", "disabled", "consent"])
def test_what_ends_the_account_sessions_or_the_consent_ends_the_app_session(
    container: Container, ending: str
) -> None:
    account_id, browser, client_id = _signed_in(container)
    app = _exchanged(
        container,
        container.authorization_codes.issue(_grant(account_id, browser, client_id)),
        client_id,
    )
    if ending == "everywhere":
        tokens = container.login.log_in("ada", PASSWORD, CLIENT)
        caller = authenticated(container, tokens.access_token)
        container.sessions.log_out(caller, None, all_sessions=True)
    elif ending == "disabled":
        container.administration.disable("ada", "account:admin")
    else:
        container.consents.revoke(account_id, client_id, CLIENT)
    with pytest.raises(InvalidRefreshToken):
        run_async(container.sessions.rotate_app(app.refresh_token, client_id))


@pytest.mark.parametrize("settings", ["postgres+redis"], indirect=True)
def test_many_app_sessions_of_one_person_start_at_once(container: Container) -> None:
    """Issue #22: one person's codes exchanged at once (an app opened in many tabs, many apps
    signing in) all start their sessions: none runs out of conflict retries."""
    account_id, browser, client_id = _signed_in(container)
    grant = _grant(account_id, browser, client_id)
    codes = [container.authorization_codes.issue(grant) for _ in range(PARALLEL)]
    before = _account_version(container, account_id)
    with ThreadPoolExecutor(PARALLEL) as pool:
        started = list(pool.map(lambda code: _exchanged(container, code, client_id), codes))
    assert len({app.session_id for app in started}) == PARALLEL
    # The cause of the contention, pinned: an app's sign-in writes the app's Session alone,
    # so one person's exchanges never race each other for the account's stream.
    assert _account_version(container, account_id) == before


def _account_version(container: Container, account_id: UUID) -> int:
    account = container.log.find(account_id, Account)
    assert account is not None
    return int(account.version)


def _cut_off(container: Container, app: AppSession) -> None:
    """Neither the app session's refresh token nor its access token stands any more."""
    token = container.person_tokens.access_token(app).access_token
    with pytest.raises(InvalidAccessToken):
        run_async(container.person_tokens.verified(token))
    with pytest.raises(InvalidRefreshToken):
        run_async(container.sessions.rotate_app(app.refresh_token, app.client_id))


def test_a_consent_withdrawn_while_the_code_is_exchanged_ends_that_session_too(
    container: Container, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The withdrawal commits after the exchange read the consent and saved its Session, before
    the exchange reads the consent again: the exchange ends its own session, no token leaves."""
    account_id, browser, client_id = _signed_in(container)
    code = container.authorization_codes.issue(_grant(account_id, browser, client_id))
    chains = container.sessions._chains
    begin = chains.begin

    def withdrawn_meanwhile(*args: Any) -> None:
        begin(*args)
        clock.advance(seconds=1)
        container.consents.revoke(account_id, client_id, CLIENT)

    monkeypatch.setattr(chains, "begin", withdrawn_meanwhile)
    session_id = uuid4()
    grant = container.authorization_codes.take(code, client_id, session_id)
    with pytest.raises(ConsentNotFound):
        container.sessions.start_app(
            account_id, client_id, browser, CLIENT, session_id, grant.scopes, "https://api"
        )
    session = container.log.find(session_id, Session)
    assert session is not None and session.revoked_at is not None


def test_a_consent_withdrawn_just_after_the_exchange_cuts_its_tokens_off(
    container: Container, clock: FakeClock
) -> None:
    """The withdrawal commits after the exchange's last read of the consent: its cutoff, written
    after its save, is later than the session's start and its first access token."""
    account_id, browser, client_id = _signed_in(container)
    app = _exchanged(
        container,
        container.authorization_codes.issue(_grant(account_id, browser, client_id)),
        client_id,
    )
    token = container.person_tokens.access_token(app).access_token
    assert run_async(container.person_tokens.verified(token))["sid"] == str(app.session_id)
    clock.advance(seconds=1)
    container.consents.revoke(account_id, client_id, CLIENT)
    _cut_off(container, app)
    # Asked again and given again, the app's new sessions stand; the old one stays cut off.
    clock.advance(seconds=2)
    container.consents.grant(account_id, client_id, ["openid", "email"], CLIENT)
    again = _exchanged(
        container,
        container.authorization_codes.issue(_grant(account_id, browser, client_id)),
        client_id,
    )
    fresh = container.person_tokens.access_token(again).access_token
    assert run_async(container.person_tokens.verified(fresh))["sid"] == str(again.session_id)
    assert run_async(container.sessions.rotate_app(again.refresh_token, client_id))
    _cut_off(container, app)


@pytest.mark.parametrize("granted_again", [False, True])
def test_an_app_session_cut_off_stays_so_once_the_shared_cutoff_is_forgotten(
    container: Container, clock: FakeClock, granted_again: bool
) -> None:
    """The shared store's cutoff lasts as long as a session could when it was written: a
    SESSION_MAX_AGE raised since outlives it. The refresh reads the consent from the account
    too: a session started before the consent the app holds now (or with none) stays over."""
    account_id, browser, client_id = _signed_in(container)
    app = _exchanged(
        container,
        container.authorization_codes.issue(_grant(account_id, browser, client_id)),
        client_id,
    )
    clock.advance(seconds=1)
    container.consents.revoke(account_id, client_id, CLIENT)
    if granted_again:
        clock.advance(seconds=1)
        container.consents.grant(account_id, client_id, ["openid", "email"], CLIENT)
    # Where the revocation list is in tables: its rows forgotten, as a pass a year on does.
    forget = getattr(container.revocations, "forget_expired", None)
    if forget is None:
        pytest.skip("Redis expires the cutoff by itself")
    forget(datetime.now(UTC) + timedelta(days=400), 1000)

    with pytest.raises(InvalidRefreshToken):
        run_async(container.sessions.rotate_app(app.refresh_token, client_id))


def test_a_consent_withdrawn_cuts_off_only_that_apps_sessions(container: Container) -> None:
    account_id, browser, client_id = _signed_in(container)
    other = container.clients.register(WIKI, "account:admin").client_id
    container.consents.grant(account_id, other, ["openid"], CLIENT)
    kept = _exchanged(
        container, container.authorization_codes.issue(_grant(account_id, browser, other)), other
    )
    cut = _exchanged(
        container,
        container.authorization_codes.issue(_grant(account_id, browser, client_id)),
        client_id,
    )
    container.consents.revoke(account_id, client_id, CLIENT)
    _cut_off(container, cut)
    token = container.person_tokens.access_token(kept).access_token
    assert run_async(container.person_tokens.verified(token))["client_id"] == other
    assert run_async(container.sessions.rotate_app(kept.refresh_token, other))


def test_an_exchange_inside_the_withdrawal_is_cut_off_by_the_cutoff_after_its_save(
    container: Container, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exchange runs whole between the withdrawal's first cutoff and its save (it reads the
    consent still given, and starts later than that cutoff): the cutoff written again after the
    save is what ends it."""
    account_id, browser, client_id = _signed_in(container)
    code = container.authorization_codes.issue(_grant(account_id, browser, client_id))
    revocations = container.sessions._revocations
    cut = revocations.revoke_app_sessions_before
    raced: list[AppSession] = []

    def exchanged_meanwhile(*args: Any) -> None:
        cut(*args)
        if not raced:
            clock.advance(seconds=1)
            raced.append(_exchanged(container, code, client_id))
            clock.advance(seconds=1)

    monkeypatch.setattr(revocations, "revoke_app_sessions_before", exchanged_meanwhile)
    container.consents.revoke(account_id, client_id, CLIENT)
    _cut_off(container, raced[0])


def _second_use(container: Container, code: str, client_id: str) -> UUID:
    """A code's second use, as the token endpoint answers it: refused, and the session its
    first use named is ended."""
    with pytest.raises(AuthorizationCodeReused) as reused:
        container.authorization_codes.take(code, client_id, uuid4())
    container.sessions.end_spent_code_session(reused.value.session_id)
    return reused.value.session_id


def _ended_for_good(container: Container, clock: FakeClock, session_id: UUID, begun: Any) -> None:
    """The session is ended in the log, and its chain will never turn (its turn-0 token, as
    the chain was begun with it, is refused)."""
    session = container.log.find(session_id, Session)
    assert session is not None and session.revoked_at is not None
    assert session.revocation_reason == "code_reused"
    _, _, digest = begun
    step = run_async(
        container.chains.turn(
            session_id,
            0,
            digest,
            "next",
            clock.now(),
            timedelta(days=14),
            timedelta(hours=1),
            timedelta(0),
        )
    )
    assert step.chain is None


def test_a_second_use_of_a_code_before_its_first_use_saved_anything_ends_it(
    container: Container, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second use comes once the first has taken the code, before its session is saved: it
    finds nothing to end but leaves its lasting mark, which the first use finds before it saves
    anything; no session starts, no chain begins, no token leaves."""
    account_id, browser, client_id = _signed_in(container)
    code = container.authorization_codes.issue(_grant(account_id, browser, client_id))
    begun: list[Any] = []
    begin = container.chains.begin
    monkeypatch.setattr(container.chains, "begin", lambda *args: (begun.append(args), begin(*args)))
    session_id = uuid4()
    grant = container.authorization_codes.take(code, client_id, session_id)
    assert _second_use(container, code, client_id) == session_id
    assert container.log.find(session_id, Session) is None  # nothing to end yet
    with pytest.raises(AuthorizationCodeReused):
        container.sessions.start_app(
            account_id, client_id, browser, CLIENT, session_id, grant.scopes, "https://api"
        )
    assert container.log.find(session_id, Session) is None and begun == []


def test_a_second_use_of_a_code_between_the_first_uses_save_and_chain_ends_it(
    container: Container, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second use comes after the first saved its session, just before its chain begins:
    it ends the session but finds no chain; the chain begun after is ended by the first use."""
    account_id, browser, client_id = _signed_in(container)
    code = container.authorization_codes.issue(_grant(account_id, browser, client_id))
    begun: list[Any] = []
    begin = container.chains.begin

    def second_use_first(*args: Any) -> None:
        begun.append(args)
        _second_use(container, code, client_id)
        begin(*args)

    monkeypatch.setattr(container.chains, "begin", second_use_first)
    with pytest.raises(AuthorizationCodeReused):
        _exchanged(container, code, client_id)
    _ended_for_good(container, clock, begun[0][0], begun[0])


def test_a_second_use_of_a_code_just_after_the_first_use_looked_ends_it(
    container: Container, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second use comes once the first use has begun its chain and looked for an end: it
    finds the session and its chain and ends them; the tokens the first use got are dead."""
    account_id, browser, client_id = _signed_in(container)
    code = container.authorization_codes.issue(_grant(account_id, browser, client_id))
    begun: list[Any] = []
    begin = container.chains.begin
    monkeypatch.setattr(container.chains, "begin", lambda *args: (begun.append(args), begin(*args)))
    standing_now = container.revocations.standing_now
    second: list[UUID] = []

    def second_use_after(claims: Any) -> Any:
        found = standing_now(claims)
        if begun and not second:  # the look after the chain began
            second.append(_second_use(container, code, client_id))
        return found

    monkeypatch.setattr(container.revocations, "standing_now", second_use_after)
    app = _exchanged(container, code, client_id)
    _ended_for_good(container, clock, app.session_id, begun[0])
    token = container.person_tokens.access_token(app).access_token
    with pytest.raises(InvalidAccessToken):
        run_async(container.person_tokens.verified(token))
    with pytest.raises(InvalidRefreshToken):
        run_async(container.sessions.rotate_app(app.refresh_token, client_id))


def test_racing_uses_of_a_code_give_one_grant_and_name_its_session(container: Container) -> None:
    """A code is claimed as spent and taken in one step: of uses racing for it, exactly one
    gets what it stands for, and the next is told that use's session (to end it), never
    merely "unknown code"."""
    account_id, browser, client_id = _signed_in(container)
    code = container.authorization_codes.issue(_grant(account_id, browser, client_id))
    outcomes: list[tuple[str, UUID | None]] = []
    start = threading.Barrier(6)

    def use() -> None:
        session_id = uuid4()
        start.wait()
        try:
            container.authorization_codes.take(code, client_id, session_id)
            outcomes.append(("grant", session_id))
        except AuthorizationCodeReused as reused:
            outcomes.append(("reused", reused.session_id))
        except InvalidAuthorizationCode:
            outcomes.append(("invalid", None))

    threads = [threading.Thread(target=use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    granted = [session_id for kind, session_id in outcomes if kind == "grant"]
    assert len(granted) == 1, outcomes
    assert ("reused", granted[0]) in outcomes, outcomes
