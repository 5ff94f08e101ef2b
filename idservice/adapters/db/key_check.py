"""Key checks: start-up refuses a data key ring that cannot open the data already stored.

contract.md §1: start-up refuses, in every environment, a data key ring that cannot open the
data already stored (for example after `./var/keys` was lost), naming `IDSERVICE_DATA_KEYS`.
Without this a wrong ring starts: old accounts cannot log in, the same email and the same person
(CI/DI) can sign up a second time, and stored ciphertexts fail only when read.

The database keeps one check value per key the stored data depends on (table `key_checks`):

* `index`: the blind-index root (`KeyRing.index_root`), under which the blind indexes and token
  hashes in the unique indexes were computed;
* `data:<key id>`: each data key that has been the current (encrypting) key of a process, i.e.
  that may have encrypted stored values.

A check value is the hex HMAC-SHA-256 of a constant under a key derived with HKDF from the key's
material (an `info` of its own), so it tells nothing about the key but "the same or not"; it
does not depend on the key id, so retiring the oldest key to the `index` entry keeps the index
check (see idservice.adapters.crypto).

`check_key_ring` (at start-up, after the migrations) refuses a registered value the ring does
not reproduce and a registered data key the ring lacks; only then does it register what is new:
the current key (and, on the first start, the index root), each by insert-or-compare on the
unique name, so that two processes starting at once with different rings cannot both succeed.
Non-current keys are not registered: a key that only decrypts wrote nothing.

A database that holds data but no checks yet (created before they existed) is probed once
instead: a sample of the stored ciphertexts under each ring key must decrypt, none may be under
a key the ring lacks, and a stored CI/DI lookup index must be reproduced.

`idservice reencrypt` moves values to the current key and then forgets the data keys that no
longer encrypt anything (`forget_unused_data_keys`): from then on they may leave the ring.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import ColumnElement, Connection, Engine, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from idservice.adapters.crypto import (
    CIPHERTEXT_FORMAT,
    KEY_BYTES,
    KEY_ID_PATTERN,
    DataKey,
    FieldCipher,
    FieldDecryptError,
    KeyRing,
)
from idservice.adapters.db import encrypted_columns as ec
from idservice.adapters.db import tables as t
from idservice.adapters.db.encrypted_columns import EncryptedColumn
from idservice.adapters.db.repositories.accounts import SqlAccountRepository

log = logging.getLogger(__name__)

INDEX_CHECK: Final = "index"
DATA_CHECK_PREFIX: Final = "data:"
_CHECK_INFO_PREFIX: Final = b"idservice/key-check/v1/"
_CHECK_MESSAGE: Final = b"idservice key check"
# A registration that vanishes between a failed insert and the read (a concurrent reencrypt
# forgetting it) is inserted again; more than this many rounds means something else is wrong.
_REGISTER_ATTEMPTS: Final = 3

_INDEX_MISMATCH: Final = (
    "the ring's blind-index key (its 'index' entry, else its last key) is not the one the "
    "stored accounts were indexed with: set the ring the data was stored under (was the ring "
    "replaced, or ./var/keys lost?)"
)


class KeyRingMismatchError(Exception):
    """The ring does not fit the stored data. Messages name key ids only, never key material."""


def check_value(material: bytes, purpose: str) -> str:
    """Hex HMAC-SHA-256 of a constant under an HKDF key of `material` for `purpose`."""
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=None,
        info=_CHECK_INFO_PREFIX + purpose.encode("ascii"),
    ).derive(material)
    return hmac.new(key, _CHECK_MESSAGE, hashlib.sha256).hexdigest()


def _index_value(ring: KeyRing) -> str:
    return check_value(ring.index_root.material, INDEX_CHECK)


def _data_value(key: DataKey) -> str:
    return check_value(key.material, "data")


def _data_name(key_id: str) -> str:
    return DATA_CHECK_PREFIX + key_id


def _prefix(key_id: str) -> str:
    return f"{CIPHERTEXT_FORMAT}.{key_id}."


def _starts_with(column: ColumnElement[str], prefix: str) -> ColumnElement[bool]:
    # Not LIKE: SQLite's LIKE ignores case, and "_" in a key id would be a wildcard.
    return func.substr(column, 1, len(prefix)) == prefix


def _registered(connection: Connection) -> dict[str, str]:
    c = t.key_checks.c
    return {name: value for name, value in connection.execute(select(c.name, c.check_value))}


def _read_registered(engine: Engine) -> dict[str, str]:
    with engine.execution_options(readonly=True).connect() as connection:
        return _registered(connection)


def _ring_key(ring: KeyRing, key_id: str) -> DataKey | None:
    return next((key for key in ring.keys if key.key_id == key_id), None)


def _mismatch_message(name: str) -> str:
    if name == INDEX_CHECK:
        return _INDEX_MISMATCH
    key_id = name.removeprefix(DATA_CHECK_PREFIX)
    return (
        f"data key {key_id} is not the key of that id the stored data was encrypted with "
        "(same id, other material)"
    )


def check_key_ring(
    engine: Engine,
    cipher: FieldCipher,
    columns: Iterable[EncryptedColumn],
    *,
    now: datetime,
) -> None:
    """Refuse a ring that does not fit the stored data, else register its new keys.

    Raises KeyRingMismatchError (the caller names IDSERVICE_DATA_KEYS). Needs the migrated
    schema.
    """
    ring = cipher.ring
    registered = _read_registered(engine)
    index_value = _index_value(ring)
    stored_index = registered.get(INDEX_CHECK)
    if stored_index is not None and not hmac.compare_digest(stored_index, index_value):
        raise KeyRingMismatchError(_INDEX_MISMATCH)
    for name, stored in sorted(registered.items()):
        if not name.startswith(DATA_CHECK_PREFIX):
            continue
        key_id = name.removeprefix(DATA_CHECK_PREFIX)
        key = _ring_key(ring, key_id)
        if key is None:
            raise KeyRingMismatchError(
                f"data key {key_id} is missing from the ring, but stored data may still be "
                "encrypted under it: keep it until `idservice reencrypt` has moved the data "
                "to the current key"
            )
        if not hmac.compare_digest(stored, _data_value(key)):
            raise KeyRingMismatchError(_mismatch_message(name))
    wanted: dict[str, str] = {}
    if stored_index is None:
        # The first start with key checks: whatever is stored already must open with this ring.
        used = _probe_stored_data(engine, cipher, columns)
        wanted[INDEX_CHECK] = index_value
        for key in ring.keys:
            if key.key_id in used:
                wanted[_data_name(key.key_id)] = _data_value(key)
    wanted.setdefault(_data_name(ring.current.key_id), _data_value(ring.current))
    # The index first: of two processes with unrelated rings on a fresh database, the second
    # fails on it before registering anything of its own.
    for name, value in wanted.items():
        if registered.get(name) != value:
            _insert_or_compare(engine, name, value, now=now)


def _insert_or_compare(engine: Engine, name: str, value: str, *, now: datetime) -> None:
    """Register `value` under `name` unless one is there already, which must then be equal."""
    c = t.key_checks.c
    for _ in range(_REGISTER_ATTEMPTS):
        try:
            with engine.begin() as connection:
                connection.execute(
                    insert(t.key_checks).values(name=name, check_value=value, created_at=now)
                )
            if name != INDEX_CHECK:
                log.info("registered %s in the key checks", name)
            return
        except IntegrityError:
            pass  # registered meanwhile by another process: compare below
        with engine.execution_options(readonly=True).connect() as connection:
            stored = connection.execute(
                select(c.check_value).where(c.name == name)
            ).scalar_one_or_none()
        if stored is not None:
            if not hmac.compare_digest(stored, value):
                raise KeyRingMismatchError(_mismatch_message(name))
            return
    raise RuntimeError(f"could not register {name} in the key checks")


def _describe_key(token: str) -> str:
    parts = token.split(".")
    if len(parts) == 3 and KEY_ID_PATTERN.fullmatch(parts[1]) is not None:
        return f"data key {parts[1]}"
    return "a data key in an unknown format"


def _probe_stored_data(
    engine: Engine, cipher: FieldCipher, columns: Iterable[EncryptedColumn]
) -> set[str]:
    """The ids of the ring keys stored data is encrypted under, after checking a sample of each.

    Refuses data under a key the ring lacks, a sample a ring key cannot open, and a stored
    CI/DI lookup index the ring's index root does not reproduce.
    """
    ring = cipher.ring
    prefixes = {key.key_id: _prefix(key.key_id) for key in ring.keys}
    used: set[str] = set()
    with engine.execution_options(readonly=True).connect() as connection:
        for spec in columns:
            key_col = spec.table.c[spec.key]
            value_col = spec.table.c[spec.column]
            foreign = connection.execute(
                select(value_col)
                .where(
                    value_col.is_not(None),
                    *(~_starts_with(value_col, prefix) for prefix in prefixes.values()),
                )
                .limit(1)
            ).scalar_one_or_none()
            if foreign is not None:
                raise KeyRingMismatchError(
                    f"stored data is encrypted under {_describe_key(foreign)}, "
                    "which the ring does not hold"
                )
            for key_id, prefix in prefixes.items():
                row = connection.execute(
                    select(key_col, value_col).where(_starts_with(value_col, prefix)).limit(1)
                ).first()
                if row is None:
                    continue
                try:
                    cipher.decrypt(row[1], context=spec.context(str(row[0])))
                except FieldDecryptError:
                    raise KeyRingMismatchError(
                        f"data key {key_id} cannot open the data stored under its id "
                        "(same id, other material)"
                    ) from None
                used.add(key_id)
        _probe_lookup_index(connection, cipher)
    return used


def _probe_lookup_index(connection: Connection, cipher: FieldCipher) -> None:
    """One stored CI (else DI) index must be the index of its decrypted value under this ring."""
    a = t.accounts.c
    accounts = SqlAccountRepository(connection, cipher)
    probes = (
        (ec.ACCOUNT_CI, a.ci_ct, a.ci_index, accounts.ci_index),
        (ec.ACCOUNT_DI, a.di_ct, a.di_index, accounts.di_index),
    )
    for column, ciphertext, index, make_index in probes:
        row = connection.execute(
            select(a.id, ciphertext, index)
            .where(ciphertext.is_not(None), index.is_not(None))
            .limit(1)
        ).first()
        if row is None:
            continue
        try:
            value = column.decrypt(cipher, row[0], row[1])
        except FieldDecryptError:
            raise KeyRingMismatchError(_INDEX_MISMATCH) from None
        if not hmac.compare_digest(make_index(value), row[2]):
            raise KeyRingMismatchError(_INDEX_MISMATCH)
        return


def _holds_encrypted_data(connection: Connection, columns: Iterable[EncryptedColumn]) -> bool:
    for spec in columns:
        value_col = spec.table.c[spec.column]
        found = connection.execute(select(value_col).where(value_col.is_not(None)).limit(1))
        if found.first() is not None:
            return True
    return False


def refuse_lost_dev_ring(
    engine: Engine, ring_file: Path, columns: Iterable[EncryptedColumn]
) -> None:
    """Before a development ring is generated: refuse when the database was written under one.

    A new ring would start, register nothing it could check against, and leave every stored
    value unreadable; the file is more likely lost (or the directory changed) than unwanted.
    """
    with engine.execution_options(readonly=True).connect() as connection:
        holds_data = bool(_registered(connection)) or _holds_encrypted_data(connection, columns)
    # Read after the database: a concurrent first start writes the file before it registers.
    if holds_data and not ring_file.exists():
        raise KeyRingMismatchError(
            f"the development key ring {ring_file} is missing, but the database already holds "
            "data encrypted under it; restore that file (or set IDSERVICE_DATA_KEYS to that "
            "ring), or remove the database to start afresh (no new ring was generated)"
        )


def forget_unused_data_keys(
    engine: Engine, cipher: FieldCipher, columns: Iterable[EncryptedColumn]
) -> list[str]:
    """Unregister each data key other than the current one that no stored value uses any more.

    Run after re-encrypting everything, with every process already on the new current key:
    the keys returned may then leave the ring.
    """
    specs = tuple(columns)
    current = _data_name(cipher.ring.current.key_id)
    forgotten: list[str] = []
    c = t.key_checks.c
    for name, value in sorted(_read_registered(engine).items()):
        if not name.startswith(DATA_CHECK_PREFIX) or name == current:
            continue
        key_id = name.removeprefix(DATA_CHECK_PREFIX)
        prefix = _prefix(key_id)
        # One transaction: on SQLite it holds the write lock, so no value can appear meanwhile.
        with engine.begin() as connection:
            in_use = any(
                connection.execute(
                    select(spec.table.c[spec.column])
                    .where(_starts_with(spec.table.c[spec.column], prefix))
                    .limit(1)
                ).first()
                is not None
                for spec in specs
            )
            if in_use:
                continue
            connection.execute(delete(t.key_checks).where(c.name == name, c.check_value == value))
        log.info("data key %s no longer encrypts stored data; it may leave the ring", key_id)
        forgotten.append(key_id)
    return forgotten
