"""SNS identities linked to accounts, and signup tickets of SNS logins

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sns_identities",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("subject_index", sa.String(length=64), nullable=False),
        sa.Column("subject_ct", sa.Text(), nullable=False),
        sa.Column("nickname_ct", sa.Text(), nullable=True),
        sa.Column("picture_ct", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_sns_identities_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sns_identities")),
        sa.UniqueConstraint("subject_index", name=op.f("uq_sns_identities_subject_index")),
        sa.UniqueConstraint("account_id", "provider", name="uq_sns_identities_account_provider"),
    )
    op.create_table(
        "sns_signup_tickets",
        sa.Column("ticket_hash", sa.String(length=64), nullable=False),
        sa.Column("profile_ct", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("ticket_hash", name=op.f("pk_sns_signup_tickets")),
    )
    op.create_index(
        op.f("ix_sns_signup_tickets_expires_at"),
        "sns_signup_tickets",
        ["expires_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_sns_signup_tickets_expires_at"), table_name="sns_signup_tickets")
    op.drop_table("sns_signup_tickets")
    op.drop_table("sns_identities")
