"""Maintenance over stored ciphertexts: re-encrypt personal fields under the current data key."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, Table, select, update

from idservice.adapters.crypto import FieldCipher
from idservice.adapters.db import key_check
from idservice.adapters.db import tables as t
from idservice.adapters.db.repository import account_context

BATCH_SIZE = 500


@dataclass(frozen=True)
class EncryptedColumn:
    """A ciphertext column and how its encryption context is formed from the row key."""

    table: Table
    key: str
    column: str
    context: Callable[[str], str]


ENCRYPTED_COLUMNS: tuple[EncryptedColumn, ...] = (
    *(
        EncryptedColumn(t.accounts, "id", f"{name}_ct", functools.partial(account_context, name))
        for name in ("email", "name", "phone", "birth_date", "ci", "di")
    ),
    EncryptedColumn(
        t.verifications, "id", "person_ct", lambda row_id: f"verifications.person:{row_id}"
    ),
    EncryptedColumn(
        t.guardian_consent_requests,
        "id",
        "guardian_name_ct",
        lambda row_id: f"consent.name:{row_id}",
    ),
    EncryptedColumn(
        t.guardian_consent_requests,
        "id",
        "guardian_phone_ct",
        lambda row_id: f"consent.phone:{row_id}",
    ),
    EncryptedColumn(
        t.idempotency_keys, "key_hash", "response_ct", lambda row_id: f"idempotency:{row_id}"
    ),
    EncryptedColumn(t.outbox, "id", "payload_ct", lambda row_id: f"outbox:{row_id}"),
)


def reencrypt_all(engine: Engine, cipher: FieldCipher) -> dict[str, int]:
    """Rewrite every value not under the current key; returns counts per table.column.

    Then the data keys that no longer encrypt anything are unregistered (see key_check).
    """
    counts: dict[str, int] = {}
    for spec in ENCRYPTED_COLUMNS:
        key_col = spec.table.c[spec.key]
        value_col = spec.table.c[spec.column]
        done = 0
        last = ""
        while True:
            with engine.begin() as connection:
                rows = connection.execute(
                    select(key_col, value_col)
                    .where(key_col > last, value_col.is_not(None))
                    .order_by(key_col)
                    .limit(BATCH_SIZE)
                ).all()
                for row_key, value in rows:
                    if cipher.needs_reencrypt(value):
                        fresh = cipher.reencrypt(value, context=spec.context(row_key))
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
