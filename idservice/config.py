"""Settings from IDSERVICE_* environment variables, validated once; no I/O at import."""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from idservice.config_values import (
    parse_app_id,
    parse_bool,
    parse_duration,
    parse_env,
    parse_hostport,
    parse_int,
    parse_list,
    parse_log_level,
    parse_networks,
    parse_processes,
    parse_provider,
    parse_rate,
    parse_url,
)
from idservice.cpus import available_cpus

PREFIX = "IDSERVICE_"
# The drivers the service ships with: sqlite3 (standard library) and psycopg 3.
_DATABASE_URL = re.compile(r"^(sqlite(\+pysqlite)?|postgresql(\+psycopg)?)://")
# Contract §2: access tokens live at most 15 minutes.
MAX_ACCESS_TOKEN_TTL = timedelta(minutes=15)
# 안전성 확보조치 기준 제8조: records of access to personal data are kept at least 2 years.
MIN_ACCESS_AUDIT_RETENTION = timedelta(days=730)
# Contract §1: with no configuration the service keeps its SQLite file under ./var/, which it
# creates. Any other SQLite URL must name a directory that exists: a typo in the path is an
# error, not a new directory with an empty database in it.
DEFAULT_DATABASE_URL = "sqlite:///./var/idservice.db"
# OWASP Password Storage Cheat Sheet (Argon2id): equally strong (memory KiB, time cost) pairs
# at parallelism 1; production needs one pair met or exceeded in both values.
OWASP_ARGON2_MINIMUMS: tuple[tuple[int, int], ...] = (
    (47104, 1),
    (19456, 2),
    (12288, 3),
    (9216, 4),
    (7168, 5),
)
# Every setting that names an upstream the service calls (contract §1: production refuses
# plaintext http:// to anything but loopback).
UPSTREAM_URL_SETTINGS = (
    "portone_api_base",
    "google_discovery_url",
    "kakao_discovery_url",
    "kakao_api_base",
    "notify_webhook_url",
)

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is loopback: localhost, 127.0.0.0/8 or ::1."""
    split = urlsplit(url)
    # A user part or a backslash lets parsers disagree on the host: not loopback.
    if "@" in split.netloc or "\\" in split.netloc:
        return False
    try:
        host = split.hostname
    except ValueError:
        return False
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def argon2_memory_minimum(time_cost: int) -> int | None:
    """The least memory (KiB) OWASP accepts at `time_cost`; None when no pair allows it."""
    allowed = [memory for memory, time in OWASP_ARGON2_MINIMUMS if time <= time_cost]
    return min(allowed) if allowed else None


def _env(parser: Callable[[str], Any], default: Any = None, *, secret: bool = False) -> Any:
    """Declare a field read from IDSERVICE_<NAME> with a parser; secrets stay out of repr()."""
    return field(default=default, repr=not secret, metadata={"parser": parser})


@dataclass(frozen=True)
class Settings:
    """Every setting of the service. Build with `Settings.from_env()`."""

    env: Literal["development", "production"] = _env(parse_env, "development")
    listen: str = _env(parse_hostport, "127.0.0.1:50051")
    var_dir: Path = _env(Path, Path("./var"))
    database_url: str = _env(str.strip, DEFAULT_DATABASE_URL, secret=True)
    data_keys: str | None = _env(str.strip, secret=True)
    signing_key_file: Path | None = _env(Path)
    issuer: str = _env(str.strip, "idservice")
    access_token_audience: str = _env(str.strip, "idservice")
    access_token_ttl: timedelta = _env(parse_duration, timedelta(minutes=15))
    refresh_token_ttl: timedelta = _env(parse_duration, timedelta(days=30))
    identity_provider: Literal["portone", "sandbox"] = _env(parse_provider, "sandbox")
    portone_api_base: str = _env(parse_url, "https://api.portone.io")
    portone_api_secret: str | None = _env(str.strip, secret=True)
    portone_store_id: str | None = _env(str.strip)
    google_client_ids: tuple[str, ...] = _env(parse_list, ())
    google_discovery_url: str = _env(
        parse_url, "https://accounts.google.com/.well-known/openid-configuration"
    )
    google_client_secret: str | None = _env(str.strip, secret=True)
    kakao_client_ids: tuple[str, ...] = _env(parse_list, ())
    kakao_discovery_url: str = _env(
        parse_url, "https://kauth.kakao.com/.well-known/openid-configuration"
    )
    kakao_api_base: str = _env(parse_url, "https://kapi.kakao.com")
    kakao_client_secret: str | None = _env(str.strip, secret=True)
    kakao_app_id: str | None = _env(parse_app_id)
    require_identity_verification: bool = _env(parse_bool, True)
    terms_version: str = _env(str.strip, "2024-05-15")
    privacy_policy_version: str = _env(str.strip, "2024-05-15")
    argon2_time_cost: int = _env(parse_int(1, 20), 2)
    argon2_memory_cost: int = _env(parse_int(1024, 4 * 1024 * 1024), 19456)
    argon2_parallelism: int = _env(parse_int(1, 16), 1)
    notify_webhook_url: str | None = _env(parse_url)
    notify_webhook_secret: str | None = _env(str.strip, secret=True)
    dispatch_in_serve: bool = _env(parse_bool, True)
    guardian_consent_window: timedelta = _env(parse_duration, timedelta(days=5))
    rejoin_cooldown: timedelta = _env(parse_duration, timedelta(days=30))
    connection_log_retention: timedelta = _env(parse_duration, timedelta(days=90))
    access_audit_retention: timedelta = _env(parse_duration, MIN_ACCESS_AUDIT_RETENTION)
    lockout_threshold: int = _env(parse_int(1, 1000), 5)
    lockout_duration: timedelta = _env(parse_duration, timedelta(minutes=15))
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = _env(
        parse_networks, ()
    )
    # Per end-user address named by a trusted proxy: (count, window).
    rate_limit_failed_logins: tuple[int, timedelta] = _env(parse_rate, (20, timedelta(minutes=1)))
    rate_limit_verifications: tuple[int, timedelta] = _env(parse_rate, (30, timedelta(minutes=1)))
    rate_limit_consent_codes: tuple[int, timedelta] = _env(parse_rate, (20, timedelta(minutes=10)))
    rate_limit_consent_resends: tuple[int, timedelta] = _env(
        parse_rate, (10, timedelta(minutes=10))
    )
    tls_cert_file: Path | None = _env(Path)
    tls_key_file: Path | None = _env(Path)
    tls_client_ca_file: Path | None = _env(Path)
    metrics_listen: str | None = _env(parse_hostport)
    # Plaintext, grpc.health.v1.Health alone (for the kubelet's gRPC probes).
    health_listen: str | None = _env(parse_hostport)
    shutdown_grace: timedelta = _env(parse_duration, timedelta(seconds=10))
    max_workers: int = _env(parse_int(1, 1024), 64)
    max_concurrent_rpcs: int = _env(parse_int(1, 100000), 512)
    db_pool_size: int = _env(parse_int(1, 500), 20)
    purge_interval: timedelta = _env(parse_duration, timedelta(hours=1))
    log_level: str = _env(parse_log_level, "INFO")
    # None: the environment's default (1 in development, auto in production); see `process_count`.
    processes: int | Literal["auto"] | None = _env(parse_processes)

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def database_kind(self) -> str:
        """`sqlite` or `postgresql` (what the start-up line names; never the URL)."""
        return "sqlite" if self.database_url.startswith("sqlite") else "postgresql"

    @property
    def process_count(self) -> int:
        """Server processes for `serve` (contract §1); `auto` is one per CPU this may use
        (the affinity, capped by the cgroup CPU quota)."""
        processes = self.processes
        if processes is None:
            processes = "auto" if self.production else 1
        return available_cpus() if processes == "auto" else processes

    @property
    def keys_dir(self) -> Path:
        return self.var_dir / "keys"

    @property
    def creates_database_directory(self) -> bool:
        """Only the default SQLite database's directory (./var) is created when missing."""
        return self.database_url == DEFAULT_DATABASE_URL

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, read_dotenv: bool = True
    ) -> Settings:
        """Read IDSERVICE_* variables (and ./.env); raise ConfigError on the first bad one."""
        source: dict[str, str] = {}
        if read_dotenv and environ is None:
            source.update(_read_dotenv(Path(".env")))
        source.update(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for f in fields(cls):
            variable = PREFIX + f.name.upper()
            raw = source.get(variable)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[f.name] = f.metadata["parser"](raw)
            except ValueError as exc:
                raise ConfigError(variable, str(exc)) from None
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Cross-field rules; production refuses development shortcuts (contract §1)."""
        for name in (
            "access_token_ttl",
            "refresh_token_ttl",
            "lockout_duration",
            "guardian_consent_window",
            "shutdown_grace",
            "purge_interval",
        ):
            if getattr(self, name) <= timedelta(0):
                raise ConfigError(PREFIX + name.upper(), "must be longer than 0s")
        if self.access_token_ttl > MAX_ACCESS_TOKEN_TTL:
            raise ConfigError(PREFIX + "ACCESS_TOKEN_TTL", "must be at most 15m")
        if self.access_audit_retention < MIN_ACCESS_AUDIT_RETENTION:
            raise ConfigError(
                PREFIX + "ACCESS_AUDIT_RETENTION", "must be at least 730d (2 years, by law)"
            )
        if not _DATABASE_URL.match(self.database_url):
            raise ConfigError(
                PREFIX + "DATABASE_URL", "expected a sqlite:// or postgresql+psycopg:// URL"
            )
        sqlite_directory = _sqlite_directory(self.database_url)
        if (
            sqlite_directory is not None
            and not self.creates_database_directory
            and not sqlite_directory.is_dir()
        ):
            raise ConfigError(
                PREFIX + "DATABASE_URL",
                "the SQLite database's directory does not exist; create it first",
            )
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            missing = "TLS_KEY_FILE" if self.tls_cert_file else "TLS_CERT_FILE"
            raise ConfigError(PREFIX + missing, "TLS needs both a certificate and a key file")
        if self.health_listen:
            self._check_health_port(int(self.health_listen.rpartition(":")[2]))
        if (
            self.metrics_listen
            and _port(self.metrics_listen)
            and (_port(self.metrics_listen) == _port(self.listen))
        ):
            raise ConfigError(
                PREFIX + "METRICS_LISTEN", f"must be another port than {PREFIX}LISTEN"
            )
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ConfigError(PREFIX + "TLS_CERT_FILE", "mutual TLS needs a server certificate")
        if self.identity_provider == "portone" and not self.portone_api_secret:
            raise ConfigError(PREFIX + "PORTONE_API_SECRET", "required with the portone provider")
        if not self.production:
            return
        if self.identity_provider == "sandbox":
            raise ConfigError(PREFIX + "IDENTITY_PROVIDER", "sandbox is refused in production")
        if not self.data_keys:
            raise ConfigError(PREFIX + "DATA_KEYS", "development keys are refused in production")
        if not self.signing_key_file:
            raise ConfigError(
                PREFIX + "SIGNING_KEY_FILE", "development keys are refused in production"
            )
        if not self.tls_cert_file:
            raise ConfigError(PREFIX + "TLS_CERT_FILE", "TLS is required in production")
        if self.notify_webhook_url and not self.notify_webhook_secret:
            raise ConfigError(
                PREFIX + "NOTIFY_WEBHOOK_SECRET", "required with a webhook URL in production"
            )
        self._check_production_hardening()

    def _check_health_port(self, port: int) -> None:
        """A port of its own: one shared (SO_REUSEPORT) would take API connections."""
        for name in ("listen", "metrics_listen"):
            other: str | None = getattr(self, name)
            if port and other and int(other.rpartition(":")[2]) == port:
                raise ConfigError(
                    PREFIX + "HEALTH_LISTEN", f"must be another port than {PREFIX}{name.upper()}"
                )

    def _check_production_hardening(self) -> None:
        """Production refuses plaintext upstreams, weak Argon2 and keys in the dev directory."""
        for name in UPSTREAM_URL_SETTINGS:
            url: str | None = getattr(self, name)
            if url and url.startswith("http://") and not is_loopback_url(url):
                raise ConfigError(
                    PREFIX + name.upper(),
                    "plaintext http:// is refused in production except to loopback; use https://",
                )
        minimum = argon2_memory_minimum(self.argon2_time_cost)
        if minimum is None or self.argon2_memory_cost < minimum:
            pairs = ", ".join(f"m={m}/t={t}" for m, t in OWASP_ARGON2_MINIMUMS)
            raise ConfigError(
                PREFIX + "ARGON2_MEMORY_COST",
                f"{self.argon2_memory_cost} KiB at IDSERVICE_ARGON2_TIME_COST="
                f"{self.argon2_time_cost} is below the OWASP minimum for Argon2id; meet or "
                f"exceed one of {pairs}",
            )
        if self.signing_key_file and _inside(self.signing_key_file, self.keys_dir):
            raise ConfigError(
                PREFIX + "SIGNING_KEY_FILE",
                f"must not be inside the development keys directory {self.keys_dir}",
            )


def misspelt_variables(environ: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """IDSERVICE_* names set (in the environment, or ./.env when `environ` is None) that no
    setting reads but one nearly does, each with that setting's name: a typo is otherwise
    silently without effect. (Names far from every setting, such as the build scripts'
    IDSERVICE_IMAGE, are left alone.)"""
    source = _read_dotenv(Path(".env")) if environ is None else {}
    source.update(os.environ if environ is None else environ)
    known = [PREFIX + f.name.upper() for f in fields(Settings)]
    found = []
    for name in sorted(n for n in source if n.startswith(PREFIX) and n not in known):
        meant = _meant(name, known)
        if meant:
            found.append((name, meant))
    return found


# Names other services use for a setting (`IDSERVICE_ENVIRONMENT=production` would otherwise
# leave the service in development, silently). Not `IDSERVICE_PORT` or `IDSERVICE_SERVICE_*`:
# Kubernetes sets those for a Service named idservice (service links).
_OTHER_NAMES = {
    "ENVIRONMENT": "ENV",
    "DB": "DATABASE_URL",
    "DB_URL": "DATABASE_URL",
    "DATABASE": "DATABASE_URL",
    "DSN": "DATABASE_URL",
    "METRICS_PORT": "METRICS_LISTEN",
    "LISTEN_ADDRESS": "LISTEN",
    "ISSUER_URL": "ISSUER",
    "TLS_CA": "TLS_CLIENT_CA_FILE",
    "TLS_CA_FILE": "TLS_CLIENT_CA_FILE",
    "TLS_CERT": "TLS_CERT_FILE",
    "TLS_KEY": "TLS_KEY_FILE",
}
# The start of exactly one setting's name (`IDSERVICE_METRICS`), when at least this long.
_MIN_STEM = 3


def _meant(name: str, known: list[str]) -> str | None:
    """The setting `name` was most likely meant to be, if any."""
    other = _OTHER_NAMES.get(name.removeprefix(PREFIX))
    if other is not None and PREFIX + other in known:
        return PREFIX + other
    longer = [k for k in known if k.startswith(name + "_")]
    if len(longer) == 1 and len(name) - len(PREFIX) >= _MIN_STEM:
        return longer[0]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
    return close[0] if close else None


def _inside(path: Path, directory: Path) -> bool:
    """Whether `path` lies in `directory` (both resolved: `..` and symlinks do not hide it)."""
    try:
        return path.resolve().is_relative_to(directory.resolve())
    except (OSError, RuntimeError):  # a symlink loop: reading the key reports it
        return False


def _sqlite_directory(url: str) -> Path | None:
    """The directory of a SQLite database file; None for other databases and in-memory ones."""
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        database = make_url(url).database or ""
    except ArgumentError:
        raise ConfigError(PREFIX + "DATABASE_URL", "is not a valid SQLAlchemy URL") from None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().parent


def _read_dotenv(path: Path) -> dict[str, str]:
    """Read IDSERVICE_* entries of a .env file; the process environment wins over it."""
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if k.startswith(PREFIX) and v is not None}


def _port(hostport: str) -> int:
    return int(hostport.rpartition(":")[2])
