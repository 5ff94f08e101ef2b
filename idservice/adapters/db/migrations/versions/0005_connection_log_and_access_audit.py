"""connection log and the hash-chained access audit

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connection_log",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=36)),
        sa.Column("client_ip_ct", sa.Text()),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=64)),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connection_log")),
    )
    op.create_index(
        op.f("ix_connection_log_occurred_at"), "connection_log", ["occurred_at"], unique=False
    )
    op.create_index(
        op.f("ix_connection_log_account_id"), "connection_log", ["account_id"], unique=False
    )
    op.create_table(
        "access_audit",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("actor_guardian_index", sa.String(length=64)),
        sa.Column("client_ip_ct", sa.Text()),
        sa.Column("subject_account_id", sa.String(length=36), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_access_audit")),
    )
    op.create_index(
        op.f("ix_access_audit_occurred_at"), "access_audit", ["occurred_at"], unique=False
    )
    op.create_index(
        op.f("ix_access_audit_subject_account_id"),
        "access_audit",
        ["subject_account_id"],
        unique=False,
    )
    op.create_table(
        "audit_chain",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.Column("anchor_seq", sa.Integer(), nullable=False),
        sa.Column("anchor_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain")),
    )


def downgrade() -> None:
    op.drop_table("audit_chain")
    op.drop_index(op.f("ix_access_audit_subject_account_id"), table_name="access_audit")
    op.drop_index(op.f("ix_access_audit_occurred_at"), table_name="access_audit")
    op.drop_table("access_audit")
    op.drop_index(op.f("ix_connection_log_account_id"), table_name="connection_log")
    op.drop_index(op.f("ix_connection_log_occurred_at"), table_name="connection_log")
    op.drop_table("connection_log")
