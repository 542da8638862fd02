"""The stores of a PostgreSQL deployment: tables in the event store's database, so any number
of processes share them; Redis holds the shared state instead when REDIS_URL names one."""

from __future__ import annotations

from eventsourcing.postgres import PostgresTrackingRecorder

from application.mail.outbox import MailOutbox
from application.persistence.event_log import EventLog
from application.privacy.erasure import ErasureFinisher
from application.webhooks.feed import WebhookFeed
from infrastructure.data_keys import DataKeyTable, PostgresDataKeyTable, WrappedDataKeys
from infrastructure.lease import PostgresLease
from infrastructure.mail_ledger import PostgresMailLedger
from infrastructure.one_time_values import PostgresOneTimeValues
from infrastructure.persistence import Database, fail_fast
from infrastructure.projector import Lease
from infrastructure.rate_limit import LocalRateLimiter
from infrastructure.read_store import PostgresAccounts, PostgresAuditLog, PostgresSessions
from infrastructure.refresh_chains import PostgresRefreshChains
from infrastructure.revocation import PostgresRevocationList, revocation_pool
from infrastructure.wakeups import PostgresWakeups
from infrastructure.webhook_ledger import PostgresWebhookLedger
from interfaces.stores.roles import SharedState, Stores


def postgres_stores(
    database: Database,
    log: EventLog,
    keys: WrappedDataKeys,
    shared: SharedState | None,
    key_store: DataKeyTable | None = None,
) -> Stores:
    """`shared`: Redis's, when REDIS_URL names one; otherwise tables here, and rate limits
    counted by each process on its own. `key_store`: KEY_STORE_URL's, when it names one;
    otherwise a table here."""
    fail_fast(log.recorder, log.outage)
    datastore = log.recorder.datastore  # type: ignore[attr-defined]
    recorded = log.recorder.max_notification_id() or 0
    keys.keep_in(key_store or PostgresDataKeyTable(datastore), recorded)
    conninfo = database.postgres_conninfo()

    def in_tables() -> SharedState:
        pool = revocation_pool(conninfo)
        revocations = PostgresRevocationList(pool, outage=log.outage)
        return SharedState(
            revocations=revocations,
            chains=PostgresRefreshChains(pool, outage=log.outage),
            one_time_values=PostgresOneTimeValues(revocation_pool(conninfo), outage=log.outage),
            limiter=LocalRateLimiter(),
            expiring=(revocations,),
        )

    def lease(name: str) -> Lease:
        return PostgresLease(conninfo, name)

    return Stores(
        shared=shared or in_tables(),
        mail_ledger=database.postgres_tracking_recorder(
            MailOutbox.name, PostgresMailLedger, log.recorder
        ),
        webhook_ledger=database.postgres_tracking_recorder(
            WebhookFeed.name, PostgresWebhookLedger, log.recorder
        ),
        accounts=database.postgres_tracking_recorder("accounts", PostgresAccounts, log.recorder),
        sessions=database.postgres_tracking_recorder("sessions", PostgresSessions, log.recorder),
        audit=database.postgres_tracking_recorder("audit_log", PostgresAuditLog, log.recorder),
        erasures=database.postgres_tracking_recorder(
            ErasureFinisher.name, PostgresTrackingRecorder, log.recorder
        ),
        lease=lease,
        wakeups=PostgresWakeups(datastore, conninfo),
    )
