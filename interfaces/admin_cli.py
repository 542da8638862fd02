"""`tessera admin ...` and `tessera projector rebuild NAME`: operators' commands, run with the
same settings as the server (DATA_DIR or DATABASE_URL and REDIS_URL)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from application.persistence.event_log import LogHeldBack
from domain.errors import AccountNotFound, Invalid
from infrastructure.data_keys import WrappedDataKeys
from infrastructure.key_rotation import KeyState
from infrastructure.key_store import KeysNotMoved, describe, move_keys
from infrastructure.keyring import FINGERPRINTS
from infrastructure.rebuild import rebuild as replay
from interfaces.client_cli import add_client_commands, run_client_command
from interfaces.container import Container, build
from interfaces.progress import progress
from interfaces.settings import Settings, load_settings
from interfaces.webhook_cli import add_webhook_commands, run_webhook_command

REBUILDABLE = ("accounts", "sessions", "audit_log")  # the mail outbox would send every mail again


def add_commands(commands: Any) -> None:
    admin = commands.add_parser("admin", help="administer accounts (each change names you)")
    admin.add_argument(
        "--operator",
        default=f"cli:{getpass.getuser()}",
        help="who the events name as having made the change (default: cli:$USER)",
    )
    actions = admin.add_subparsers(dest="action", required=True)
    for name, text in (("grant-role", "grant a role"), ("revoke-role", "revoke a role")):
        action = actions.add_parser(name, help=f"{text} (admin or auditor)")
        action.add_argument("login", help="email, username or account id")
        action.add_argument("role", choices=("admin", "auditor"))
    lock = actions.add_parser("lock", help="lock an account (until unlocked, or --until)")
    lock.add_argument("login", help="email, username or account id")
    lock.add_argument("--until", type=datetime.fromisoformat, help="ISO 8601 time")
    for name, text in (
        ("unlock", "lift a lock"),
        ("disable", "disable an account and end its sessions"),
        ("enable", "enable a disabled account"),
    ):
        actions.add_parser(name, help=text).add_argument(
            "login", help="email, username or account id"
        )
    erase = actions.add_parser(
        "erase",
        help="forget an account's person for good (crypto-shredding; see docs/audit/erasure.md)",
    )
    erase.add_argument("login", help="email, username or account id")
    erase.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    export = actions.add_parser(
        "export", help="everything held about an account's person, as one JSON document"
    )
    export.add_argument("login", help="email, username or account id")
    export.add_argument("--output", type=Path, help="write to this file (default: stdout)")
    rekey = actions.add_parser(
        "rekey",
        help="wrap every key the store keeps under SECRET_KEY (after it replaced the keys now "
        "in SECRET_KEY_FALLBACKS), and move on any replacement of the service's own keys",
    )
    rekey.add_argument(
        "--service-keys",
        action="store_true",
        help="after a compromise: replace the service's own keys (refresh-token tags, CSRF, "
        "sealed TOTP secrets) with new versions; run rekey again until it says the old "
        "versions are destroyed (see docs/keys.md)",
    )
    actions.add_parser(
        "move-keys",
        help="move the data keys and the erasure ledger from beside the events into the key "
        "store KEY_STORE_URL names (every tessera process stopped)",
    )
    actions.add_parser(
        "reapply-erasures",
        help="after a restore: erase again the accounts the erasure ledger names and the event "
        "store does not, destroy again the keys of erased accounts, report accounts whose key "
        "is lost (reads the whole log)",
    )
    listing = actions.add_parser("list", help="list accounts (in the order they registered)")
    listing.add_argument(
        "--search", default="", help="an exact email or username (any case): only its account"
    )
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true", help="JSON Lines instead of a table")
    add_client_commands(actions)
    add_webhook_commands(actions)
    admin.set_defaults(run=administer)


def administer(args: argparse.Namespace) -> int:
    if args.action == "move-keys":
        return _move_keys(load_settings())
    container = build(load_settings(), create=False)
    try:
        return _administer(container, args)
    except AccountNotFound:
        print(f"no account {args.login!r}", file=sys.stderr)
        return 2
    except Invalid as invalid:
        print(str(invalid), file=sys.stderr)
        return 2
    finally:
        container.close()


def _administer(container: Container, args: argparse.Namespace) -> int:
    admin = container.administration
    operator: str = args.operator
    if args.action == "list":
        return _list(container, args)
    if args.action == "client":
        return run_client_command(container, args)
    if args.action == "webhook":
        return run_webhook_command(container, args)
    if args.action == "erase":
        return _erase(container, args.login, operator, args.yes)
    if args.action == "export":
        return _export(container, args.login, args.output)
    if args.action == "rekey":
        return _rekey(container, args.service_keys)
    if args.action == "reapply-erasures":
        return _reapply_erasures(container)
    changes = {
        "grant-role": lambda: admin.grant_role(args.login, args.role, operator),
        "revoke-role": lambda: admin.revoke_role(args.login, args.role, operator),
        "lock": lambda: admin.lock(args.login, operator, args.until),
        "unlock": lambda: admin.unlock(args.login, operator),
        "disable": lambda: admin.disable(args.login, operator),
        "enable": lambda: admin.enable(args.login, operator),
    }
    changed = changes[args.action]()
    account = admin.account(args.login)
    print(f"{args.action} {account.username}: {'done' if changed else 'nothing to change'}")
    return 0


def _rekey(container: Container, new_service_keys: bool) -> int:
    keys = container.log.keys
    assert isinstance(keys, WrappedDataKeys)
    rotation = container.service_keys
    assert rotation is not None
    if new_service_keys:
        begun = rotation.begin()
        print(f"service keys: new versions of {', '.join(begun) or 'none (already rotating)'}")
    done = keys.rekey()
    print(
        f"rekey: {done.rewrapped} keys wrapped again under SECRET_KEY, {done.current} were "
        f"already, {done.forgotten} forgotten meanwhile (erased)"
    )
    if done.rewrapped:
        print(
            "SECRET_KEY_FALLBACKS are no longer needed once every process runs with this "
            "SECRET_KEY: restart the last of them, run rekey again, and remove the fallbacks "
            "when it wraps nothing again"
        )
    else:
        print("every key the store keeps opens with SECRET_KEY alone: SECRET_KEY_FALLBACKS can go")
    with progress("service keys", None, "accounts") as advance:
        states = rotation.advance(advance)
    for state in states:
        if state.newest > 1:  # a key never replaced has nothing to report
            print(_service_key_report(state))
    return 0


def _service_key_report(state: KeyState) -> str:
    said = f"{state.name}: version {state.newest}"
    said += f" makes new values from {state.takes_over.isoformat(timespec='seconds')}"
    if state.resealed and state.name == FINGERPRINTS:
        said += f"; claims of {state.resealed} accounts made anew under it"
    elif state.resealed:
        said += f"; {state.resealed} TOTP secrets sealed again under it"
    if state.destroyed:
        said += f"; destroyed version {', '.join(map(str, state.destroyed))}"
    if state.done:
        return said + "; no older version is left"
    older = ", ".join(map(str, state.older))
    assert state.retire_at is not None
    if state.left:
        return said + (
            f"; {state.left} accounts changed meanwhile and are still keyed under version "
            f"{older} alone: run rekey again"
        )
    takeover = state.takes_over.isoformat(timespec="seconds")
    if state.waiting and state.name == FINGERPRINTS:
        return said + (
            f"; version {older} still names every claim made before: run rekey again after "
            f"{takeover} to claim them anew and destroy it"
        )
    if state.waiting:
        return said + (
            f"; run rekey again after {takeover} to seal the TOTP secrets again under it, and "
            f"after {state.retire_at.isoformat(timespec='seconds')} to destroy version {older}"
        )
    return said + (
        f"; version {older} still checks what it made: run rekey again after "
        f"{state.retire_at.isoformat(timespec='seconds')} to destroy it"
    )


def _move_keys(settings: Settings) -> int:
    """Before any container is built: one would refuse the empty key store (KeyStoreEmpty)."""
    try:
        moved = move_keys(
            settings.database_url, settings.key_store_url, settings.data_path / "keys.sqlite"
        )
    except KeysNotMoved as refused:
        print(f"move-keys: {refused}", file=sys.stderr)
        return 2
    print(f"move-keys: {moved} keys and tombstones moved to {describe(settings.key_store_url)}")
    return 0


def _reapply_erasures(container: Container) -> int:
    check = container.after_restore.check_keys()
    print(
        f"reapply-erasures: {len(check.reapplied)} erasures re-applied to the event store, "
        f"{len(check.forgotten_again)} keys of erased accounts destroyed again, "
        f"{len(check.lost)} accounts without a key"
    )
    for account_id in check.reapplied:
        print(f"re-applied the erasure of {account_id}")
    for account_id in check.forgotten_again:
        print(f"destroyed again the key of {account_id}")
    for account_id in check.lost:
        print(f"no key for {account_id}: not erased, its personal values cannot be opened")
    _caught_up(container, "accounts", "sessions", "audit_log", "erasures")
    return 1 if check.lost else 0


def _caught_up(container: Container, *names: str) -> None:
    """Without a projector running (the embedded default with no server up), brings these read
    models up to date; with one running, it does that itself."""
    for name in names:
        projector = container.projector(name)
        if projector.lease.held():
            try:
                projector.catch_up()
            finally:
                projector.lease.release()


def _erase(container: Container, login: str, operator: str, confirmed: bool) -> int:
    if not confirmed:
        print("erasure cannot be undone: add --yes to confirm", file=sys.stderr)
        return 2
    account_id = container.erasure.erase(login, operator)
    _caught_up(container, "accounts", "sessions", "audit_log", "erasures")
    print(f"erased account {account_id}")
    return 0


def _export(container: Container, login: str, output: Path | None) -> int:
    account = container.log.account_named(login)
    if account is None:
        raise AccountNotFound(login)
    _caught_up(container, "sessions")
    pieces = container.personal_data.document(account.id)
    if output is None:
        for piece in pieces:
            sys.stdout.write(piece)
        sys.stdout.write("\n")
        return 0
    partial = output.with_name(output.name + ".partial")
    with partial.open("w", encoding="utf-8") as file:
        for piece in pieces:
            file.write(piece)
    partial.replace(output)
    return 0


def _list(container: Container, args: argparse.Namespace) -> int:
    _caught_up(container, "accounts")
    accounts = container.read_side.accounts(args.search, "", args.limit)
    if args.json:
        for account in accounts:
            row = {k: v for k, v in vars(account).items()}
            print(json.dumps(row, default=_plain, sort_keys=True))
        return 0
    print(f"{'USERNAME':<24} {'EMAIL':<36} {'ROLES':<16} STATE")
    for account in accounts:
        state = ",".join(
            label
            for label, on in (
                ("disabled", account.disabled),
                ("locked", account.locked),
                ("unverified", not account.email_verified),
                ("mfa", account.mfa_enabled),
            )
            if on
        )
        roles = ",".join(account.roles) or "-"
        print(f"{account.username:<24} {account.email:<36} {roles:<16} {state or 'active'}")
    return 0


def rebuild(args: argparse.Namespace) -> int:
    """Replays every event into an emptied read model. The projection's lease is taken first,
    so no other process applies events meanwhile: stop its projectors (or `tessera serve` on
    the embedded default) if they hold it."""
    container = build(load_settings(), create=False)
    try:
        projector = container.projector(args.name)
        deadline = time.monotonic() + args.wait
        while not projector.lease.held():
            if time.monotonic() > deadline:
                print(
                    f"{args.name} is being projected by another process; stop it and retry",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.5)
        try:
            started = time.perf_counter()
            with progress(f"rebuild {args.name}", container.log.end(), "events") as advance:
                rebuilt = replay(container.log, projector, advance)
            seconds = time.perf_counter() - started
        except LogHeldBack as error:
            print(f"rebuild {args.name} stopped short: {error}", file=sys.stderr)
            return 1
        finally:
            projector.lease.release()
        print(
            f"rebuilt {args.name}: {rebuilt.events} of the log's {rebuilt.recorded} events "
            f"(positions up to {rebuilt.end}) in {seconds:.2f}s"
        )
        return 0 if rebuilt.whole else 1
    finally:
        container.close()


def _plain(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
