"""The database schema as SQLAlchemy Core tables; Alembic migrations create the same."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.types import DateTime, TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

HASH = 64  # hex HMAC-SHA-256
ID = 36  # UUID text


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


accounts = Table(
    "accounts",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("status", String(32), nullable=False),
    # Personal fields are AES-GCM ciphertexts; *_index columns are keyed blind indexes.
    Column("email_ct", Text),
    Column("email_index", String(HASH), unique=True),
    # Empty only on a withdrawn account's remains (see `withdrawn_at`).
    Column("name_ct", Text),
    Column("phone_ct", Text),
    Column("birth_date_ct", Text),
    Column("identity_verified", Boolean, nullable=False),
    Column("ci_ct", Text),
    Column("ci_index", String(HASH), unique=True),
    Column("di_ct", Text),
    Column("di_index", String(HASH), unique=True),
    Column("password_hash", Text),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", UtcDateTime),
    # Password attempts admitted but not yet finished, and when that count goes stale.
    Column("attempts_in_flight", Integer, nullable=False, default=0),
    Column("attempts_expire_at", UtcDateTime),
    Column("terms_version", String(64), nullable=False),
    Column("privacy_policy_version", String(64), nullable=False),
    Column("terms_accepted_at", UtcDateTime, nullable=False),
    Column("marketing_opt_in", Boolean, nullable=False),
    Column("marketing_updated_at", UtcDateTime, nullable=False),
    Column("processing_suspended", Boolean, nullable=False, default=False),
    Column("third_party_opt_in", Boolean, nullable=False, server_default=false()),
    Column("third_party_updated_at", UtcDateTime),
    # When the 2-year reconfirmation of the current marketing opt-in was asked for.
    Column("marketing_reminded_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # A withdrawn account leaves only its CI/DI blind indexes (under the unique indexes above,
    # which so hold the re-join cooldown) until `hold_until`; every personal field is gone.
    Column("withdrawn_at", UtcDateTime),
    Column("hold_until", UtcDateTime, index=True),
)

# Consent records (korea-rules Rights 3): each grant and withdrawal with its version, time and
# channel; kept as records after the account is gone (no foreign key), for their own period.
consent_records = Table(
    "consent_records",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("account_id", String(ID), nullable=False, index=True),
    Column("consent_type", String(32), nullable=False),
    Column("version", String(64)),
    Column("granted", Boolean, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False, index=True),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column(
        "account_id",
        String(ID),
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("amr", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    Column("revoked_reason", String(32)),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(HASH), primary_key=True),
    Column(
        "session_id",
        String(ID),
        ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime),
)

verifications = Table(
    "verifications",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("provider", String(16), nullable=False),
    # Keyed hash of (provider, verification_id): a verification is accepted once.
    Column("source_hash", String(HASH), nullable=False, unique=True),
    Column("token_hash", String(HASH), nullable=False, unique=True),
    Column("person_ct", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False, index=True),
    Column("consumed_at", UtcDateTime),
)

rejoin_holds = Table(
    "rejoin_holds",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("ci_index", String(HASH), index=True),
    Column("di_index", String(HASH), index=True),
    Column("hold_until", UtcDateTime, nullable=False, index=True),
)

guardian_consent_requests = Table(
    "guardian_consent_requests",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column(
        "account_id",
        String(ID),
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    # Only the guardian's name and contact before consent (시행령 제17조의2②).
    Column("guardian_name_ct", Text),
    Column("guardian_phone_ct", Text),
    Column("code_hash", String(HASH), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False, index=True),
    Column("decided_at", UtcDateTime),
    # Wrong consent codes since the last right one, and the end of the pause they caused.
    Column("failed_code_attempts", Integer, nullable=False, server_default="0"),
    Column("code_locked_until", UtcDateTime),
    # Notifications sent (the first one included) and when the last one was.
    Column("notifications_sent", Integer, nullable=False, server_default="1"),
    Column("last_notified_at", UtcDateTime),
    # Set at approval: how consent was confirmed, and the verified guardian's CI blind index.
    Column("method", String(32)),
    Column("guardian_ci_index", String(HASH), index=True),
)

# What is left of a consent request whose child account was destroyed (rejected or expired):
# its id, outcome and times, nothing personal; kept so GetConsentRequest can still answer.
consent_outcomes = Table(
    "consent_outcomes",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("decided_at", UtcDateTime, nullable=False, index=True),
)

# Attempts counted per caller (e.g. consent codes per end-user address), in fixed windows.
attempt_counters = Table(
    "attempt_counters",
    metadata,
    Column("scope", String(32), primary_key=True),
    Column("key_hash", String(HASH), primary_key=True),
    Column("window_start", UtcDateTime, nullable=False),
    Column("count", Integer, nullable=False),
    Column("blocked_until", UtcDateTime),
)

sns_identities = Table(
    "sns_identities",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column(
        "account_id",
        String(ID),
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("provider", String(16), nullable=False),
    # Blind index of "<provider>:<subject>": one link per identity across all accounts.
    Column("subject_index", String(HASH), nullable=False, unique=True),
    Column("subject_ct", Text, nullable=False),
    # Kept with the link and refreshed at each login (privacy policy 제1조).
    Column("nickname_ct", Text),
    Column("picture_ct", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_login_at", UtcDateTime, nullable=False),
    UniqueConstraint("account_id", "provider", name="uq_sns_identities_account_provider"),
)

sns_signup_tickets = Table(
    "sns_signup_tickets",
    metadata,
    Column("ticket_hash", String(HASH), primary_key=True),
    # Blind index of "<provider>:<subject>": a new login replaces that person's unused ticket.
    Column("subject_index", String(HASH), index=True),
    # What the provider said about the person, until the ticket is used or expires.
    Column("profile_ct", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False, index=True),
    Column("used_at", UtcDateTime),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key_hash", String(HASH), primary_key=True),
    Column("operation", String(32), nullable=False),
    Column("fingerprint", String(HASH), nullable=False),
    Column("response_ct", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False, index=True),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("type", String(64), nullable=False),
    Column("payload_ct", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime),
    # The account an event is about: one account's events are delivered in the order written
    # (created_at, then position within the writing transaction).
    Column("account_id", String(ID), index=True),
    Column("position", Integer, nullable=False, server_default="0"),
    # A dead letter: given up on after too many attempts (replayed by `idservice outbox`).
    Column("dead_at", UtcDateTime, index=True),
    Column("last_error", String(200)),
    Index("ix_outbox_pending", "delivered_at", "next_attempt_at"),
)

# One check value per key of the data key ring that the stored data depends on (the blind-index
# root, and each data key that has encrypted something): start-up refuses a ring that does not
# reproduce them (idservice.adapters.db.key_check).
key_checks = Table(
    "key_checks",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("check_value", String(HASH), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)


# 통신비밀보호법 시행령 제41조: who called what, when, from where, with what result — never a
# body, token, password or CI/DI. The end user's address is personal data: encrypted.
connection_log = Table(
    "connection_log",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("occurred_at", UtcDateTime, nullable=False, index=True),
    Column("method", String(128), nullable=False),
    Column("account_id", String(ID), index=True),
    Column("client_ip_ct", Text),
    Column("code", String(32), nullable=False),
    Column("reason", String(64)),
)

# 안전성 확보조치 기준 제8조: every access to a person's data on someone else's behalf, in one
# hash chain (each row's hash covers the previous row's), kept at least 2 years.
access_audit = Table(
    "access_audit",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("occurred_at", UtcDateTime, nullable=False, index=True),
    # The calling service's identity, and the guardian's CI blind index for guardian calls.
    Column("actor", String(128), nullable=False),
    Column("actor_guardian_index", String(HASH)),
    Column("client_ip_ct", Text),
    Column("subject_account_id", String(ID), nullable=False, index=True),
    Column("action", String(64), nullable=False),
    Column("prev_hash", String(HASH), nullable=False),
    Column("row_hash", String(HASH), nullable=False),
)

# The chain's tail (for appending under a lock) and the anchor left by retention's deletions.
audit_chain = Table(
    "audit_chain",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_seq", Integer, nullable=False),
    Column("last_hash", String(HASH), nullable=False),
    Column("anchor_seq", Integer, nullable=False),
    Column("anchor_hash", String(HASH), nullable=False),
)
