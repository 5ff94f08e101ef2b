"""Access tokens: checked by a second JOSE library (PyJWT), rejected when forged or stale, keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jwt as joserfc_jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import OKPKey
from joserfc.jws import JWSRegistry

from idservice.adapters.tokens import (
    ISSUED_AT_LEEWAY_SECONDS,
    MAX_TOKEN_BYTES,
    AccessTokenIssuer,
    SigningKey,
    load_or_create_dev_signing_key,
    load_signing_key,
)
from idservice.domain.errors import DomainError, Reason

NOW = datetime(2025, 3, 1, 9, 30, 15, tzinfo=UTC)
CONTRACT_CLAIMS = {"iss", "sub", "aud", "iat", "exp", "jti", "sid", "amr", "age_band"}
BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def in_memory_issuer() -> AccessTokenIssuer:
    key = OKPKey.generate_key("Ed25519")
    return AccessTokenIssuer(
        SigningKey(key=key, kid=key.thumbprint(), alg="EdDSA"), issuer="idservice"
    )


# Hypothesis runs each example without re-running function-scoped fixtures, so it gets one here.
HYPOTHESIS_ISSUER = in_memory_issuer()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def write_pem(path: Path, key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.fixture
def ed_key(tmp_path: Path) -> SigningKey:
    return load_signing_key(write_pem(tmp_path / "ed.pem", ed25519.Ed25519PrivateKey.generate()))


@pytest.fixture
def issuer(ed_key: SigningKey) -> AccessTokenIssuer:
    return AccessTokenIssuer(ed_key, issuer="idservice")


def issue(issuer: AccessTokenIssuer, now: datetime = NOW) -> str:
    return issuer.issue(
        account_id="acct_01", session_id="sess_01", amr=["pwd"], age_band="youth", now=now
    ).token


def sign_raw(key: SigningKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """Sign arbitrary content with the real key, to reach the checks after the signature."""
    registry = JWSRegistry(algorithms=[key.alg])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc's RFC 9864 note on "EdDSA"
        return joserfc_jwt.encode(header, claims, key.key, algorithms=[key.alg], registry=registry)


def good_claims(now: datetime = NOW) -> dict[str, Any]:
    iat = int(now.timestamp())
    return {
        "iss": "idservice",
        "sub": "acct_01",
        "aud": "idservice",
        "iat": iat,
        "exp": iat + 600,
        "jti": "j1",
        "sid": "sess_01",
        "amr": ["pwd"],
        "age_band": "adult",
    }


def assert_reason(reason: Reason, issuer: AccessTokenIssuer, token: str, now: datetime) -> None:
    with pytest.raises(DomainError) as caught:
        issuer.verify(token, now=now)
    assert caught.value.reason is reason


# --- interoperability -------------------------------------------------------------------------


def test_token_verifies_with_pyjwt_against_published_jwks(issuer: AccessTokenIssuer) -> None:
    now = datetime.now(UTC)  # PyJWT checks exp/iat against the real clock
    issued = issuer.issue(
        account_id="acct_42", session_id="sess_7", amr=["pwd", "otp"], age_band="adult", now=now
    )
    jwks = pyjwt.PyJWKSet.from_json(issuer.jwks_json())
    header = pyjwt.get_unverified_header(issued.token)
    claims = pyjwt.decode(
        issued.token,
        jwks[header["kid"]],
        algorithms=["EdDSA"],
        audience="idservice",
        issuer="idservice",
        options={"require": sorted(CONTRACT_CLAIMS)},
    )
    assert set(claims) == CONTRACT_CLAIMS
    assert claims["sub"] == "acct_42"
    assert claims["sid"] == "sess_7"
    assert claims["amr"] == ["pwd", "otp"]
    assert claims["age_band"] == "adult"
    assert claims["jti"] == issued.jti
    assert 0 < claims["exp"] - claims["iat"] <= 900
    assert datetime.fromtimestamp(claims["exp"], UTC) == issued.expires_at
    assert header == {"alg": "EdDSA", "typ": "at+jwt", "kid": issuer.kid}


def test_jwks_has_only_the_public_key_with_kid_alg_use(issuer: AccessTokenIssuer) -> None:
    (jwk,) = json.loads(issuer.jwks_json())["keys"]
    assert jwk["kty"] == "OKP"
    assert jwk["crv"] == "Ed25519"
    assert jwk["alg"] == "EdDSA"
    assert jwk["use"] == "sig"
    assert jwk["kid"] == issuer.kid
    assert "d" not in jwk


def test_kid_is_the_rfc_7638_thumbprint(tmp_path: Path) -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    key = load_signing_key(write_pem(tmp_path / "k.pem", private))
    x = b64url(
        private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    )
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    assert key.kid == b64url(hashlib.sha256(canonical.encode()).digest())


def test_issue_then_verify_round_trips(issuer: AccessTokenIssuer) -> None:
    issued = issuer.issue(
        account_id="acct_01", session_id="sess_01", amr=("google",), age_band="under_14", now=NOW
    )
    claims = issuer.verify(issued.token, now=NOW + timedelta(minutes=14, seconds=44))
    assert claims.account_id == "acct_01"
    assert claims.session_id == "sess_01"
    assert claims.jti == issued.jti
    assert claims.amr == ("google",)
    assert claims.age_band == "under_14"
    assert claims.issued_at == NOW.replace(microsecond=0)
    assert claims.expires_at == issued.expires_at == claims.issued_at + timedelta(minutes=15)


def test_ttl_is_capped_at_fifteen_minutes(ed_key: SigningKey) -> None:
    long_lived = AccessTokenIssuer(ed_key, issuer="idservice", ttl=timedelta(hours=2))
    issued = long_lived.issue(
        account_id="a", session_id="s", amr=["pwd"], age_band="adult", now=NOW
    )
    assert issued.expires_at - NOW <= timedelta(minutes=15)


def test_token_is_not_in_the_repr(issuer: AccessTokenIssuer) -> None:
    issued = issuer.issue(account_id="a", session_id="s", amr=["pwd"], age_band="adult", now=NOW)
    assert issued.token not in repr(issued)


# --- rejection --------------------------------------------------------------------------------


def test_expired_at_exp_exactly(issuer: AccessTokenIssuer) -> None:
    token = issue(issuer)
    exp = NOW.replace(microsecond=0) + timedelta(minutes=15)
    issuer.verify(token, now=exp - timedelta(seconds=1))
    assert_reason(Reason.TOKEN_EXPIRED, issuer, token, exp)
    assert_reason(Reason.TOKEN_EXPIRED, issuer, token, exp + timedelta(days=3))


def test_tampered_signature_is_invalid(issuer: AccessTokenIssuer) -> None:
    token = issue(issuer)
    head, payload, signature = token.split(".")
    flipped = ("A" if signature[10] != "A" else "B").join((signature[:10], signature[11:]))
    assert_reason(Reason.TOKEN_INVALID, issuer, f"{head}.{payload}.{flipped}", NOW)


def test_tampered_payload_is_invalid(issuer: AccessTokenIssuer) -> None:
    head, _, signature = issue(issuer).split(".")
    forged = b64url(json.dumps({**good_claims(), "sub": "someone_else"}).encode())
    assert_reason(Reason.TOKEN_INVALID, issuer, f"{head}.{forged}.{signature}", NOW)


def test_wrong_issuer_and_audience_are_invalid(ed_key: SigningKey) -> None:
    ours = AccessTokenIssuer(ed_key, issuer="idservice")
    other_issuer = AccessTokenIssuer(ed_key, issuer="someone-else")
    other_audience = AccessTokenIssuer(ed_key, issuer="idservice", audience="billing")
    assert_reason(Reason.TOKEN_INVALID, ours, issue(other_issuer), NOW)
    assert_reason(Reason.TOKEN_INVALID, ours, issue(other_audience), NOW)
    # Wrong in another way and also expired: still TOKEN_INVALID, not "expired".
    assert_reason(Reason.TOKEN_INVALID, ours, issue(other_issuer), NOW + timedelta(hours=1))


def test_token_from_another_key_is_invalid(issuer: AccessTokenIssuer, tmp_path: Path) -> None:
    stranger = load_signing_key(write_pem(tmp_path / "x.pem", ed25519.Ed25519PrivateKey.generate()))
    forged = sign_raw(stranger, {"alg": "EdDSA", "typ": "at+jwt", "kid": issuer.kid}, good_claims())
    assert_reason(Reason.TOKEN_INVALID, issuer, forged, NOW)


def test_alg_none_is_invalid(issuer: AccessTokenIssuer) -> None:
    header = b64url(json.dumps({"alg": "none", "typ": "at+jwt", "kid": issuer.kid}).encode())
    payload = b64url(json.dumps(good_claims()).encode())
    assert_reason(Reason.TOKEN_INVALID, issuer, f"{header}.{payload}.", NOW)


def test_hs256_with_the_public_key_as_secret_is_invalid(issuer: AccessTokenIssuer) -> None:
    (jwk,) = json.loads(issuer.jwks_json())["keys"]
    header = {"alg": "HS256", "typ": "at+jwt", "kid": issuer.kid}
    payload = good_claims()
    # PyJWT refuses to HMAC with asymmetric-looking keys, so build the classic confusion by hand.
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    mac = hmac.new(jwk["x"].encode(), signing_input.encode(), hashlib.sha256).digest()
    assert_reason(Reason.TOKEN_INVALID, issuer, f"{signing_input}.{b64url(mac)}", NOW)


def test_es256_token_is_refused_by_an_eddsa_issuer(ed_key: SigningKey, tmp_path: Path) -> None:
    p256 = load_signing_key(write_pem(tmp_path / "p.pem", ec.generate_private_key(ec.SECP256R1())))
    ed_issuer = AccessTokenIssuer(ed_key, issuer="idservice")
    forged = sign_raw(p256, {"alg": "ES256", "typ": "at+jwt", "kid": ed_key.kid}, good_claims())
    assert_reason(Reason.TOKEN_INVALID, ed_issuer, forged, NOW)


@pytest.mark.parametrize("missing", sorted(CONTRACT_CLAIMS))
def test_each_missing_claim_is_invalid(
    issuer: AccessTokenIssuer, ed_key: SigningKey, missing: str
) -> None:
    claims = good_claims()
    del claims[missing]
    token = sign_raw(ed_key, {"alg": "EdDSA", "typ": "at+jwt", "kid": ed_key.kid}, claims)
    assert_reason(Reason.TOKEN_INVALID, issuer, token, NOW)


@pytest.mark.parametrize(
    "override",
    [
        {"exp": int(NOW.timestamp()) + 3600},  # lifetime beyond 15 minutes
        {"iat": int(NOW.timestamp()) + 3600, "exp": int(NOW.timestamp()) + 3900},  # future
        {"amr": "pwd"},
        {"amr": []},
        {"age_band": "teen"},
        {"sub": ""},
        {"exp": True},
        {"iat": 1.5},
    ],
)
def test_bad_claim_values_are_invalid(
    issuer: AccessTokenIssuer, ed_key: SigningKey, override: dict[str, Any]
) -> None:
    token = sign_raw(
        ed_key, {"alg": "EdDSA", "typ": "at+jwt", "kid": ed_key.kid}, good_claims() | override
    )
    assert_reason(Reason.TOKEN_INVALID, issuer, token, NOW)


@pytest.mark.parametrize(
    "change",
    [{"typ": "JWT"}, {"typ": None}, {"kid": None}, {"kid": "another-kid"}],
)
def test_header_must_be_typed_and_name_our_key(
    issuer: AccessTokenIssuer, ed_key: SigningKey, change: dict[str, str | None]
) -> None:
    merged = {"alg": "EdDSA", "typ": "at+jwt", "kid": ed_key.kid} | change
    header = {name: value for name, value in merged.items() if value is not None}
    token = sign_raw(ed_key, header, good_claims())
    assert_reason(Reason.TOKEN_INVALID, issuer, token, NOW)


def test_a_correctly_signed_raw_token_is_accepted(
    issuer: AccessTokenIssuer, ed_key: SigningKey
) -> None:
    # Guards the rejection tests above: they fail for the reason they name, not a broken helper.
    token = sign_raw(ed_key, {"alg": "EdDSA", "typ": "at+jwt", "kid": ed_key.kid}, good_claims())
    assert issuer.verify(token, now=NOW).account_id == "acct_01"


NOW_SECONDS = int(NOW.timestamp())


def signed_with(ed_key: SigningKey, **claims: Any) -> str:
    header = {"alg": "EdDSA", "typ": "at+jwt", "kid": ed_key.kid}
    return sign_raw(ed_key, header, good_claims() | claims)


@pytest.mark.parametrize(
    "nbf",
    [
        NOW_SECONDS + ISSUED_AT_LEEWAY_SECONDS + 1,  # beyond the clock-skew leeway
        NOW_SECONDS + 300,
        "2025-03-01T09:30:15Z",
        True,
        1.5,
        -1,
        None,
    ],
)
def test_nbf_in_the_future_or_malformed_is_invalid(
    issuer: AccessTokenIssuer, ed_key: SigningKey, nbf: object
) -> None:
    assert_reason(Reason.TOKEN_INVALID, issuer, signed_with(ed_key, nbf=nbf), NOW)


@pytest.mark.parametrize(
    "nbf",
    [NOW_SECONDS - 600, NOW_SECONDS, NOW_SECONDS + ISSUED_AT_LEEWAY_SECONDS],
)
def test_nbf_reached_or_within_the_leeway_is_accepted(
    issuer: AccessTokenIssuer, ed_key: SigningKey, nbf: int
) -> None:
    assert issuer.verify(signed_with(ed_key, nbf=nbf), now=NOW).account_id == "acct_01"


def test_nbf_in_the_future_becomes_valid_when_reached(
    issuer: AccessTokenIssuer, ed_key: SigningKey
) -> None:
    not_before = NOW + timedelta(seconds=ISSUED_AT_LEEWAY_SECONDS + 120)
    token = signed_with(ed_key, nbf=int(not_before.timestamp()))
    assert_reason(Reason.TOKEN_INVALID, issuer, token, NOW)
    later = not_before - timedelta(seconds=ISSUED_AT_LEEWAY_SECONDS)
    assert issuer.verify(token, now=later).account_id == "acct_01"


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        ".",
        "..",
        "a.b.c",
        "eyJhbGciOiJFZERTQSJ9.e30.",
        "not a token at all",
        "토큰.토큰.토큰",
        "eyJ" * 20,
        "a.b.c.d.e",
        "x" * (MAX_TOKEN_BYTES + 1),
    ],
)
def test_garbage_is_invalid(issuer: AccessTokenIssuer, garbage: str) -> None:
    assert_reason(Reason.TOKEN_INVALID, issuer, garbage, NOW)


def test_oversized_but_correctly_signed_token_is_invalid(
    issuer: AccessTokenIssuer, ed_key: SigningKey
) -> None:
    claims = good_claims() | {"padding": "p" * MAX_TOKEN_BYTES}
    token = sign_raw(ed_key, {"alg": "EdDSA", "typ": "at+jwt", "kid": ed_key.kid}, claims)
    assert_reason(Reason.TOKEN_INVALID, issuer, token, NOW)


@given(st.text(max_size=300))
def test_arbitrary_text_is_token_invalid(text: str) -> None:
    assert_reason(Reason.TOKEN_INVALID, HYPOTHESIS_ISSUER, text, NOW)


@given(st.lists(st.text(alphabet=BASE64URL, max_size=80), min_size=3, max_size=3))
def test_arbitrary_base64url_segments_are_token_invalid(segments: list[str]) -> None:
    assert_reason(Reason.TOKEN_INVALID, HYPOTHESIS_ISSUER, ".".join(segments), NOW)


# --- keys -------------------------------------------------------------------------------------


def test_p256_key_file_signs_es256(tmp_path: Path) -> None:
    key = load_signing_key(
        write_pem(tmp_path / "p256.pem", ec.generate_private_key(ec.SECP256R1()))
    )
    assert key.alg == "ES256"
    p256_issuer = AccessTokenIssuer(key, issuer="idservice")
    now = datetime.now(UTC)
    token = issue(p256_issuer, now)
    assert p256_issuer.verify(token, now=now).account_id == "acct_01"
    jwks = pyjwt.PyJWKSet.from_json(p256_issuer.jwks_json())
    claims = pyjwt.decode(
        token, jwks[key.kid], algorithms=["ES256"], audience="idservice", issuer="idservice"
    )
    assert claims["sub"] == "acct_01"
    (jwk,) = json.loads(p256_issuer.jwks_json())["keys"]
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("EC", "P-256", "ES256", "sig")
    assert "d" not in jwk


def test_rsa_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rsa.pem"
    path.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ValueError, match="IDSERVICE_SIGNING_KEY_FILE"):
        load_signing_key(path)


def test_p384_key_file_is_refused(tmp_path: Path) -> None:
    path = write_pem(tmp_path / "p384.pem", ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(ValueError, match=r"IDSERVICE_SIGNING_KEY_FILE.*secp384r1"):
        load_signing_key(path)


def test_unreadable_or_non_pem_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="IDSERVICE_SIGNING_KEY_FILE"):
        load_signing_key(tmp_path / "missing.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ValueError, match="IDSERVICE_SIGNING_KEY_FILE"):
        load_signing_key(junk)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    with pytest.raises(ValueError, match="IDSERVICE_SIGNING_KEY_FILE"):
        load_signing_key(encrypted)


def test_dev_key_is_created_once_with_mode_0600_and_reused(tmp_path: Path) -> None:
    keys_dir = tmp_path / "var" / "keys"
    first = load_or_create_dev_signing_key(keys_dir)
    pem_path = keys_dir / "signing_key.pem"
    pem = pem_path.read_bytes()
    assert stat.S_IMODE(pem_path.stat().st_mode) == 0o600
    assert first.alg == "EdDSA"

    second = load_or_create_dev_signing_key(keys_dir)
    assert second.kid == first.kid
    assert pem_path.read_bytes() == pem
    assert [p.name for p in keys_dir.iterdir()] == ["signing_key.pem"]  # no temp files left


def test_concurrent_first_starts_agree_on_one_dev_key(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    with ThreadPoolExecutor(max_workers=8) as starters:
        kids = set(starters.map(lambda _: load_or_create_dev_signing_key(keys_dir).kid, range(8)))
    assert len(kids) == 1
    assert [p.name for p in keys_dir.iterdir()] == ["signing_key.pem"]


# --- remembered signatures --------------------------------------------------------------------


def test_a_token_verified_before_still_has_its_claims_and_expiry_checked(
    issuer: AccessTokenIssuer,
) -> None:
    token = issue(issuer)
    first = issuer.verify(token, now=NOW)
    assert issuer.verify(token, now=NOW + timedelta(minutes=1)) == first
    assert issuer.verified_tokens_kept() == 1
    # Remembering the signature never extends the token's life.
    assert_reason(Reason.TOKEN_EXPIRED, issuer, token, NOW + timedelta(minutes=15))


def test_a_tampered_copy_of_a_remembered_token_is_invalid(issuer: AccessTokenIssuer) -> None:
    token = issue(issuer)
    issuer.verify(token, now=NOW)
    head, payload, signature = token.split(".")
    flipped = ("A" if signature[10] != "A" else "B").join((signature[:10], signature[11:]))
    assert_reason(Reason.TOKEN_INVALID, issuer, f"{head}.{payload}.{flipped}", NOW)
    forged = b64url(json.dumps({**good_claims(), "sub": "someone_else"}).encode())
    assert_reason(Reason.TOKEN_INVALID, issuer, f"{head}.{forged}.{signature}", NOW)


def test_remembered_signatures_are_bounded(ed_key: SigningKey) -> None:
    small = AccessTokenIssuer(ed_key, issuer="idservice", verified_tokens_kept=3)
    tokens = [
        small.issue(account_id=f"a{i}", session_id="s", amr=["pwd"], age_band="adult", now=NOW)
        for i in range(5)
    ]
    for issued in tokens:
        small.verify(issued.token, now=NOW)
    assert small.verified_tokens_kept() == 3
    # Forgotten ones verify again in full.
    assert small.verify(tokens[0].token, now=NOW).account_id == "a0"
