"""Access tokens: load the signing key, sign and verify the service's JWTs, publish the JWKS."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal, TypeGuard

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from joserfc import jwt
from joserfc.errors import JoseError, UnsupportedAlgorithmError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import ECKey, OKPKey
from joserfc.jws import JWSRegistry
from joserfc.registry import Header

from idservice.domain.age import AgeBand
from idservice.domain.errors import DomainError, Reason
from idservice.service_layer.ports import AccessClaims, IssuedToken

logger = logging.getLogger(__name__)

SigningAlgorithm = Literal["EdDSA", "ES256"]

# contract.md §2 (`session`): access tokens live at most 15 minutes.
MAX_ACCESS_TOKEN_TTL: Final = timedelta(minutes=15)
# Our tokens are well under 1 KiB; refusing anything over 8 KiB before base64 or JSON work bounds
# what a caller can make verification spend.
MAX_TOKEN_BYTES: Final = 8 * 1024
# Tokens whose signature and header checked out, remembered by SHA-256 so that one presented
# again (a backend introspects the same token on each of its requests) skips the signature and
# the base64/JSON parsing. Claims and expiry are still checked on every call; a token's bytes
# either carry a valid signature or do not, so the answer cannot go stale. 16 384 entries of a
# 32-byte digest and a small claims dict: a few MiB at most.
VERIFIED_TOKENS_KEPT: Final = 16_384
# RFC 7519 §4.1.5–4.1.6 allow a small leeway for clock skew between replicas; only the claims
# that say "not yet" ("iat", "nbf") get it, "exp" is never extended.
ISSUED_AT_LEEWAY_SECONDS: Final = 60
# RFC 9068 §2.1: explicit typing keeps any other JWT this key might sign from passing as an
# access token (RFC 8725 §3.11).
ACCESS_JWT_TYP: Final = "at+jwt"
SIGNING_KEY_ENV: Final = "IDSERVICE_SIGNING_KEY_FILE"
DEV_SIGNING_KEY_FILENAME: Final = "signing_key.pem"

_STRING_CLAIMS: Final = ("sub", "jti", "sid", "age_band")
_AGE_BANDS: Final = frozenset(band.value for band in AgeBand)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The private key that signs access tokens, its RFC 7638 thumbprint `kid` and its `alg`."""

    key: OKPKey | ECKey = field(repr=False)
    kid: str
    alg: SigningAlgorithm


def load_signing_key(path: Path) -> SigningKey:
    """Read a PEM private key: Ed25519 signs with EdDSA, P-256 with ES256; others are refused."""
    try:
        pem = path.read_bytes()
    except OSError as error:
        raise ValueError(f"{SIGNING_KEY_ENV}: cannot read {path}: {error.strerror}") from None
    try:
        native = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # No detail from the parser: its messages are not needed and must not echo key bytes.
        raise ValueError(
            f"{SIGNING_KEY_ENV}: {path} is not an unencrypted PEM private key"
        ) from None
    if isinstance(native, ed25519.Ed25519PrivateKey):
        return _signing_key(OKPKey.import_key(pem), "EdDSA")
    if isinstance(native, ec.EllipticCurvePrivateKey) and isinstance(native.curve, ec.SECP256R1):
        return _signing_key(ECKey.import_key(pem), "ES256")
    kind = (
        f"an EC {native.curve.name} key"
        if isinstance(native, ec.EllipticCurvePrivateKey)
        else f"a {type(native).__name__}"
    )
    raise ValueError(f"{SIGNING_KEY_ENV}: {path} holds {kind}; use an Ed25519 or P-256 private key")


def load_or_create_dev_signing_key(keys_dir: Path) -> SigningKey:
    """Load `keys_dir/signing_key.pem`, generating an Ed25519 key there first if there is none.

    Creation is atomic (a fully written temporary file is hard-linked into place, which fails if
    the name exists), so processes starting together all end up with the same key.
    """
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = keys_dir / DEV_SIGNING_KEY_FILENAME
    if not path.exists():
        _create_key_file(path)
    return load_signing_key(path)


def _create_key_file(path: Path) -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # mkstemp creates the file with mode 0600, so the key is never readable by others.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".signing_key.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return  # another process won the race; everyone uses its key
        logger.warning("generated a development access-token signing key at %s", path)
    finally:
        os.unlink(temporary)


def _signing_key(key: OKPKey | ECKey, alg: SigningAlgorithm) -> SigningKey:
    return SigningKey(key=key, kid=key.thumbprint(), alg=alg)


class _PinnedAlgorithmRegistry(JWSRegistry):
    """A JWS registry that knows exactly one algorithm: the signing key's (RFC 8725 §3.1)."""

    def __init__(self, alg: SigningAlgorithm) -> None:
        super().__init__(algorithms=[alg])
        self._alg_model = JWSRegistry.algorithms[alg]

    def get_alg(self, name: str) -> JWSAlgModel:
        # Overridden only to skip joserfc's per-call SecurityWarning for "EdDSA" (RFC 9864
        # deprecates the polymorphic name): contract.md mandates EdDSA for Ed25519 keys, and
        # a warning on every sign and verify would flood the hot path.
        if name != self._alg_model.name:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self._alg_model


def _token_invalid(message: str) -> DomainError:
    return DomainError(Reason.TOKEN_INVALID, message)


def _timestamp(now: datetime) -> int:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    # Whole seconds, rounded down, so exp never lands later than now + ttl.
    return int(now.timestamp() // 1)


class AccessTokenIssuer:
    """Signs and verifies the service's access tokens (contract.md §2 `session`)."""

    def __init__(
        self,
        key: SigningKey,
        *,
        issuer: str,
        audience: str = "idservice",
        ttl: timedelta = MAX_ACCESS_TOKEN_TTL,
        verified_tokens_kept: int = VERIFIED_TOKENS_KEPT,
    ) -> None:
        if not issuer or not audience:
            raise ValueError("issuer and audience must not be empty")
        # Capped rather than refused: a longer configured lifetime still yields contract tokens.
        ttl_seconds = int(min(ttl, MAX_ACCESS_TOKEN_TTL).total_seconds())
        if ttl_seconds < 1:
            raise ValueError("access token ttl must be at least one second")
        self._key = key
        self._issuer = issuer
        self._audience = audience
        self._ttl_seconds = ttl_seconds
        self._registry = _PinnedAlgorithmRegistry(key.alg)
        self._algorithms = [key.alg]
        self._header: Header = {"typ": ACCESS_JWT_TYP, "alg": key.alg, "kid": key.kid}
        # Parsed once: verification on the hot path uses the public half only, ready-made.
        public_jwk = key.key.as_dict(private=False)
        self._verify_key: OKPKey | ECKey = type(key.key).import_key(public_jwk)
        self._jwks_json = json.dumps(
            {"keys": [{**public_jwk, "kid": key.kid, "alg": key.alg, "use": "sig"}]},
            sort_keys=True,
            separators=(",", ":"),
        )
        self._verified: OrderedDict[bytes, Mapping[str, Any]] = OrderedDict()
        self._verified_kept = max(0, verified_tokens_kept)
        self._verified_lock = threading.Lock()

    @property
    def kid(self) -> str:
        """The key id carried in every token header and in the JWKS."""
        return self._key.kid

    def issue(
        self,
        *,
        account_id: str,
        session_id: str,
        amr: Sequence[str],
        age_band: str,
        now: datetime,
    ) -> IssuedToken:
        """Sign an access token for `account_id` valid from `now` for the configured ttl."""
        if not account_id or not session_id:
            raise ValueError("account_id and session_id must not be empty")
        # A bare str is a Sequence[str] too; "pwd" must not become ["p", "w", "d"].
        if isinstance(amr, str) or not amr or not all(isinstance(m, str) and m for m in amr):
            raise ValueError("amr must be a non-empty sequence of method names")
        if age_band not in _AGE_BANDS:
            raise ValueError(f"unknown age_band {age_band!r}")
        issued_at = _timestamp(now)
        expires_at = issued_at + self._ttl_seconds
        jti = secrets.token_urlsafe(16)
        claims = {
            "iss": self._issuer,
            "sub": account_id,
            "aud": self._audience,
            "iat": issued_at,
            "exp": expires_at,
            "jti": jti,
            "sid": session_id,
            "amr": list(amr),
            "age_band": age_band,
        }
        token = jwt.encode(
            self._header,
            claims,
            self._key.key,
            algorithms=self._algorithms,
            registry=self._registry,
        )
        if len(token) > MAX_TOKEN_BYTES:
            raise ValueError("access token would exceed MAX_TOKEN_BYTES; claims are too large")
        return IssuedToken(token=token, jti=jti, expires_at=datetime.fromtimestamp(expires_at, UTC))

    def verify(self, token: str, *, now: datetime) -> AccessClaims:
        """Check signature, header and claims: TOKEN_EXPIRED at or after exp, else TOKEN_INVALID."""
        now_seconds = _timestamp(now)
        if not isinstance(token, str) or not token.isascii() or len(token) > MAX_TOKEN_BYTES:
            raise _token_invalid("access token is malformed")
        digest = hashlib.sha256(token.encode("ascii")).digest()
        with self._verified_lock:
            claims = self._verified.get(digest)
            if claims is not None:
                self._verified.move_to_end(digest)
        if claims is None:
            claims = self._verify_signature(token)
            with self._verified_lock:
                self._verified[digest] = claims
                while len(self._verified) > self._verified_kept:
                    self._verified.popitem(last=False)
        return self._check_claims(claims, now_seconds)

    def verified_tokens_kept(self) -> int:
        """How many verified signatures are remembered (bounded by VERIFIED_TOKENS_KEPT)."""
        with self._verified_lock:
            return len(self._verified)

    def _verify_signature(self, token: str) -> Mapping[str, Any]:
        """The claims of a token whose signature and header are ours (TOKEN_INVALID else)."""
        try:
            decoded = jwt.decode(
                token, self._verify_key, algorithms=self._algorithms, registry=self._registry
            )
        except (JoseError, ValueError, TypeError, KeyError, IndexError):
            raise _token_invalid("access token is malformed or its signature is invalid") from None
        self._check_header(decoded.header)
        return decoded.claims

    def jwks_json(self) -> str:
        """The public signing key as a JWKS document (RFC 7517 §5) with kid, alg and use."""
        return self._jwks_json

    def _check_header(self, header: Mapping[str, Any]) -> None:
        """RFC 8725 §3.11 explicit typing, and the kid must name our key (not merely verify)."""
        if header.get("typ") != ACCESS_JWT_TYP:
            raise _token_invalid("token is not an access token")
        if header.get("kid") != self._key.kid:
            raise _token_invalid("access token was signed with an unknown key")

    def _check_claims(self, claims: Mapping[str, Any], now_seconds: int) -> AccessClaims:
        """RFC 7519 §4.1 registered claims plus the contract's sid, amr and age_band.

        Expiry is checked last so a token that is wrong in any other way is TOKEN_INVALID.
        """
        if claims.get("iss") != self._issuer:
            raise _token_invalid("access token has the wrong issuer")
        audience = claims.get("aud")
        if not (
            audience == self._audience
            or (isinstance(audience, list) and self._audience in audience)
        ):
            raise _token_invalid("access token has the wrong audience")
        for name in _STRING_CLAIMS:
            value = claims.get(name)
            if not isinstance(value, str) or not value:
                raise _token_invalid(f"access token lacks a valid {name!r} claim")
        amr = claims.get("amr")
        if not isinstance(amr, list) or not amr or not all(isinstance(m, str) for m in amr):
            raise _token_invalid("access token lacks a valid 'amr' claim")
        if claims["age_band"] not in _AGE_BANDS:
            raise _token_invalid("access token has an unknown age_band")
        issued_at = claims.get("iat")
        expires_at = claims.get("exp")
        if not _is_seconds(issued_at) or not _is_seconds(expires_at):
            raise _token_invalid("access token lacks valid 'iat' and 'exp' claims")
        if not 0 < expires_at - issued_at <= MAX_ACCESS_TOKEN_TTL.total_seconds():
            raise _token_invalid("access token lifetime is out of bounds")
        if issued_at > now_seconds + ISSUED_AT_LEEWAY_SECONDS:
            raise _token_invalid("access token is issued in the future")
        # RFC 7519 §4.1.5: not accepted before "nbf" (optional; we do not issue it), with the
        # same leeway as "iat".
        if "nbf" in claims:
            not_before = claims["nbf"]
            if not _is_seconds(not_before):
                raise _token_invalid("access token has an invalid 'nbf' claim")
            if not_before > now_seconds + ISSUED_AT_LEEWAY_SECONDS:
                raise _token_invalid("access token is not valid yet")
        # RFC 7519 §4.1.4: not accepted on or after the expiration time.
        if now_seconds >= expires_at:
            raise DomainError(Reason.TOKEN_EXPIRED, "access token has expired")
        return AccessClaims(
            account_id=claims["sub"],
            session_id=claims["sid"],
            jti=claims["jti"],
            amr=tuple(amr),
            age_band=claims["age_band"],
            issued_at=datetime.fromtimestamp(issued_at, UTC),
            expires_at=datetime.fromtimestamp(expires_at, UTC),
        )


def _is_seconds(value: object) -> TypeGuard[int]:
    # We only issue whole non-negative seconds; bool is an int subclass and must not pass.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
