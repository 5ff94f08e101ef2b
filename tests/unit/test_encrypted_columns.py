"""Every encrypted column is in the one registry that the repositories and `reencrypt` use
(tests/e2e/test_reencrypt.py rotates a key over every registered column)."""

from __future__ import annotations

from idservice.adapters.db import tables
from idservice.adapters.db.encrypted_columns import ENCRYPTED_COLUMNS

CIPHERTEXT_SUFFIX = "_ct"


def test_every_ciphertext_column_of_the_schema_is_registered() -> None:
    in_schema = {
        f"{table.name}.{column.name}"
        for table in tables.metadata.sorted_tables
        for column in table.columns
        if column.name.endswith(CIPHERTEXT_SUFFIX)
    }
    registered = {f"{c.table.name}.{c.column}" for c in ENCRYPTED_COLUMNS}
    assert in_schema == registered


def test_registered_columns_and_their_row_keys_exist() -> None:
    for entry in ENCRYPTED_COLUMNS:
        assert entry.column in entry.table.c, entry
        assert entry.key in entry.table.c, entry
        assert entry.table.c[entry.key].primary_key, f"{entry} is not keyed by its primary key"


def test_contexts_bind_table_column_and_row() -> None:
    contexts = {entry.context("row-1") for entry in ENCRYPTED_COLUMNS}
    # One context per column: a ciphertext cannot be moved to another column or row unnoticed.
    assert len(contexts) == len(ENCRYPTED_COLUMNS)
    assert all(context.endswith(":row-1") for context in contexts)
