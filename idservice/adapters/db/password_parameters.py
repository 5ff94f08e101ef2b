"""A sample of the stored password hashes, read at start-up to price the unknown-email decoy.

`PasswordHasher.calibrate_decoy` takes the most common Argon2 parameters of the sample, so an
unknown email costs what a typical account's hash costs even while most accounts still hold
hashes made before IDSERVICE_ARGON2_* was raised (they are re-hashed only at their next login).
"""

from __future__ import annotations

import uuid

from sqlalchemy import Engine, select

from idservice.adapters.db.tables import accounts

# Enough to find the most common parameters reliably; small enough to read in milliseconds.
SAMPLE_SIZE = 1000


def sample_password_hashes(engine: Engine, *, limit: int = SAMPLE_SIZE) -> list[str]:
    """Up to `limit` stored PHC strings: accounts in id order from a random starting id.

    Account ids are random UUIDs, so the accounts after a random id are a random sample,
    unrelated to when they signed up or last logged in, and the read is one primary-key range
    scan (wrapping round to the smallest ids when the range runs out). Accounts without a
    password (SNS only) are skipped.
    """
    start = str(uuid.uuid4())
    has_password = accounts.c.password_hash.is_not(None)
    column = accounts.c.password_hash
    with engine.execution_options(readonly=True).connect() as connection:
        query = (
            select(column)
            .where(has_password, accounts.c.id >= start)
            .order_by(accounts.c.id)
            .limit(limit)
        )
        hashes = [str(value) for value in connection.execute(query).scalars()]
        if len(hashes) < limit:
            wrapped = (
                select(column)
                .where(has_password, accounts.c.id < start)
                .order_by(accounts.c.id)
                .limit(limit - len(hashes))
            )
            hashes += [str(value) for value in connection.execute(wrapped).scalars()]
    return hashes
