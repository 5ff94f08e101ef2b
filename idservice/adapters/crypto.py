"""Field encryption at rest (AES-256-GCM) and keyed lookup hashes, from one data-key ring.

The ring is `IDSERVICE_DATA_KEYS` (contract.md §configuration): `id:base64key` entries,
comma separated, first is current. The first key encrypts; every key decrypts, so a new key can
be put in front without downtime and `idservice reencrypt` moves old values over later.

Keys are never used raw. Each purpose gets its own key, derived with HKDF-SHA-256 under a
distinct `info` (korea-rules.md "Identity verification, CI and DI" 4 asks for a *keyed* hash):

* field encryption: per ring entry, `info = "idservice/field-encryption/v1"`;
* blind indexes: `info = "idservice/blind-index/v1/<purpose>"`, so `ci` and `email` indexes
  of the same string are unrelated;
* token hashes (refresh / verification tokens, idempotency keys): `info =
  "idservice/token-hash/v1"`.

Which entry the lookup keys (blind indexes and token hashes) are derived from:

* the dedicated entry with key id `index` when the ring has one — it never encrypts;
* otherwise the *oldest* key, i.e. the last one listed.

Blind indexes and token hashes live in unique indexes and cannot be re-computed without the
plaintext, so they must survive rotation. Putting a new current key in front leaves the last
entry alone, so existing indexes keep matching. Retiring the oldest key would change them: to
retire it, keep its material under the id `index` (e.g. ring `k3:…,k2:…,index:<k1 material>`).
The derivation ignores key ids, so the lookup keys stay identical, and HKDF keeps the retired
key's old encryption key unrelated to the new lookup keys. Production should set `index` from
the start.

Ciphertext text format `v1.<key_id>.<base64url(nonce || ciphertext || tag), no padding>`. The
associated data is `v1.<key_id>` NUL `context`; callers pass a context naming the column and row
(`"accounts.name:<account_id>"`) so a ciphertext copied to another column or row fails.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# AES-256 (contract: personal fields are encrypted with AES-256-GCM) needs a 256-bit key.
KEY_BYTES: Final = 32
# NIST SP 800-38D §8.2.2: 96-bit random nonces; §8.3 caps one key at 2**32 encryptions.
NONCE_BYTES: Final = 12
# NIST SP 800-38D §5.2.1.2: full 128-bit tag (the `cryptography` default).
TAG_BYTES: Final = 16
KEY_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
# The ring entry reserved for deriving lookup keys (see the module docstring).
INDEX_ENTRY_ID: Final = "index"
CIPHERTEXT_FORMAT: Final = "v1"
DEV_RING_FILENAME: Final = "data_keys"

_ENCRYPTION_INFO: Final = b"idservice/field-encryption/v1"
_BLIND_INDEX_INFO_PREFIX: Final = b"idservice/blind-index/v1/"
_TOKEN_HASH_INFO: Final = b"idservice/token-hash/v1"
_SEALING_INFO: Final = b"idservice/sealing/v1"
# Purposes are code constants, not input; a tight alphabet catches typos and empty strings.
_PURPOSE_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_STANDARD_OR_URLSAFE_B64: Final = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
_URLSAFE_B64_NO_PADDING: Final = re.compile(r"[A-Za-z0-9_-]+")


class KeyRingError(ValueError):
    """The key ring text or a key is unusable. Messages name entries by position or id only."""


class FieldDecryptError(ValueError):
    """A stored ciphertext cannot be opened: malformed, unknown key id, tampered or wrong context.

    This is a server fault (corrupt data or a missing key), not a client error; messages never
    contain plaintext, context or key material.
    """


@dataclass(frozen=True)
class DataKey:
    """One entry of the ring: a key id and 32 bytes of secret material."""

    key_id: str
    material: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, str) or KEY_ID_PATTERN.fullmatch(self.key_id) is None:
            raise KeyRingError("key id must match [A-Za-z0-9_-]{1,32}")
        if not isinstance(self.material, bytes) or len(self.material) != KEY_BYTES:
            raise KeyRingError(f"key {self.key_id} must be exactly {KEY_BYTES} bytes")


def _decode_key(text: str) -> bytes | None:
    """Standard or url-safe base64, padding optional; None when it is not base64."""
    if _STANDARD_OR_URLSAFE_B64.fullmatch(text) is None:
        return None
    unpadded = text.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except binascii.Error:
        return None


class KeyRing:
    """The ordered data keys: the first encryption key is current, all of them decrypt."""

    def __init__(self, entries: Iterable[DataKey]) -> None:
        self._entries: tuple[DataKey, ...] = tuple(entries)
        if not self._entries:
            raise KeyRingError("key ring is empty")
        seen: set[str] = set()
        for entry in self._entries:
            if entry.key_id in seen:
                raise KeyRingError(f"key ring has duplicate key id {entry.key_id}")
            seen.add(entry.key_id)
        self._keys = tuple(e for e in self._entries if e.key_id != INDEX_ENTRY_ID)
        if not self._keys:
            raise KeyRingError(f"key ring has no encryption key besides '{INDEX_ENTRY_ID}'")
        # The same material under two ids means a rotation that did not rotate.
        materials: dict[bytes, str] = {}
        for key in self._keys:
            if key.material in materials:
                raise KeyRingError(
                    f"keys {materials[key.material]} and {key.key_id} have the same material"
                )
            materials[key.material] = key.key_id
        self._by_id = {k.key_id: k for k in self._keys}
        dedicated = [e for e in self._entries if e.key_id == INDEX_ENTRY_ID]
        self._index_root = dedicated[0] if dedicated else self._keys[-1]

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        """Parse the `IDSERVICE_DATA_KEYS` format: `id:base64key[,id:base64key…]`."""
        if not text.strip():
            raise KeyRingError("key ring is empty")
        entries: list[DataKey] = []
        for position, raw in enumerate(text.split(","), start=1):
            entry = raw.strip()
            if not entry:
                raise KeyRingError(f"key ring entry {position} is empty")
            key_id, colon, encoded = (part.strip() for part in entry.partition(":"))
            if not colon:
                raise KeyRingError(f"key ring entry {position} is not of the form id:base64key")
            if KEY_ID_PATTERN.fullmatch(key_id) is None:
                # The id is not echoed: a malformed entry may have the key where the id belongs.
                raise KeyRingError(
                    f"key ring entry {position}: key id must match [A-Za-z0-9_-]{{1,32}}"
                )
            material = _decode_key(encoded)
            if material is None:
                raise KeyRingError(f"key ring entry {position} ({key_id}): key is not base64")
            if len(material) != KEY_BYTES:
                raise KeyRingError(
                    f"key ring entry {position} ({key_id}): key must be {KEY_BYTES} bytes, "
                    f"got {len(material)}"
                )
            entries.append(DataKey(key_id, material))
        return cls(entries)

    @classmethod
    def generate(cls, key_id: str = "dev1") -> KeyRing:
        """A ring of one fresh random key."""
        return cls([DataKey(key_id, secrets.token_bytes(KEY_BYTES))])

    def serialize(self) -> str:
        """The `IDSERVICE_DATA_KEYS` text of this ring (standard base64 with padding)."""
        return ",".join(
            f"{e.key_id}:{base64.b64encode(e.material).decode('ascii')}" for e in self._entries
        )

    @property
    def entries(self) -> tuple[DataKey, ...]:
        """Every entry in ring order, including a dedicated `index` entry."""
        return self._entries

    @property
    def keys(self) -> tuple[DataKey, ...]:
        """The encryption keys in ring order (newest first)."""
        return self._keys

    @property
    def current(self) -> DataKey:
        """The key that encrypts new values."""
        return self._keys[0]

    @property
    def index_root(self) -> DataKey:
        """The entry blind-index and token-hash keys are derived from (see module docstring)."""
        return self._index_root

    def get(self, key_id: str) -> DataKey:
        """The encryption key with this id; KeyRingError when the ring has none."""
        try:
            return self._by_id[key_id]
        except KeyError:
            raise KeyRingError("unknown data key id") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyRing):
            return NotImplemented
        return self._entries == other._entries

    def __hash__(self) -> int:
        return hash(self._entries)

    def __repr__(self) -> str:
        ids = ", ".join(e.key_id for e in self._entries)
        return f"KeyRing([{ids}])"


def _derive(material: bytes, info: bytes) -> bytes:
    # No salt: the inputs are already uniformly random keys (RFC 5869 §3.1).
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(material)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _associated_data(header: str, context: str) -> bytes:
    # The header is bound too, so a token cannot be relabelled; it holds no NUL, so the
    # concatenation is unambiguous.
    return header.encode("ascii") + b"\x00" + context.encode("utf-8")


class FieldCipher:
    """Encrypts personal fields for storage and computes keyed lookup hashes. Thread-safe."""

    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring
        self._aeads = {k.key_id: AESGCM(_derive(k.material, _ENCRYPTION_INFO)) for k in ring.keys}
        self._token_key = _derive(ring.index_root.material, _TOKEN_HASH_INFO)
        self._sealing_root = _derive(ring.index_root.material, _SEALING_INFO)
        # Filled lazily; a race only derives the same value twice.
        self._index_keys: dict[str, bytes] = {}

    @property
    def ring(self) -> KeyRing:
        """The ring this cipher was built from."""
        return self._ring

    def encrypt(self, plaintext: str, *, context: str) -> str:
        """`v1.<current key id>.<nonce+ciphertext>`, bound to `context` (column and row)."""
        _require_context(context)
        key_id = self._ring.current.key_id
        header = f"{CIPHERTEXT_FORMAT}.{key_id}"
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aeads[key_id].encrypt(
            nonce, plaintext.encode("utf-8"), _associated_data(header, context)
        )
        return f"{header}.{_b64url(nonce + sealed)}"

    def decrypt(self, token: str, *, context: str) -> str:
        """The plaintext of `token`; FieldDecryptError if it cannot be authenticated."""
        _require_context(context)
        key_id, blob = _split_token(token)
        aead = self._aeads.get(key_id)
        if aead is None:
            raise FieldDecryptError(f"field ciphertext uses unknown data key {key_id}")
        header = f"{CIPHERTEXT_FORMAT}.{key_id}"
        try:
            plaintext = aead.decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], _associated_data(header, context)
            )
        except InvalidTag:
            raise FieldDecryptError(
                f"field ciphertext under data key {key_id} failed authentication "
                "(tampered or wrong context)"
            ) from None
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            # Unreachable for our own output; reported without the bytes.
            raise FieldDecryptError("field plaintext is not UTF-8") from None

    def needs_reencrypt(self, token: str) -> bool:
        """True when `token` was not encrypted under the current key."""
        key_id, _ = _split_token(token)
        return key_id != self._ring.current.key_id

    def reencrypt(self, token: str, *, context: str) -> str:
        """`token` under the current key; returned unchanged when it already is."""
        plaintext = self.decrypt(token, context=context)
        if not self.needs_reencrypt(token):
            return token
        return self.encrypt(plaintext, context=context)

    def blind_index(self, value: str, *, purpose: str) -> str:
        """Hex HMAC-SHA-256 of `value` under the index key for `purpose`; stable across rotation.

        `value` must already be normalised by the caller (e.g. lower-cased email, E.164 phone).
        """
        key = self._index_keys.get(purpose)
        if key is None:
            if _PURPOSE_PATTERN.fullmatch(purpose) is None:
                raise ValueError("blind index purpose must match [a-z0-9][a-z0-9_.-]{0,63}")
            key = _derive(
                self._ring.index_root.material, _BLIND_INDEX_INFO_PREFIX + purpose.encode()
            )
            self._index_keys[purpose] = key
        return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()

    def seal(self, plaintext: str, *, secret: str, context: str) -> str:
        """Encrypt under a key derived from the ring *and* `secret`, which is never stored.

        For values only the caller who knows `secret` may get back (the tokens of an idempotent
        response, sealed with the caller's key and password): the data keys and a database
        copy alone cannot open them.
        """
        _require_context(context)
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._sealing_aead(secret).encrypt(
            nonce, plaintext.encode("utf-8"), context.encode("utf-8")
        )
        return _b64url(nonce + sealed)

    def unseal(self, token: str, *, secret: str, context: str) -> str:
        """The plaintext of `seal`; FieldDecryptError for a wrong secret or context."""
        _require_context(context)
        if _URLSAFE_B64_NO_PADDING.fullmatch(token) is None:
            raise FieldDecryptError("sealed value is not unpadded base64url")
        blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise FieldDecryptError("sealed value is too short")
        try:
            plaintext = self._sealing_aead(secret).decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], context.encode("utf-8")
            )
        except InvalidTag:
            raise FieldDecryptError("sealed value failed authentication") from None
        return plaintext.decode("utf-8")

    def _sealing_aead(self, secret: str) -> AESGCM:
        key = hmac.new(self._sealing_root, secret.encode("utf-8"), hashlib.sha256).digest()
        return AESGCM(key)

    def token_hash(self, value: str, *, purpose: str) -> str:
        """Hex HMAC-SHA-256 of a bearer secret for `purpose`, for storing tokens, codes and keys.

        The input is `"<purpose>:<value>"`, so hashes of different purposes never collide;
        refresh tokens alone are hashed bare, the form they were first stored in.
        """
        if _PURPOSE_PATTERN.fullmatch(purpose) is None:
            raise ValueError("token hash purpose must match [a-z0-9][a-z0-9_.-]{0,63}")
        text = value if purpose == _BARE_TOKEN_PURPOSE else f"{purpose}:{value}"
        return hmac.new(self._token_key, text.encode("utf-8"), hashlib.sha256).hexdigest()


# Refresh tokens were stored as HMACs of the bare token before purposes were named.
_BARE_TOKEN_PURPOSE = "refresh-token"  # noqa: S105 - a purpose name, not a secret


def _require_context(context: str) -> None:
    # An empty context would let a ciphertext move between rows unnoticed.
    if not context:
        raise ValueError("encryption context must not be empty")


def _split_token(token: str) -> tuple[str, bytes]:
    """The key id and nonce+ciphertext of a `v1.<key_id>.<b64>` token."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != CIPHERTEXT_FORMAT:
        raise FieldDecryptError("field ciphertext is not in the v1 format")
    key_id, encoded = parts[1], parts[2]
    if KEY_ID_PATTERN.fullmatch(key_id) is None:
        raise FieldDecryptError("field ciphertext has a malformed key id")
    if _URLSAFE_B64_NO_PADDING.fullmatch(encoded) is None:
        raise FieldDecryptError("field ciphertext is not unpadded base64url")
    try:
        blob = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except binascii.Error:
        raise FieldDecryptError("field ciphertext is not unpadded base64url") from None
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise FieldDecryptError("field ciphertext is too short")
    return key_id, blob


def load_or_create_dev_ring(keys_dir: Path) -> KeyRing:
    """The development ring in `keys_dir/data_keys`, generated on first use.

    The file is created 0600 in a 0700 directory and published with `os.link`, which fails if
    the name exists: a process that loses the race reads the winner's ring, so concurrent
    first starts agree on one ring and readers never see a half-written file.
    """
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = keys_dir / DEV_RING_FILENAME
    if path.exists():
        return _read_ring_file(path)
    ring = KeyRing.generate()
    # mkstemp creates the file 0600 regardless of umask.
    fd, tmp_name = tempfile.mkstemp(dir=keys_dir, prefix=f".{DEV_RING_FILENAME}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as tmp:
            tmp.write(ring.serialize() + "\n")
            tmp.flush()
            os.fsync(tmp.fileno())
        try:
            os.link(tmp_name, path)
        except FileExistsError:
            return _read_ring_file(path)
        _fsync_dir(keys_dir)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
    return ring


def _read_ring_file(path: Path) -> KeyRing:
    try:
        return KeyRing.parse(path.read_text(encoding="ascii"))
    except UnicodeDecodeError:
        raise KeyRingError(f"{path}: not an ASCII key ring") from None
    except KeyRingError as exc:
        raise KeyRingError(f"{path}: {exc}") from None


def _fsync_dir(directory: Path) -> None:
    # Makes the new name durable; some platforms cannot open directories, which is harmless.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
