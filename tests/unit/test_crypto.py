"""Tests for field encryption, key-ring parsing, blind indexes and the development key ring."""

from __future__ import annotations

import base64
import re
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from idservice.adapters.crypto import (
    DEV_RING_FILENAME,
    NONCE_BYTES,
    DataKey,
    FieldCipher,
    FieldDecryptError,
    KeyRing,
    KeyRingError,
    load_or_create_dev_ring,
)

CONTEXT = "accounts.name:0190b3c4-0000-7000-8000-000000000001"
NAME = "홍길동"


def _key(fill: int) -> bytes:
    return bytes([fill]) * 32


def _b64(material: bytes) -> str:
    return base64.b64encode(material).decode("ascii")


def _ring(*entries: tuple[str, bytes]) -> KeyRing:
    return KeyRing.parse(",".join(f"{key_id}:{_b64(m)}" for key_id, m in entries))


def _blob(token: str) -> bytes:
    encoded = token.split(".")[2]
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))


def _with_blob(token: str, blob: bytes) -> str:
    prefix = token.rsplit(".", 1)[0]
    return f"{prefix}.{base64.urlsafe_b64encode(blob).rstrip(b'=').decode()}"


@pytest.fixture
def cipher() -> FieldCipher:
    return FieldCipher(KeyRing.generate("k1"))


# --- encryption -------------------------------------------------------------------------------


@pytest.mark.parametrize("plaintext", [NAME, "", "user@example.com", "2010-03-01", "x" * 10_000])
def test_round_trip(cipher: FieldCipher, plaintext: str) -> None:
    token = cipher.encrypt(plaintext, context=CONTEXT)
    assert cipher.decrypt(token, context=CONTEXT) == plaintext


def test_token_format_is_versioned_key_id_and_unpadded_base64url(cipher: FieldCipher) -> None:
    token = cipher.encrypt(NAME, context=CONTEXT)
    assert re.fullmatch(r"v1\.k1\.[A-Za-z0-9_-]+", token)
    # nonce + UTF-8 plaintext + 16-byte tag
    assert len(_blob(token)) == NONCE_BYTES + len(NAME.encode()) + 16


def test_ciphertext_differs_each_time(cipher: FieldCipher) -> None:
    tokens = {cipher.encrypt(NAME, context=CONTEXT) for _ in range(20)}
    assert len(tokens) == 20
    assert len({_blob(t)[:NONCE_BYTES] for t in tokens}) == 20


def test_ciphertext_does_not_contain_the_plaintext(cipher: FieldCipher) -> None:
    plaintext = "hong.gildong.distinctive@example.com"
    token = cipher.encrypt(plaintext, context=CONTEXT)
    assert plaintext.encode() not in _blob(token)
    assert plaintext not in token
    assert "hong" not in token


@pytest.mark.parametrize(
    "other_context",
    [
        "accounts.name:0190b3c4-0000-7000-8000-000000000002",  # another row
        "accounts.phone:0190b3c4-0000-7000-8000-000000000001",  # another column
        CONTEXT + " ",
    ],
)
def test_wrong_context_fails(cipher: FieldCipher, other_context: str) -> None:
    token = cipher.encrypt(NAME, context=CONTEXT)
    with pytest.raises(FieldDecryptError) as caught:
        cipher.decrypt(token, context=other_context)
    assert NAME not in str(caught.value)
    assert "0190b3c4" not in str(caught.value)


def test_empty_context_is_refused(cipher: FieldCipher) -> None:
    with pytest.raises(ValueError, match="context"):
        cipher.encrypt(NAME, context="")


@pytest.mark.parametrize("position", [0, NONCE_BYTES - 1, NONCE_BYTES, -17, -1])
def test_tampered_byte_fails(cipher: FieldCipher, position: int) -> None:
    token = cipher.encrypt(NAME, context=CONTEXT)
    blob = bytearray(_blob(token))
    blob[position] ^= 0x01
    with pytest.raises(FieldDecryptError):
        cipher.decrypt(_with_blob(token, bytes(blob)), context=CONTEXT)


def test_relabelling_the_key_id_fails() -> None:
    old, new = ("k1", _key(1)), ("k2", _key(2))
    cipher = FieldCipher(_ring(new, old))
    token = cipher.encrypt(NAME, context=CONTEXT)
    with pytest.raises(FieldDecryptError):
        cipher.decrypt(token.replace("v1.k2.", "v1.k1.", 1), context=CONTEXT)


@pytest.mark.parametrize(
    "token",
    ["", "v1", "v1.k1", "v2.k1.AAAA", "v1.k1.AAAA.AAAA", "v1.k 1.AAAA", "v1.k1.AA==", "v1.k1.A"],
)
def test_malformed_token_fails(cipher: FieldCipher, token: str) -> None:
    with pytest.raises(FieldDecryptError):
        cipher.decrypt(token, context=CONTEXT)


def test_truncated_token_fails(cipher: FieldCipher) -> None:
    token = cipher.encrypt(NAME, context=CONTEXT)
    with pytest.raises(FieldDecryptError, match="too short"):
        cipher.decrypt(_with_blob(token, _blob(token)[: NONCE_BYTES + 15]), context=CONTEXT)


def test_unknown_key_id_fails() -> None:
    token = FieldCipher(_ring(("gone", _key(9)))).encrypt(NAME, context=CONTEXT)
    with pytest.raises(FieldDecryptError, match="unknown data key gone"):
        FieldCipher(_ring(("k1", _key(1)))).decrypt(token, context=CONTEXT)


def test_same_material_under_another_ring_still_needs_its_key() -> None:
    # Another deployment's ciphertext (different material, same id) must not open.
    token = FieldCipher(_ring(("k1", _key(1)))).encrypt(NAME, context=CONTEXT)
    with pytest.raises(FieldDecryptError, match="failed authentication"):
        FieldCipher(_ring(("k1", _key(2)))).decrypt(token, context=CONTEXT)


# --- rotation ---------------------------------------------------------------------------------


def test_rotation_old_values_decrypt_and_reencrypt_under_new_key() -> None:
    old, new = ("old", _key(1)), ("new", _key(2))
    token = FieldCipher(_ring(old)).encrypt(NAME, context=CONTEXT)

    rotated = FieldCipher(_ring(new, old))
    assert rotated.ring.current.key_id == "new"
    assert rotated.decrypt(token, context=CONTEXT) == NAME
    assert rotated.needs_reencrypt(token)

    moved = rotated.reencrypt(token, context=CONTEXT)
    assert moved.startswith("v1.new.")
    assert not rotated.needs_reencrypt(moved)
    assert rotated.decrypt(moved, context=CONTEXT) == NAME
    # Once everything is moved the old key can leave the encryption keys.
    assert FieldCipher(_ring(new)).decrypt(moved, context=CONTEXT) == NAME


def test_reencrypt_leaves_current_values_alone(cipher: FieldCipher) -> None:
    token = cipher.encrypt(NAME, context=CONTEXT)
    assert not cipher.needs_reencrypt(token)
    assert cipher.reencrypt(token, context=CONTEXT) == token


def test_reencrypt_checks_the_context(cipher: FieldCipher) -> None:
    token = cipher.encrypt(NAME, context=CONTEXT)
    with pytest.raises(FieldDecryptError):
        cipher.reencrypt(token, context="accounts.name:other")


# --- blind indexes and token hashes -----------------------------------------------------------


def test_blind_index_is_deterministic_hex(cipher: FieldCipher) -> None:
    first = cipher.blind_index("ci-value", purpose="ci")
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert cipher.blind_index("ci-value", purpose="ci") == first
    assert FieldCipher(cipher.ring).blind_index("ci-value", purpose="ci") == first
    assert cipher.blind_index("ci-valuf", purpose="ci") != first


def test_blind_index_stable_when_a_new_current_key_is_added_in_front() -> None:
    k1, k2, k3 = ("k1", _key(1)), ("k2", _key(2)), ("k3", _key(3))
    before = FieldCipher(_ring(k1))
    for after in (FieldCipher(_ring(k2, k1)), FieldCipher(_ring(k3, k2, k1))):
        assert after.ring.current.key_id != "k1"
        for purpose in ("ci", "di", "email", "phone"):
            assert after.blind_index("v", purpose=purpose) == before.blind_index(
                "v", purpose=purpose
            )
        assert after.token_hash("refresh", purpose="refresh-token") == before.token_hash(
            "refresh", purpose="refresh-token"
        )


def test_dedicated_index_entry_keeps_indexes_when_the_oldest_key_retires() -> None:
    k1, k2 = ("k1", _key(1)), ("k2", _key(2))
    before = FieldCipher(_ring(k2, k1))
    retired = FieldCipher(_ring(k2, ("index", _key(1))))
    assert retired.blind_index("v", purpose="ci") == before.blind_index("v", purpose="ci")
    assert retired.token_hash("t", purpose="signup-key") == before.token_hash(
        "t", purpose="signup-key"
    )
    # The index entry never encrypts nor decrypts.
    assert retired.ring.keys == (DataKey("k2", _key(2)),)
    old_token = FieldCipher(_ring(k1)).encrypt(NAME, context=CONTEXT)
    with pytest.raises(FieldDecryptError, match="unknown data key"):
        retired.decrypt(old_token, context=CONTEXT)


def test_dedicated_index_entry_wins_over_the_oldest_key() -> None:
    with_index = FieldCipher(_ring(("index", _key(7)), ("k2", _key(2)), ("k1", _key(1))))
    assert with_index.ring.index_root.key_id == "index"
    assert with_index.ring.current.key_id == "k2"
    assert with_index.blind_index("v", purpose="ci") != FieldCipher(
        _ring(("k1", _key(1)))
    ).blind_index("v", purpose="ci")


def test_different_purposes_give_unrelated_indexes(cipher: FieldCipher) -> None:
    values = {cipher.blind_index("same", purpose=p) for p in ("ci", "di", "email", "phone")}
    values.add(cipher.token_hash("same", purpose="signup-key"))
    assert len(values) == 5


def test_blind_index_depends_on_the_key() -> None:
    a = FieldCipher(_ring(("k1", _key(1))))
    b = FieldCipher(_ring(("k1", _key(2))))
    assert a.blind_index("v", purpose="ci") != b.blind_index("v", purpose="ci")
    assert a.token_hash("v", purpose="signup-key") != b.token_hash("v", purpose="signup-key")


def test_token_hashes_of_different_purposes_differ(cipher: FieldCipher) -> None:
    purposes = ("refresh-token", "verification-token", "signup-key", "consent-code")
    assert len({cipher.token_hash("same", purpose=p) for p in purposes}) == len(purposes)
    # Each purpose prefixes the value, so "a:b" under "x" is not "b" under "x:a".
    assert cipher.token_hash("a:b", purpose="signup-key") != cipher.token_hash(
        "b", purpose="signup-key"
    )


def test_refresh_token_hashes_keep_their_first_stored_form(cipher: FieldCipher) -> None:
    """Refresh tokens already stored were hashed bare; naming the purpose must not change that,
    or every session would end at the upgrade."""
    assert cipher.token_hash("tok", purpose="refresh-token") != cipher.token_hash(
        "tok", purpose="signup-key"
    )
    assert cipher.token_hash("signup-key:tok", purpose="refresh-token") == cipher.token_hash(
        "tok", purpose="signup-key"
    )


@pytest.mark.parametrize("purpose", ["", "CI", "ci/x", "a" * 65])
def test_bad_token_hash_purpose_is_refused(cipher: FieldCipher, purpose: str) -> None:
    with pytest.raises(ValueError, match="purpose"):
        cipher.token_hash("v", purpose=purpose)


@pytest.mark.parametrize("purpose", ["", "CI", "ci/x", "a" * 65])
def test_bad_purpose_is_refused(cipher: FieldCipher, purpose: str) -> None:
    with pytest.raises(ValueError, match="purpose"):
        cipher.blind_index("v", purpose=purpose)


# --- key ring ---------------------------------------------------------------------------------

SECRET = bytes(range(32))
SECRET_16 = bytes(range(100, 116))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty"),
        ("  ", "empty"),
        (f"k1:{_b64(SECRET)},", "entry 2 is empty"),
        ("k1:not*base64!", "not base64"),
        (f"k1:{_b64(SECRET)[:41]}", "not base64"),
        (f"k1:{_b64(SECRET)[:20]}={_b64(SECRET)[20:]}", "not base64"),
        (f"k1:{_b64(SECRET_16)}", "must be 32 bytes, got 16"),
        (f"k1:{_b64(SECRET)},k1:{_b64(_key(5))}", "duplicate key id k1"),
        (_b64(SECRET), "not of the form id:base64key"),
        (f"bad.id:{_b64(SECRET)}", "key id must match"),
        (f"{'a' * 33}:{_b64(SECRET)}", "key id must match"),
        (f"index:{_b64(SECRET)}", "no encryption key"),
        (f"k2:{_b64(SECRET)},k1:{_b64(SECRET)}", "same material"),
    ],
)
def test_parse_errors_name_the_problem_not_the_key(text: str, expected: str) -> None:
    with pytest.raises(KeyRingError, match=expected) as caught:
        KeyRing.parse(text)
    message = str(caught.value)
    for material in (SECRET, SECRET_16):
        assert _b64(material) not in message
        assert _b64(material).rstrip("=")[:8] not in message
        assert repr(material) not in message
    assert caught.value.__cause__ is None


@pytest.mark.parametrize(
    "encode",
    [
        lambda m: base64.b64encode(m).decode(),
        lambda m: base64.b64encode(m).decode().rstrip("="),
        lambda m: base64.urlsafe_b64encode(m).decode(),
        lambda m: base64.urlsafe_b64encode(m).decode().rstrip("="),
    ],
    ids=["standard", "standard-unpadded", "urlsafe", "urlsafe-unpadded"],
)
def test_parse_accepts_standard_and_urlsafe_base64(encode: Callable[[bytes], str]) -> None:
    material = bytes([0xFB, 0xFF, 0xBF] * 10 + [0xFE, 0xFF])  # forces + / - _ characters
    ring = KeyRing.parse(f" new : {encode(material)} , old:{_b64(SECRET)}\n")
    assert ring.current == DataKey("new", material)
    assert ring.get("old").material == SECRET
    assert [k.key_id for k in ring.keys] == ["new", "old"]


def test_serialize_round_trips() -> None:
    ring = _ring(("k2", _key(2)), ("k1", _key(1)), ("index", _key(7)))
    assert KeyRing.parse(ring.serialize()) == ring
    assert ring.serialize().startswith("k2:")


def test_get_unknown_key_id_raises() -> None:
    ring = _ring(("k1", _key(1)), ("index", _key(7)))
    with pytest.raises(KeyRingError):
        ring.get("k9")
    with pytest.raises(KeyRingError):
        ring.get("index")


def test_generate_makes_fresh_32_byte_keys() -> None:
    a, b = KeyRing.generate(), KeyRing.generate()
    assert a.current.key_id == "dev1"
    assert len(a.current.material) == 32
    assert a != b


def test_reprs_do_not_show_key_material() -> None:
    ring = _ring(("k1", SECRET))
    for text in (repr(ring.current), repr(ring), str(ring.current)):
        assert "k1" in text
        assert repr(SECRET) not in text
        assert _b64(SECRET) not in text


@pytest.mark.parametrize(
    ("key_id", "material"), [("k1", b"short"), ("", _key(1)), ("a.b", _key(1))]
)
def test_data_key_validates(key_id: str, material: bytes) -> None:
    with pytest.raises(KeyRingError):
        DataKey(key_id, material)


# --- development key ring ---------------------------------------------------------------------


def test_dev_ring_is_created_once_with_private_modes_and_reused(tmp_path: Path) -> None:
    keys_dir = tmp_path / "var" / "keys"
    first = load_or_create_dev_ring(keys_dir)
    path = keys_dir / DEV_RING_FILENAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    assert KeyRing.parse(path.read_text()) == first
    assert load_or_create_dev_ring(keys_dir) == first
    assert [p.name for p in keys_dir.iterdir()] == [DEV_RING_FILENAME]  # no temp files left


def test_dev_ring_reads_an_existing_file(tmp_path: Path) -> None:
    ring = _ring(("k2", _key(2)), ("k1", _key(1)))
    (tmp_path / DEV_RING_FILENAME).write_text(ring.serialize())
    assert load_or_create_dev_ring(tmp_path) == ring


def test_dev_ring_corrupt_file_is_reported_without_its_content(tmp_path: Path) -> None:
    (tmp_path / DEV_RING_FILENAME).write_text(f"k1:{_b64(SECRET_16)}")
    with pytest.raises(KeyRingError, match="must be 32 bytes") as caught:
        load_or_create_dev_ring(tmp_path)
    assert _b64(SECRET_16) not in str(caught.value)


def test_concurrent_first_starts_agree_on_one_ring(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    workers = 8
    barrier = threading.Barrier(workers)
    rings: list[KeyRing] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def start() -> None:
        barrier.wait()
        try:
            ring = load_or_create_dev_ring(keys_dir)
        except BaseException as exc:
            with lock:
                errors.append(exc)
            raise
        with lock:
            rings.append(ring)

    threads = [threading.Thread(target=start) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(rings) == workers
    on_disk = KeyRing.parse((keys_dir / DEV_RING_FILENAME).read_text())
    assert all(ring == on_disk for ring in rings)
    assert [p.name for p in keys_dir.iterdir()] == [DEV_RING_FILENAME]


# --- sealing (values that need a secret the database never holds) ----------------------------


def test_sealed_value_opens_only_with_its_secret_and_context(cipher: FieldCipher) -> None:
    sealed = cipher.seal("refresh-token-value", secret="key\0password", context=CONTEXT)
    assert "refresh-token-value" not in sealed
    assert cipher.unseal(sealed, secret="key\0password", context=CONTEXT) == "refresh-token-value"
    # The same ring opens it again (another process), a different secret or context does not.
    twin = FieldCipher(cipher.ring)
    assert twin.unseal(sealed, secret="key\0password", context=CONTEXT) == "refresh-token-value"
    for secret, context in (("key\0other", CONTEXT), ("key\0password", CONTEXT + "x")):
        with pytest.raises(FieldDecryptError):
            cipher.unseal(sealed, secret=secret, context=context)
    # Nor does another ring with the right secret.
    with pytest.raises(FieldDecryptError):
        FieldCipher(KeyRing.generate("k1")).unseal(sealed, secret="key\0password", context=CONTEXT)
    for garbage in ("", "not base64!", "AAAA"):
        with pytest.raises(FieldDecryptError):
            cipher.unseal(garbage, secret="key\0password", context=CONTEXT)
