"""TOTP MFA (RFC 6238) and recovery codes, against both stores."""

from __future__ import annotations

import threading
from datetime import datetime

import pyotp
import pytest

from application.factors.reauthentication import Proof
from application.ports import AccessClaims
from application.views import Client, MfaChallenge, TokenPair
from domain.errors import (
    AccountLocked,
    InvalidMfaCode,
    InvalidMfaToken,
    MfaAlreadyEnabled,
    MfaNotEnabled,
    ReauthenticationRequired,
    WrongPassword,
)
from interfaces.container import Container
from tests.application.test_use_cases import PASSWORD, verified
from tests.conftest import FakeClock, authenticated, event_count

CLIENT = Client()


def code_at(secret: str, at: datetime, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(at.timestamp() + 30 * steps)


def signed_in(container: Container) -> AccessClaims:
    tokens = container.login.log_in("ada", PASSWORD, CLIENT)
    assert isinstance(tokens, TokenPair)
    return authenticated(container, tokens.access_token)


def with_mfa(container: Container, clock: FakeClock) -> tuple[str, list[str]]:
    verified(container)
    claims = signed_in(container)
    enrollment = container.mfa.enroll(claims)
    codes = container.mfa.confirm(claims, code_at(enrollment.secret, clock.now()))
    clock.advance(seconds=30)  # the confirming code is spent: move to a fresh step
    return enrollment.secret, codes


def challenge(container: Container) -> str:
    result = container.login.log_in("ada", PASSWORD, CLIENT)
    assert isinstance(result, MfaChallenge)
    return result.mfa_token


def test_enrolment_gives_a_secret_and_an_otpauth_uri(container: Container) -> None:
    verified(container)
    enrollment = container.mfa.enroll(signed_in(container))
    assert enrollment.otpauth_uri.startswith("otpauth://totp/")
    assert f"secret={enrollment.secret}" in enrollment.otpauth_uri
    stored = container.log.recorder.select_notifications(start=1, limit=100)
    assert all(enrollment.secret.encode() not in n.state for n in stored)


def test_mfa_is_off_until_a_code_confirms_it(container: Container, clock: FakeClock) -> None:
    verified(container)
    claims = signed_in(container)
    container.mfa.enroll(claims)
    assert isinstance(container.login.log_in("ada", PASSWORD, CLIENT), TokenPair)
    with pytest.raises(InvalidMfaCode):
        container.mfa.confirm(claims, "000000")


def test_confirming_returns_ten_single_use_recovery_codes_stored_hashed(
    container: Container, clock: FakeClock
) -> None:
    _, codes = with_mfa(container, clock)
    assert len(codes) == 10 == len(set(codes))
    stored = container.log.recorder.select_notifications(start=1, limit=100)
    assert all(code.encode() not in n.state for n in stored for code in codes)


def test_login_asks_for_the_second_factor_and_a_totp_code_finishes_it(
    container: Container, clock: FakeClock
) -> None:
    secret, _ = with_mfa(container, clock)
    token = challenge(container)
    tokens = container.login.complete_mfa(token, code_at(secret, clock.now()), CLIENT)
    authenticated(container, tokens.access_token)


def test_the_code_may_come_with_the_password_in_one_step(
    container: Container, clock: FakeClock
) -> None:
    secret, _ = with_mfa(container, clock)
    result = container.login.log_in("ada", PASSWORD, CLIENT, otp=code_at(secret, clock.now()))
    assert isinstance(result, TokenPair)


@pytest.mark.parametrize("steps", [-1, 1])
def test_one_step_of_clock_drift_is_accepted(
    container: Container, clock: FakeClock, steps: int
) -> None:
    secret, _ = with_mfa(container, clock)
    clock.advance(seconds=60)
    container.login.complete_mfa(challenge(container), code_at(secret, clock.now(), steps), CLIENT)


@pytest.mark.parametrize("steps", [-2, 2])
def test_codes_two_steps_away_are_refused(
    container: Container, clock: FakeClock, steps: int
) -> None:
    secret, _ = with_mfa(container, clock)
    clock.advance(seconds=120)
    with pytest.raises(InvalidMfaCode):
        container.login.complete_mfa(
            challenge(container), code_at(secret, clock.now(), steps), CLIENT
        )


def test_a_code_accepted_once_is_refused_if_replayed(
    container: Container, clock: FakeClock
) -> None:
    secret, _ = with_mfa(container, clock)
    code = code_at(secret, clock.now())
    container.login.complete_mfa(challenge(container), code, CLIENT)
    with pytest.raises(InvalidMfaCode):
        container.login.complete_mfa(challenge(container), code, CLIENT)


def test_two_simultaneous_uses_of_one_code_let_at_most_one_in(
    container: Container, clock: FakeClock
) -> None:
    secret, _ = with_mfa(container, clock)
    code = code_at(secret, clock.now())
    tokens = [challenge(container) for _ in range(4)]
    barrier = threading.Barrier(4)
    results: list[object] = []

    def attempt(token: str) -> None:
        barrier.wait()
        try:
            results.append(container.login.complete_mfa(token, code, CLIENT))
        except InvalidMfaCode as error:
            results.append(error)

    threads = [threading.Thread(target=attempt, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(isinstance(r, TokenPair) for r in results) == 1


def test_a_recovery_code_works_once(container: Container, clock: FakeClock) -> None:
    _, codes = with_mfa(container, clock)
    container.login.complete_mfa(challenge(container), codes[0].upper().replace("-", " "), CLIENT)
    with pytest.raises(InvalidMfaCode):
        container.login.complete_mfa(challenge(container), codes[0], CLIENT)
    container.login.complete_mfa(challenge(container), codes[1], CLIENT)


def test_wrong_codes_count_towards_the_lock(container: Container, clock: FakeClock) -> None:
    with_mfa(container, clock)
    token = challenge(container)
    for _ in range(5):
        with pytest.raises(InvalidMfaCode):
            container.login.complete_mfa(token, "123456", CLIENT)
    with pytest.raises(AccountLocked):
        container.login.complete_mfa(token, "123456", CLIENT)


def test_the_mfa_token_expires_after_five_minutes(container: Container, clock: FakeClock) -> None:
    secret, _ = with_mfa(container, clock)
    token = challenge(container)
    clock.advance(minutes=5)
    with pytest.raises(InvalidMfaToken):
        container.login.complete_mfa(token, code_at(secret, clock.now()), CLIENT)


def test_an_access_token_is_no_mfa_token_and_an_mfa_token_is_no_access_token(
    container: Container, clock: FakeClock
) -> None:
    from domain.errors import InvalidAccessToken

    secret, _ = with_mfa(container, clock)
    tokens = container.login.log_in("ada", PASSWORD, CLIENT, otp=code_at(secret, clock.now()))
    assert isinstance(tokens, TokenPair)
    with pytest.raises(InvalidMfaToken):
        container.login.complete_mfa(tokens.access_token, "123456", CLIENT)
    with pytest.raises(InvalidAccessToken):
        authenticated(container, challenge(container))


def test_disabling_needs_the_password_and_a_code(container: Container, clock: FakeClock) -> None:
    """Both factors (ASVS 5.0 V7.5.1): a stolen token with a phone, or with the password,
    alone strips nothing. A missing factor changes nothing; a wrong one records only the
    failure."""
    secret, _ = with_mfa(container, clock)
    claims = authenticated(
        container,
        container.login.complete_mfa(
            challenge(container), code_at(secret, clock.now()), CLIENT
        ).access_token,
    )
    clock.advance(seconds=30)
    before = event_count(container)
    with pytest.raises(InvalidMfaCode):
        container.mfa.disable(claims, Proof(password=PASSWORD))
    with pytest.raises(ReauthenticationRequired):
        container.mfa.disable(claims, Proof(code=code_at(secret, clock.now())))
    assert event_count(container) == before
    with pytest.raises(WrongPassword):
        container.mfa.disable(claims, Proof("not my password", code_at(secret, clock.now())))
    with pytest.raises(InvalidMfaCode):
        container.mfa.disable(claims, Proof(PASSWORD, "000000"))
    assert event_count(container) == before + 2  # the two LoginFailed, nothing else
    container.mfa.disable(claims, Proof(PASSWORD, code_at(secret, clock.now())))
    assert isinstance(container.login.log_in("ada", PASSWORD, CLIENT), TokenPair)
    with pytest.raises(MfaNotEnabled):
        container.mfa.disable(claims, Proof(PASSWORD, code_at(secret, clock.now())))


def test_enrolling_twice_is_refused_while_on(container: Container, clock: FakeClock) -> None:
    secret, _ = with_mfa(container, clock)
    tokens = container.login.log_in("ada", PASSWORD, CLIENT, otp=code_at(secret, clock.now()))
    assert isinstance(tokens, TokenPair)
    claims = authenticated(container, tokens.access_token)
    with pytest.raises(MfaAlreadyEnabled):
        container.mfa.enroll(claims)


def test_a_password_reset_leaves_the_second_factor_on(
    container: Container, clock: FakeClock
) -> None:
    """A mailbox alone opens no account: after a reset the login still asks for the code
    (OWASP ASVS 5.0 6.4.3)."""
    from tests.application.test_account_security import NEW, reset_link, token_of

    secret, _ = with_mfa(container, clock)
    container.passwords.forget("ada@example.com")
    container.passwords.reset(token_of(reset_link(container, "ada@example.com")), NEW)
    clock.advance(seconds=30)
    assert isinstance(container.login.log_in("ada", NEW, CLIENT), MfaChallenge)
    tokens = container.login.log_in("ada", NEW, CLIENT, otp=code_at(secret, clock.now()))
    assert isinstance(tokens, TokenPair)
