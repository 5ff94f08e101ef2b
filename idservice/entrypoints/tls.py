"""The API listener's TLS files: read and checked before anything listens, and read again when
they change (a renewed certificate is served from the next connection on, no restart).

`load_tls` names the variable of a file that cannot be used, as configuration errors do:
unreadable, not PEM, or a key that is not the certificate's (gRPC itself says only "cannot add
port"). `CertificateReloader` is gRPC's certificate fetcher: called before every new
connection's handshake, it compares the files' inode, size and modification time with those
it last loaded and, when they changed, loads them again. A set that does not check out (a rotation
caught half-written: a new certificate beside the old key) is not served; the one before stays
and a warning names the variable, once per change.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from idservice.config import ConfigError, Settings

log = logging.getLogger(__name__)

CERT_VARIABLE = "IDSERVICE_TLS_CERT_FILE"
KEY_VARIABLE = "IDSERVICE_TLS_KEY_FILE"
CLIENT_CA_VARIABLE = "IDSERVICE_TLS_CLIENT_CA_FILE"


@dataclass(frozen=True)
class TlsMaterial:
    """PEM bytes as gRPC takes them: the certificate chain, its key, the client CA (mutual TLS)."""

    certificate_chain: bytes
    private_key: bytes
    client_ca: bytes | None


def _files(settings: Settings) -> list[tuple[str, Path]]:
    assert settings.tls_cert_file is not None and settings.tls_key_file is not None
    files = [(CERT_VARIABLE, settings.tls_cert_file), (KEY_VARIABLE, settings.tls_key_file)]
    if settings.tls_client_ca_file:
        files.append((CLIENT_CA_VARIABLE, settings.tls_client_ca_file))
    return files


def _read(variable: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(variable, f"cannot read: {exc.strerror}") from None


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_tls(settings: Settings) -> TlsMaterial | None:
    """The TLS files of `settings`, checked (None without TLS); ConfigError names the variable
    of a file that cannot be served."""
    if not settings.tls_cert_file or not settings.tls_key_file:
        return None
    read = {variable: _read(variable, path) for variable, path in _files(settings)}
    chains: dict[str, list[x509.Certificate]] = {}
    for variable in (CERT_VARIABLE, CLIENT_CA_VARIABLE):
        if variable not in read:
            continue
        try:
            chains[variable] = x509.load_pem_x509_certificates(read[variable])
        except ValueError:
            raise ConfigError(variable, "is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(read[KEY_VARIABLE], password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(KEY_VARIABLE, "is not an unencrypted PEM private key") from None
    if _spki(key.public_key()) != _spki(chains[CERT_VARIABLE][0].public_key()):
        raise ConfigError(KEY_VARIABLE, f"is not the key of the certificate in {CERT_VARIABLE}")
    return TlsMaterial(
        certificate_chain=read[CERT_VARIABLE],
        private_key=read[KEY_VARIABLE],
        client_ca=read.get(CLIENT_CA_VARIABLE),
    )


Stamp = tuple[tuple[int, int, int] | None, ...]
C = TypeVar("C")


def _stamp(settings: Settings) -> Stamp:
    """Inode, size and modification time of each file (None for one that cannot be read now):
    a file replaced (a Kubernetes Secret's files are, through a symlink) or rewritten."""
    stamps: list[tuple[int, int, int] | None] = []
    for _variable, path in _files(settings):
        try:
            status = os.stat(path)
        except OSError:
            stamps.append(None)
        else:
            stamps.append((status.st_ino, status.st_size, status.st_mtime_ns))
    return tuple(stamps)


class CertificateReloader(Generic[C]):
    """Loads the TLS files again when they change; `__call__` is gRPC's certificate fetcher.

    `configure` turns checked material into what the server serves (gRPC's certificate
    configuration); it is a parameter so that this module does not import gRPC.
    """

    def __init__(self, settings: Settings, configure: Callable[[TlsMaterial], C]) -> None:
        self._settings = settings
        self._configure = configure
        self._lock = threading.Lock()
        self._loaded = _stamp(settings)
        self._refused: Stamp | None = None

    def __call__(self) -> C | None:
        stamp = _stamp(self._settings)
        with self._lock:
            if stamp in (self._loaded, self._refused):
                return None
            try:
                material = load_tls(self._settings)
            except ConfigError as exc:
                self._refused = stamp
                log.warning(
                    "TLS files changed but cannot be served; serving the ones before: %s", exc
                )
                return None
            self._loaded, self._refused = stamp, None
        assert material is not None
        log.info("TLS files changed: the new certificate goes to gRPC for new connections")
        return self._configure(material)
