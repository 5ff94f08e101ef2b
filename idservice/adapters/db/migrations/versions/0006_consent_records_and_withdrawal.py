"""consent records, third-party provision consent, marketing reconfirmation, and withdrawn
accounts' remains holding the re-join cooldown under the unique CI/DI indexes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.alter_column("name_ct", existing_type=sa.Text(), nullable=True)
        batch_op.alter_column("phone_ct", existing_type=sa.Text(), nullable=True)
        batch_op.alter_column("birth_date_ct", existing_type=sa.Text(), nullable=True)
        batch_op.add_column(
            sa.Column("third_party_opt_in", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("third_party_updated_at", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("marketing_reminded_at", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("withdrawn_at", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("hold_until", sa.DateTime(timezone=True)))
        batch_op.create_index(batch_op.f("ix_accounts_hold_until"), ["hold_until"], unique=False)
    op.create_table(
        "consent_records",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("consent_type", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=64)),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_records")),
    )
    op.create_index(
        op.f("ix_consent_records_account_id"), "consent_records", ["account_id"], unique=False
    )
    op.create_index(
        op.f("ix_consent_records_recorded_at"), "consent_records", ["recorded_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_consent_records_recorded_at"), table_name="consent_records")
    op.drop_index(op.f("ix_consent_records_account_id"), table_name="consent_records")
    op.drop_table("consent_records")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_accounts_hold_until"))
        batch_op.drop_column("hold_until")
        batch_op.drop_column("withdrawn_at")
        batch_op.drop_column("marketing_reminded_at")
        batch_op.drop_column("third_party_updated_at")
        batch_op.drop_column("third_party_opt_in")
        batch_op.alter_column("birth_date_ct", existing_type=sa.Text(), nullable=False)
        batch_op.alter_column("phone_ct", existing_type=sa.Text(), nullable=False)
        batch_op.alter_column("name_ct", existing_type=sa.Text(), nullable=False)
