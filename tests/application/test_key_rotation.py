"""SECRET_KEY rotates without downtime: a new key with the old one in SECRET_KEY_FALLBACKS, then
`rekey`, then the new key alone. Throughout, every account signs in by email and username, its
TOTP and its sessions work, and no address already in use registers again. A key that opens
nothing in the store is refused before the service does anything."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import uuid4

import msgspec
import pytest

from application.views import MfaChallenge, TokenPair
from domain.errors import EmailTaken, UsernameTaken
from infrastructure.data_keys import WrappedDataKeys
from infrastructure.keyring import WrongSecretKey, derive
from interfaces.container import Container, build
from interfaces.settings import Settings
from tests.application.test_mfa import code_at
from tests.application.test_use_cases import CLIENT, PASSWORD, verified
from tests.conftest import FakeClock, authenticated, refreshed


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


@contextmanager
def service(
    settings: Settings, clock: FakeClock, key: str, fallbacks: tuple[str, ...] = ()
) -> Iterator[Container]:
    keyed = msgspec.structs.replace(
        settings, secret_key=key, secret_key_fallbacks=",".join(fallbacks)
    )
    container = build(keyed, clock=clock)
    container.mail_broker.start_worker(threads=1, poll_ms=20)  # as the container fixture does
    try:
        yield container
    finally:
        container.close()


def signs_in_with_totp(container: Container, secret: str, clock: FakeClock, login: str) -> str:
    """Signs in with the password and a TOTP code; the session's refresh token."""
    clock.advance(seconds=30)  # a fresh step: each code is good once
    challenge = container.login.log_in(login, PASSWORD, CLIENT)
    assert isinstance(challenge, MfaChallenge)
    tokens = container.login.complete_mfa(challenge.mfa_token, code_at(secret, clock.now()), CLIENT)
    assert isinstance(tokens, TokenPair)
    return tokens.refresh_token


def still_one_account(container: Container) -> None:
    with pytest.raises(EmailTaken):
        container.registration.register("ADA@example.com", "ada2", "entirely different words 42")
    with pytest.raises(UsernameTaken):
        container.registration.register("other@example.com", "ada", "entirely different words 42")


def rewrap(container: Container) -> tuple[int, int]:
    keys = container.log.keys
    assert isinstance(keys, WrappedDataKeys)
    done = keys.rekey()
    return done.rewrapped, done.current


def test_a_rotation_with_a_fallback_then_without_keeps_every_account_and_session(
    settings: Settings, clock: FakeClock
) -> None:
    old, new = new_key(), new_key()
    with service(settings, clock, old) as before:
        verified(before)
        tokens = before.login.log_in("ada", PASSWORD, CLIENT)
        assert isinstance(tokens, TokenPair)
        claims = authenticated(before, tokens.access_token)
        enrollment = before.mfa.enroll(claims)
        before.mfa.confirm(claims, code_at(enrollment.secret, clock.now()))
        refresh = signs_in_with_totp(before, enrollment.secret, clock, "ada@example.com")
        keys_before = rewrap(before)
        assert keys_before[0] == 0, "nothing to wrap again before a rotation"

    with service(settings, clock, new, fallbacks=(old,)) as during:
        refresh = refreshed(during, refresh).refresh_token  # a token tagged before the rotation
        refresh_during = signs_in_with_totp(during, enrollment.secret, clock, "ada@example.com")
        still_one_account(during)
        rewrapped, current = rewrap(during)
        assert rewrapped == keys_before[1] and rewrapped > 0
        assert rewrap(during) == (0, rewrapped + current), "a second run wraps nothing"

    with service(settings, clock, new) as after:
        refreshed(after, refresh)
        refreshed(after, refresh_during)
        signs_in_with_totp(after, enrollment.secret, clock, "ada")
        still_one_account(after)
        account = after.log.account_for_login("ada@example.com")
        assert account is not None and account.email == "ada@example.com"

    with pytest.raises(WrongSecretKey, match="SECRET_KEY"):
        build(msgspec.structs.replace(settings, secret_key=old), clock=clock)


def test_a_key_that_opens_nothing_in_the_store_is_refused(
    settings: Settings, clock: FakeClock
) -> None:
    written_with = new_key()
    with service(settings, clock, written_with) as first:
        verified(first)
    for wrong in ((new_key(), ()), (new_key(), (new_key(),))):
        with pytest.raises(WrongSecretKey, match="SECRET_KEY"):
            build(
                msgspec.structs.replace(
                    settings, secret_key=wrong[0], secret_key_fallbacks=",".join(wrong[1])
                ),
                clock=clock,
            )
    with service(settings, clock, written_with) as again:  # refused without harm
        assert again.log.account_for_login("ada") is not None


def test_a_store_from_before_the_key_table_kept_its_keys_keeps_its_fingerprints(
    settings: Settings, clock: FakeClock
) -> None:
    """Its service keys were derived from SECRET_KEY on every start: the first start of this
    release derives the same ones (from whichever configured key opens the store's data keys)
    and keeps them, so claims made before still name their addresses, across a rotation too."""
    old = new_key()
    with service(settings, clock, old) as first:
        first.log.keys.seal(uuid4(), b"email", b"someone's")  # a person's key in the table
    forget_service_keys(settings, clock, old)  # as a store written before they were kept
    with service(settings, clock, old) as before:
        as_then = hmac.new(
            derive(base64.urlsafe_b64decode(old), b"tessera fingerprints"),
            b"email\x00ada@example.com",
            hashlib.sha256,
        ).hexdigest()
        assert before.log.keys.fingerprint("email", "ada@example.com") == as_then
        verified(before)
    forget_service_keys(settings, clock, old)
    with service(settings, clock, new_key(), fallbacks=(old,)) as upgraded:
        still_one_account(upgraded)
        assert upgraded.log.account_for_login("ada@example.com") is not None


def forget_service_keys(settings: Settings, clock: FakeClock, key: str) -> None:
    """Deletes the service keys' rows, as a store written before they were kept has none."""
    from infrastructure.data_keys import PostgresDataKeyTable, SqliteDataKeyTable, service_owner
    from infrastructure.keyring import SERVICE_KEYS

    with service(settings, clock, key) as container:
        keys = container.log.keys
        assert isinstance(keys, WrappedDataKeys)
        table = keys._table
        for owner in (service_owner(name) for name in SERVICE_KEYS):
            if isinstance(table, SqliteDataKeyTable):
                table._conn.execute("DELETE FROM data_keys WHERE owner = ?", (str(owner),))
            else:
                assert isinstance(table, PostgresDataKeyTable)
                with table._datastore.transaction(commit=True) as c:
                    c.execute(f"DELETE FROM {table.table} WHERE owner = %s", (owner,))  # noqa: S608
