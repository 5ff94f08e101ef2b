"""Maintenance over stored ciphertexts: re-encrypt personal fields under the current data key."""

from __future__ import annotations

from sqlalchemy import Engine, select, update

from idservice.adapters.crypto import FieldCipher
from idservice.adapters.db import key_check
from idservice.adapters.db.encrypted_columns import ENCRYPTED_COLUMNS

BATCH_SIZE = 500


def reencrypt_all(engine: Engine, cipher: FieldCipher) -> dict[str, int]:
    """Rewrite every value not under the current key; returns counts per table.column.

    Then the data keys that no longer encrypt anything are unregistered (see key_check).
    """
    counts: dict[str, int] = {}
    for spec in ENCRYPTED_COLUMNS:
        key_col = spec.table.c[spec.key]
        value_col = spec.table.c[spec.column]
        done = 0
        last: object = None  # row keys are text or (the audit's sequence) integers
        while True:
            with engine.begin() as connection:
                query = select(key_col, value_col).where(value_col.is_not(None))
                if last is not None:
                    query = query.where(key_col > last)
                rows = connection.execute(query.order_by(key_col).limit(BATCH_SIZE)).all()
                for row_key, value in rows:
                    if cipher.needs_reencrypt(value):
                        fresh = cipher.reencrypt(value, context=spec.context(str(row_key)))
                        # Only if the value is still the one read: a concurrent write (already
                        # under the current key) or erasure must not be undone.
                        result = connection.execute(
                            update(spec.table)
                            .where(key_col == row_key, value_col == value)
                            .values({spec.column: fresh})
                        )
                        done += result.rowcount
            if len(rows) < BATCH_SIZE:
                break
            last = rows[-1][0]
        counts[f"{spec.table.name}.{spec.column}"] = done
    key_check.forget_unused_data_keys(engine, cipher, ENCRYPTED_COLUMNS)
    return counts
