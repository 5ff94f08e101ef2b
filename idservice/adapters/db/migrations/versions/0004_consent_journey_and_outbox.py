"""guardian consent journey (code attempts, resends, approval, outcomes), attempt counters,
one unused SNS signup ticket per person, and outbox ordering and dead letters

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("guardian_consent_requests", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("failed_code_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("code_locked_until", sa.DateTime(timezone=True)))
        batch_op.add_column(
            sa.Column("notifications_sent", sa.Integer(), nullable=False, server_default="1")
        )
        batch_op.add_column(sa.Column("last_notified_at", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("method", sa.String(length=32)))
        batch_op.add_column(sa.Column("guardian_ci_index", sa.String(length=64)))
        batch_op.create_index(
            batch_op.f("ix_guardian_consent_requests_guardian_ci_index"),
            ["guardian_ci_index"],
            unique=False,
        )
    op.create_table(
        "consent_outcomes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_outcomes")),
    )
    op.create_index(
        op.f("ix_consent_outcomes_decided_at"), "consent_outcomes", ["decided_at"], unique=False
    )
    op.create_table(
        "attempt_counters",
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("scope", "key_hash", name=op.f("pk_attempt_counters")),
    )
    with op.batch_alter_table("sns_signup_tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject_index", sa.String(length=64)))
        batch_op.create_index(
            batch_op.f("ix_sns_signup_tickets_subject_index"), ["subject_index"], unique=False
        )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("account_id", sa.String(length=36)))
        batch_op.add_column(sa.Column("position", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("dead_at", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("last_error", sa.String(length=200)))
        batch_op.create_index(batch_op.f("ix_outbox_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_dead_at"), ["dead_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_dead_at"))
        batch_op.drop_index(batch_op.f("ix_outbox_account_id"))
        batch_op.drop_column("last_error")
        batch_op.drop_column("dead_at")
        batch_op.drop_column("position")
        batch_op.drop_column("account_id")
    with op.batch_alter_table("sns_signup_tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sns_signup_tickets_subject_index"))
        batch_op.drop_column("subject_index")
    op.drop_table("attempt_counters")
    op.drop_index(op.f("ix_consent_outcomes_decided_at"), table_name="consent_outcomes")
    op.drop_table("consent_outcomes")
    with op.batch_alter_table("guardian_consent_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_guardian_consent_requests_guardian_ci_index"))
        batch_op.drop_column("guardian_ci_index")
        batch_op.drop_column("method")
        batch_op.drop_column("last_notified_at")
        batch_op.drop_column("notifications_sent")
        batch_op.drop_column("code_locked_until")
        batch_op.drop_column("failed_code_attempts")
