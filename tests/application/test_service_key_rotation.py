"""The service's own keys replaced after a compromise (`rekey --service-keys`), on each store:
refresh tokens, sessions, CSRF tokens and TOTP made before the rotation keep working
throughout; new ones are made under the new version once it takes over; TOTP secrets are
sealed again under it; and once the old versions are destroyed, whatever they alone made is
refused."""

from __future__ import annotations

import base64

import pytest

from application.ports import PendingMail
from application.tokens import read_refresh_token
from application.views import TokenPair
from domain.errors import EmailTaken
from infrastructure.data_keys import WrappedDataKeys
from infrastructure.key_rotation import KeyState, ServiceKeyRotation
from infrastructure.keyring import CSRF, FINGERPRINTS, REFRESH_TAGS, SEALED_VALUES
from infrastructure.secret_box import AesGcmBox, sealed_version
from infrastructure.service_keys import TAKE_OVER_AFTER
from interfaces.container import Container
from interfaces.pages.guard import CsrfTokens
from interfaces.settings import Settings
from tests.application.test_key_rotation import (
    new_key,
    service,
    signs_in_with_totp,
    still_one_account,
)
from tests.application.test_mfa import code_at
from tests.application.test_use_cases import CLIENT, PASSWORD, verified
from tests.conftest import FakeClock, authenticated, refreshed, run_projections

NONCE = "a-nonce-of-the-browser-000000000000"


def test_new_service_keys_take_over_and_the_old_ones_go_once_nothing_needs_them(
    settings: Settings, clock: FakeClock
) -> None:
    key = new_key()
    with service(settings, clock, key) as first:
        verified(first)
        tokens = first.login.log_in("ada", PASSWORD, CLIENT)
        assert isinstance(tokens, TokenPair)
        claims = authenticated(first, tokens.access_token)
        enrollment = first.mfa.enroll(claims)
        first.mfa.confirm(claims, code_at(enrollment.secret, clock.now()))
        verified(first, "bob@example.com", "bob")  # an enrollment left unconfirmed
        bob = first.login.log_in("bob", PASSWORD, CLIENT)
        assert isinstance(bob, TokenPair)
        pending = first.mfa.enroll(authenticated(first, bob.access_token))
        link_mail = verification_mail(first, "bob")  # sealed under version 1, mailed already
        assert first.postman.compose(link_mail) is not None

        session = signs_in_with_totp(first, enrollment.secret, clock, "ada")
        unused = signs_in_with_totp(first, enrollment.secret, clock, "ada")  # never refreshed
        csrf = CsrfTokens(first.csrf_key)
        old_csrf = csrf.token(NONCE, "")
        sealed_before = AesGcmBox(service_keys(first).service_keys(SEALED_VALUES, clock.now))
        old_sealed = sealed_before.seal("a mailed token")

        rotation = first.service_keys
        assert isinstance(rotation, ServiceKeyRotation)
        assert rotation.begin((REFRESH_TAGS, CSRF, SEALED_VALUES)) == [
            REFRESH_TAGS,
            CSRF,
            SEALED_VALUES,
        ]
        assert rotation.begin((REFRESH_TAGS, CSRF, SEALED_VALUES)) == [], "a rerun makes none"
        started = {state.name: state for state in rotation.advance()}
        assert started[SEALED_VALUES].resealed == 0, "not before every process knows version 2"
        assert not any(state.destroyed for state in started.values())

        # Before the new versions take over, the old ones still make everything.
        session = refreshed(first, session).refresh_token
        assert _version(first, session) == 1
        assert "." not in csrf.token(NONCE, "")

        clock.advance(seconds=TAKE_OVER_AFTER.total_seconds() + 1)
        taken_over = {state.name: state for state in rotation.advance()}
        assert taken_over[SEALED_VALUES].resealed == 2, "ada's secret and bob's pending one"
        assert rotation.advance()[2].resealed == 0, "a rerun seals nothing again"
        signs_in_with_totp(first, enrollment.secret, clock, "ada")  # resealed, still opens
        session = refreshed(first, session).refresh_token
        assert _version(first, session) == 2, "a session moves to the new version as it turns"
        assert _version(first, signs_in_with_totp(first, enrollment.secret, clock, "ada")) == 2
        assert csrf.token(NONCE, "").startswith("2.")
        assert csrf.valid(old_csrf, NONCE, "") and csrf.valid(csrf.token(NONCE, ""), NONCE, "")
        assert sealed_version(sealed_before.seal("x"))[0] == 2
        assert sealed_before.open(old_sealed) == "a mailed token"
        assert _version(first, unused) == 1 and read_refresh_token(unused, _tags(first))

        # Old versions verify as long as what they made may live: a mailed token, a day; a
        # refresh token (and a page session), REFRESH_TOKEN_TTL.
        clock.advance(days=7)
        session = refreshed(first, session).refresh_token
        waiting = {state.name: state for state in rotation.advance()}
        assert waiting[SEALED_VALUES].destroyed == [1] and waiting[SEALED_VALUES].done
        assert first.postman.compose(link_mail) is None, "a dead link is not mailed (again)"
        for name in (REFRESH_TAGS, CSRF):
            assert waiting[name].older == [1] and not waiting[name].destroyed
        assert read_refresh_token(unused, _tags(first)) is not None
        signs_in_with_totp(first, enrollment.secret, clock, "ada")  # under version 2 alone

        clock.advance(seconds=settings.refresh_token_ttl - 7 * 86400)
        session = refreshed(first, session).refresh_token
        retired = {state.name: state for state in rotation.advance()}
        for name in (REFRESH_TAGS, CSRF):
            assert retired[name].destroyed == [1] and retired[name].done
        assert not any(state.destroyed for state in rotation.advance()), "idempotent"

    with service(settings, clock, key) as after:  # a process started after the rotation
        refreshed(after, session)
        signs_in_with_totp(after, enrollment.secret, clock, "ada")
        csrf = CsrfTokens(after.csrf_key)
        assert not csrf.valid(old_csrf, NONCE, ""), "the old version's CSRF token is refused"
        assert csrf.valid(csrf.token(NONCE, ""), NONCE, "")
        assert read_refresh_token(unused, _tags(after)) is None, "as are its refresh tokens"
        with pytest.raises(ValueError, match="destroyed"):
            AesGcmBox(service_keys(after).service_keys(SEALED_VALUES, clock.now)).open(old_sealed)
        bob_again = after.login.log_in("bob", PASSWORD, CLIENT)
        assert isinstance(bob_again, TokenPair)
        after.mfa.confirm(  # the enrollment started before the rotation completes after it
            authenticated(after, bob_again.access_token), code_at(pending.secret, clock.now())
        )


def test_a_process_that_has_not_read_the_new_version_checks_its_tokens_at_once(
    settings: Settings, clock: FakeClock
) -> None:
    """Two processes: the one that made the rotation, and one running since before it."""
    key = new_key()
    with service(settings, clock, key) as running, service(settings, clock, key) as other:
        verified(running)
        tokens = running.login.log_in("ada", PASSWORD, CLIENT)
        assert isinstance(tokens, TokenPair)
        rotation = other.service_keys
        assert isinstance(rotation, ServiceKeyRotation)
        rotation.begin()
        clock.advance(seconds=TAKE_OVER_AFTER.total_seconds() + 1)
        turned = refreshed(other, tokens.refresh_token).refresh_token
        assert _version(other, turned) == 2
        refreshed(running, turned)  # names version 2: read from the table at once
        made = CsrfTokens(other.csrf_key).token(NONCE, "s")
        assert CsrfTokens(running.csrf_key).valid(made, NONCE, "s")
        assert not CsrfTokens(running.csrf_key).valid("3." + made[2:], NONCE, "s")
        for forged in ("1." + made[2:], "x." + made[2:], "02." + made[2:], made[2:]):
            assert not CsrfTokens(running.csrf_key).valid(forged, NONCE, "s"), forged
        # A token names its version only from 2 on, and only a version that exists checks it.
        raw = base64.urlsafe_b64decode(turned + "=" * (-len(turned) % 4))
        for version in (0, 1, 3, 65535):
            renamed = raw[:-18] + version.to_bytes(2, "big") + raw[-16:]
            token = base64.urlsafe_b64encode(renamed).rstrip(b"=").decode()
            assert read_refresh_token(token, _tags(running)) is None, version  # type: ignore[arg-type]


def service_keys(container: object) -> WrappedDataKeys:
    keys = container.log.keys  # type: ignore[attr-defined]
    assert isinstance(keys, WrappedDataKeys)
    return keys


def _tags(container: object) -> object:
    return container.sessions._key  # type: ignore[attr-defined]


def _version(container: object, token: str) -> int:
    read = read_refresh_token(token, _tags(container))  # type: ignore[arg-type]
    assert read is not None
    return read.version


def test_claims_are_made_anew_under_a_new_fingerprint_key_and_no_address_registers_twice(
    settings: Settings, clock: FakeClock
) -> None:
    key = new_key()
    with service(settings, clock, key) as first, service(settings, clock, key) as stale:
        verified(first)
        verified(first, "bob@example.com", "bob")
        first.erasure.erase("bob", "test")  # released claims: the address is free again
        run_projections(first)  # ada's row fingerprinted under version 1
        assert stale.log.keys.fingerprints("email", "ada@example.com")  # read before the rotation
        rotation = first.service_keys
        assert isinstance(rotation, ServiceKeyRotation)
        assert rotation.begin((FINGERPRINTS,)) == [FINGERPRINTS]

        # Both processes, the one that still knows version 1 alone too, refuse what is taken.
        for container in (first, stale):
            still_one_account(container)
        verified(first, "carol@example.com", "carol")  # claimed under both versions at once
        with pytest.raises(EmailTaken):
            stale.registration.register("carol@example.com", "carol2", PASSWORD)
        waiting = state_of(rotation, FINGERPRINTS)
        assert waiting.older == [1] and waiting.resealed == 0, "not before it takes over"
        keys = first.log.keys
        assert [fp[:2] for fp in keys.fingerprints("login", "ada")] == [
            "2:",
            keys.fingerprint("login", "ada")[:2],
        ]
        assert ":" not in keys.fingerprint("login", "ada"), "rate limits: version 1 until then"

        clock.advance(seconds=TAKE_OVER_AFTER.total_seconds() + 1)
        assert keys.fingerprint("login", "ada").startswith("2:")
        assert stale.log.keys.fingerprint("login", "ada") == keys.fingerprint("login", "ada")
        done = state_of(rotation, FINGERPRINTS)
        assert done.resealed == 1, "ada's claims made anew; carol's were, bob is erased"
        assert done.destroyed == [1] and done.done
        assert state_of(rotation, FINGERPRINTS).resealed == 0, "a rerun claims nothing"

    with service(settings, clock, key) as after:
        assert [len(fp.split(":")) for fp in after.log.keys.fingerprints("email", "x")] == [2]
        still_one_account(after)
        with pytest.raises(EmailTaken):
            after.registration.register("carol@example.com", "carol2", PASSWORD)
        assert after.log.account_for_login("ada@example.com") is not None
        assert after.log.account_for_login("carol") is not None
        assert signs_in(after, "ada@example.com") and signs_in(after, "carol")
        verified(after, "bob@example.com", "bob")  # the erased account's address, free again
        after.erasure.erase("carol", "test")
        verified(after, "carol@example.com", "carol")  # released under the new version too
        run_projections(after)  # the read models and the trail take the rotation's events
        ada = after.log.account_for_login("ada")
        assert ada is not None
        trail = after.read_side.activity(ada.id, None, 50).entries
        assert [entry.details for entry in trail if entry.type == "ClaimsRekeyed"] == [{}]
        # The admin's exact search finds every account, with no rebuild of the read model:
        # rows made before the rotation were fingerprinted anew with their claims.
        for login in ("ADA@example.com", "ada", "carol@example.com", "carol", "bob"):
            assert len(after.read_side.accounts(login)) == 1, login
        rows = after.projector("accounts").projection.view.rows("accounts", {})  # type: ignore[attr-defined]
        assert {row["email_fingerprint"].split(":")[0] for row in rows} == {"2"}


def verification_mail(container: Container, login: str) -> PendingMail:
    account = container.log.account_for_login(login)
    assert account is not None
    version = next(
        event.originator_version
        for event in container.log.events.get(account.id)
        if type(event).__name__ == "EmailVerificationRequested"
    )
    return PendingMail(key="a delivery", originator_id=account.id, originator_version=version)


def state_of(rotation: ServiceKeyRotation, name: str) -> KeyState:
    return next(state for state in rotation.advance() if state.name == name)


def signs_in(container: Container, login: str) -> bool:
    return isinstance(container.login.log_in(login, PASSWORD, CLIENT), TokenPair)
