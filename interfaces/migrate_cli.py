"""`tessera migrate`: copies a store written before personal values were sealed into the store
the settings name (DATA_DIR or DATABASE_URL), sealing them on the way (application.persistence.migration).

Run it with the service stopped on both sides. The target must hold no events yet. Its mail
outbox and its `erasures` projection are set to the end of what was copied (every mail of the
old store was sent by the old service); the read models (accounts, sessions, audit_log) build
themselves from the events when the service starts, or with `tessera projector rebuild`.
"""

from __future__ import annotations

import argparse
import hmac
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from eventsourcing.persistence import Tracking

from application.mail.outbox import MailOutbox
from application.persistence.migration import MigrationRefused, copy_events, old_format_mapper
from application.privacy.erasure import ErasureFinisher
from infrastructure.source_store import open_source
from interfaces.container import Container, build, given_signing_keys
from interfaces.progress import progress
from interfaces.settings import Settings, load_settings

# Read models a migration leaves to the projectors, and those it sets to the end: a replay of
# the outbox would send every old mail again, and the old store holds no erasure to finish.
SET_TO_THE_END = (MailOutbox.name, ErasureFinisher.name)


def register(commands: Any) -> None:
    migrate = commands.add_parser(
        "migrate",
        help="copy a store written before personal values were sealed into this one, sealing them",
    )
    source = migrate.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-data-dir", type=Path, help="the old DATA_DIR (SQLite)")
    source.add_argument("--from-database-url", help="the old DATABASE_URL (PostgreSQL)")
    migrate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    old_dir: Path | None = args.from_data_dir
    try:
        if old_dir is not None:
            _carry_keys(old_dir, settings)
        source = open_source(args.from_database_url, old_dir)
    except (FileNotFoundError, MigrationRefused) as refused:
        print(f"migrate: {refused}", file=sys.stderr)
        return 2
    container = build(settings)
    try:
        return _migrate(container, source)
    except MigrationRefused as refused:
        print(f"migrate: {refused}", file=sys.stderr)
        return 2
    finally:
        container.close()
        source.datastore.close()  # type: ignore[attr-defined]


def _migrate(container: Container, source: Any) -> int:
    target = container.log
    if target.recorder.max_notification_id():
        raise MigrationRefused("the target store holds events already: migrate into an empty one")
    held = []
    started = time.perf_counter()
    try:
        # While the outbox's lease is ours, no projector of the target's sends a mail for an
        # event copied from the old store before its position is set past them.
        for name in SET_TO_THE_END:
            projector = container.projector(name)
            if not projector.lease.held():
                raise MigrationRefused(f"{name} is being projected by another process: stop it")
            held.append(projector)
        total = source.max_notification_id() or 0
        with progress("migrate", total, "events") as advance:
            copied = copy_events(source, old_format_mapper(), target, advance)
        # What this command recorded, not what readers may read yet: a transaction open
        # anywhere in the cluster holds the readable end back, and an outbox set there would
        # mail the copied events' verification and reset links again.
        last = target.last_recorded()
        if last:
            for projector in held:
                projector.projection.view.insert_tracking(Tracking(target.name, last))
    finally:
        for projector in held:
            projector.lease.release()
    seconds = time.perf_counter() - started
    print(
        f"migrated {copied} events in {seconds:.2f}s; the accounts, sessions and audit_log"
        " read models build from them when the service starts"
    )
    return 0


def _carry_keys(old_dir: Path, settings: Settings) -> None:
    """On the embedded default the keys live in DATA_DIR, made on first use: a new DATA_DIR
    would make new ones. SECRET_KEY seals the TOTP secrets the events carry, so the old one is
    copied (and the signing keys, so tokens issued by the old service stay valid); a different
    one already in the target is refused."""
    target = settings.data_path
    if settings.secret_key is None and (old_dir / "secret.key").is_file():
        _carry(old_dir / "secret.key", target / "secret.key", must_match=True)
    for kind, pem, pem_file in given_signing_keys(settings):
        if not (pem or pem_file):
            _carry(old_dir / kind.dev_file, target / kind.dev_file, must_match=False)


def _carry(old: Path, new: Path, must_match: bool) -> None:
    if not old.is_file() or old.resolve() == new.resolve():
        return
    if new.exists():
        if must_match and not hmac.compare_digest(old.read_bytes(), new.read_bytes()):
            raise MigrationRefused(
                f"{new} differs from {old}: the old store's TOTP secrets are sealed under the old"
                " key (remove the new one, or set SECRET_KEY to the old one)"
            )
        return
    new.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(old, new)
    new.chmod(0o600)
