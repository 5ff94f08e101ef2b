"""Keys, tokens and credentials for the OIDC issuer stand-in (`tests/fakes/oidc.py`).

`SigningKeys` holds the issuer's RSA keys (rotation, retirement, the JWK Set) and signs with
them. Honest tokens are RS256 JWS compact serialisations signed with joserfc; the forgeries are
built by hand, since a JOSE library rightly refuses to make them:

- `unsigned_token`: `alg: none`, i.e. `BASE64URL(header).BASE64URL(payload).` (RFC 7519 §6.1);
- `hs256_token` with the issuer's public-key PEM as the HMAC secret: the RS256/HS256 key
  confusion attack against verifiers that take the algorithm from the token header;
- `rs256_token` with a key the issuer never publishes, under a published or an unknown kid.

Plus the small parsers the endpoints need: PKCE S256, HTTP Basic client credentials, Bearer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Mapping
from urllib.parse import unquote_plus

from joserfc import jwt
from joserfc.jwk import RSAKey

RSA_BITS = 2048


def b64url(data: bytes) -> str:
    """BASE64URL without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def pkce_s256(code_verifier: str) -> str:
    """The S256 code challenge for a verifier: BASE64URL(SHA256(ASCII(code_verifier)))."""
    return b64url(hashlib.sha256(code_verifier.encode("ascii")).digest())


def new_kid() -> str:
    """A random kid shaped like Google's: 40 hex digits."""
    return secrets.token_hex(20)


def new_rsa_key(kid: str) -> RSAKey:
    """A fresh RSA signing key whose public JWK carries kid, `alg: RS256` and `use: sig`."""
    return RSAKey.generate_key(RSA_BITS, parameters={"kid": kid, "alg": "RS256", "use": "sig"})


def _json(value: Mapping[str, object]) -> bytes:
    return json.dumps(dict(value), separators=(",", ":"), ensure_ascii=False).encode()


def rs256_token(claims: Mapping[str, object], key: RSAKey, *, kid: str) -> str:
    """An RS256 JWT signed by `key`, with `kid` in the header (whatever kid the key itself has)."""
    return jwt.encode({"alg": "RS256", "kid": kid}, dict(claims), key, algorithms=["RS256"])


def unsigned_token(claims: Mapping[str, object], header: Mapping[str, object] | None = None) -> str:
    """An unsecured JWT: header (default `{"alg": "none", "typ": "JWT"}`, `header` merged over
    it, so `{"alg": "None"}` gives a case variant), payload and an empty signature."""
    full_header: dict[str, object] = {"alg": "none", "typ": "JWT", **(header or {})}
    return f"{b64url(_json(full_header))}.{b64url(_json(claims))}."


def hs256_token(
    claims: Mapping[str, object], secret: bytes, header: Mapping[str, object] | None = None
) -> str:
    """An HS256 JWT whose HMAC-SHA256 key is `secret` (e.g. an RSA public key's PEM bytes)."""
    full_header: dict[str, object] = {"alg": "HS256", "typ": "JWT", **(header or {})}
    signing_input = f"{b64url(_json(full_header))}.{b64url(_json(claims))}"
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def decode_unverified(token: str) -> tuple[dict[str, object], dict[str, object]]:
    """The (header, claims) of a compact JWS, without checking anything — for assertions."""
    header_part, payload_part, _ = token.split(".")
    header = json.loads(b64url_decode(header_part))
    claims = json.loads(b64url_decode(payload_part))
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("not a JWT: header or payload is not a JSON object")
    return header, claims


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """RFC 6749 §2.3.1: Basic over the form-urlencoded id and secret; None if absent/malformed."""
    if authorization is None or not authorization.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, secret = decoded.partition(":")
    return (unquote_plus(client_id), unquote_plus(secret)) if colon else None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (RFC 6750 §2.1), else None."""
    if authorization is None or not authorization.lower().startswith("bearer "):
        return None
    return authorization[7:].strip() or None


class SigningKeys:
    """An issuer's RSA keys and what they sign: ID tokens, and the forgeries verifiers must
    refuse. `OidcIssuer` (tests/fakes/oidc.py) serves them; `issuer` is its announced issuer."""

    def __init__(self) -> None:
        self._keys_lock = threading.Lock()
        kid = new_kid()
        self._keys: dict[str, RSAKey] = {kid: new_rsa_key(kid)}
        self._published: list[str] = [kid]
        self._current = kid
        self._foreign: RSAKey | None = None

    @property
    def issuer(self) -> str:
        """The `iss` ID tokens carry unless told otherwise."""
        raise NotImplementedError

    @property
    def current_kid(self) -> str:
        with self._keys_lock:
            return self._current

    @property
    def published_kids(self) -> list[str]:
        with self._keys_lock:
            return list(self._published)

    def rotate(self) -> str:
        """Make a new key current (signing new tokens) and publish it beside the old ones."""
        kid = new_kid()
        key = new_rsa_key(kid)
        with self._keys_lock:
            self._keys[kid] = key
            self._published.append(kid)
            self._current = kid
        return kid

    def retire(self, kid: str) -> None:
        """Stop publishing `kid`'s key; id_token(kid=...) can still sign with it."""
        with self._keys_lock:
            if kid not in self._keys:
                raise KeyError(kid)
            if kid in self._published:
                self._published.remove(kid)

    def jwks(self) -> dict[str, list[dict[str, object]]]:
        """The JWK Set `/jwks` serves: the published public keys."""
        with self._keys_lock:
            keys = [self._keys[kid] for kid in self._published]
        return {"keys": [dict(key.as_dict(private=False)) for key in keys]}

    def public_pem(self, kid: str | None = None) -> bytes:
        """The PEM (SubjectPublicKeyInfo) of the current key, or `kid`'s."""
        return self._key(kid)[1].as_pem(private=False)

    def _key(self, kid: str | None) -> tuple[str, RSAKey]:
        with self._keys_lock:
            chosen = self._current if kid is None else kid
            return chosen, self._keys[chosen]

    def claims(
        self,
        *,
        sub: str = "sub-1",
        aud: str | list[str] = "client-1",
        nonce: str | None = None,
        lifetime: int = 300,
        iat: int | None = None,
        issuer: str | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> dict[str, object]:
        """An ID token claim set; `extra` is applied last, so it can override any claim."""
        issued = int(time.time()) if iat is None else iat
        claims: dict[str, object] = {
            "iss": self.issuer if issuer is None else issuer,
            "sub": sub,
            "aud": aud,
            "iat": issued,
            "exp": issued + lifetime,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        claims.update(extra or {})
        return claims

    def id_token(
        self,
        *,
        sub: str = "sub-1",
        aud: str | list[str] = "client-1",
        nonce: str | None = None,
        lifetime: int = 300,
        iat: int | None = None,
        issuer: str | None = None,
        kid: str | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> str:
        """An RS256 ID token signed with the current key (or `kid`'s, published or not)."""
        claims = self.claims(
            sub=sub, aud=aud, nonce=nonce, lifetime=lifetime, iat=iat, issuer=issuer, extra=extra
        )
        chosen, key = self._key(kid)
        return rs256_token(claims, key, kid=chosen)

    def unsigned_token(
        self,
        claims: Mapping[str, object] | None = None,
        header: Mapping[str, object] | None = None,
    ) -> str:
        """`alg: none` with an empty signature; claims default to `self.claims()`."""
        return unsigned_token(self._claims_or_default(claims), header)

    def hs256_with_public_key(
        self, claims: Mapping[str, object] | None = None, *, kid: str | None = None
    ) -> str:
        """HS256 keyed with the current (or `kid`'s) public-key PEM, that kid in the header."""
        chosen, key = self._key(kid)
        secret = key.as_pem(private=False)
        return hs256_token(self._claims_or_default(claims), secret, {"kid": chosen})

    def foreign_key_token(
        self, claims: Mapping[str, object] | None = None, *, kid: str | None = None
    ) -> str:
        """RS256 signed by a never-published key, under the current (or given) published kid."""
        chosen = self.current_kid if kid is None else kid
        return rs256_token(self._claims_or_default(claims), self._foreign_key(), kid=chosen)

    def token_with_unknown_kid(
        self, claims: Mapping[str, object] | None = None, *, kid: str | None = None
    ) -> str:
        """RS256 signed by a never-published key under a kid never published."""
        chosen = f"unknown-{secrets.token_hex(8)}" if kid is None else kid
        return rs256_token(self._claims_or_default(claims), self._foreign_key(), kid=chosen)

    def _claims_or_default(self, claims: Mapping[str, object] | None) -> Mapping[str, object]:
        return self.claims() if claims is None else claims

    def _foreign_key(self) -> RSAKey:
        with self._keys_lock:
            if self._foreign is not None:
                return self._foreign
        key = new_rsa_key("foreign")
        with self._keys_lock:
            if self._foreign is None:
                self._foreign = key
            return self._foreign
