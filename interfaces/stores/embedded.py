"""The embedded default's stores: SQLite files beside the event store, in one process."""

from __future__ import annotations

from eventsourcing.sqlite import SQLiteTrackingRecorder

from application.mail.outbox import MailOutbox
from application.persistence.event_log import EventLog
from application.privacy.erasure import ErasureFinisher
from application.webhooks.feed import WebhookFeed
from infrastructure.data_keys import DataKeyTable, SqliteDataKeyTable, WrappedDataKeys
from infrastructure.lease import FileLease
from infrastructure.mail_ledger import SqliteMailLedger
from infrastructure.one_time_values import SqliteOneTimeValues
from infrastructure.persistence import Database
from infrastructure.projector import Lease
from infrastructure.rate_limit import LocalRateLimiter
from infrastructure.read_store import SqliteAccounts, SqliteAuditLog, SqliteSessions
from infrastructure.refresh_chains import SqliteRefreshChains
from infrastructure.revocation import SqliteRevocationList
from infrastructure.webhook_ledger import SqliteWebhookLedger
from interfaces.stores.roles import SharedState, Stores


def embedded_stores(
    database: Database,
    log: EventLog,
    keys: WrappedDataKeys,
    shared: SharedState | None,
    key_store: DataKeyTable | None = None,
) -> Stores:
    """`shared`: Redis's, when REDIS_URL names one; otherwise files here (one process).
    `key_store`: KEY_STORE_URL's, when it names one; otherwise a file here."""
    data = database.sqlite_path.parent
    recorded = log.recorder.max_notification_id() or 0
    keys.keep_in(key_store or SqliteDataKeyTable(data / "keys.sqlite"), recorded)

    def lease(name: str) -> Lease:
        # Released by the operating system when its holder exits, however it exits.
        return FileLease(database.sqlite_path.with_name(f"{name}.lease"))

    def in_files() -> SharedState:
        revocations = SqliteRevocationList(data / "revocations.sqlite")
        return SharedState(
            revocations=revocations,
            chains=SqliteRefreshChains(data / "revocations.sqlite"),
            one_time_values=SqliteOneTimeValues(data / "passkey_challenges.sqlite"),
            limiter=LocalRateLimiter(),
            expiring=(revocations,),
        )

    return Stores(
        shared=shared or in_files(),
        mail_ledger=database.sqlite_tracking_recorder(MailOutbox.name, SqliteMailLedger),
        webhook_ledger=database.sqlite_tracking_recorder(WebhookFeed.name, SqliteWebhookLedger),
        accounts=database.sqlite_tracking_recorder("accounts", SqliteAccounts),
        sessions=database.sqlite_tracking_recorder("sessions", SqliteSessions),
        audit=database.sqlite_tracking_recorder("audit_log", SqliteAuditLog),
        erasures=database.sqlite_tracking_recorder(ErasureFinisher.name, SQLiteTrackingRecorder),
        lease=lease,
        wakeups=None,
    )
