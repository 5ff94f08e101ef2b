"""The one composition root: build_app(settings, **overrides) wires the adapters into the ports.

Entrypoints reach adapters only through what this module returns: an `App` that runs commands,
probes the database and classifies storage errors, and the maintenance commands below.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, text

from idservice.adapters import trace_context
from idservice.adapters.crypto import (
    DEV_RING_FILENAME,
    FieldCipher,
    KeyRing,
    KeyRingError,
    load_or_create_dev_ring,
)
from idservice.adapters.db import key_check, migrations
from idservice.adapters.db.compiled import prepare_all as prepare_statements
from idservice.adapters.db.encrypted_columns import ENCRYPTED_COLUMNS
from idservice.adapters.db.engine import build_engine
from idservice.adapters.db.errors import as_domain_error
from idservice.adapters.db.gauges import StorageGauges, read_storage_gauges
from idservice.adapters.db.maintenance import reencrypt_all
from idservice.adapters.db.password_parameters import sample_password_hashes
from idservice.adapters.db.pool_events import ConnectionPoolObserver, observe_pool
from idservice.adapters.db.unit_of_work import SqlUnitOfWorkFactory
from idservice.adapters.hashing import (
    Argon2Parameters,
    PasswordHasher,
    PoolObserver,
)
from idservice.adapters.identity.portone import PortOneIdentityProvider
from idservice.adapters.identity.sandbox import SandboxIdentityProvider
from idservice.adapters.notify import LogSink, WebhookSink
from idservice.adapters.sns.google import GoogleProvider
from idservice.adapters.sns.kakao import KakaoProvider
from idservice.adapters.tokens import (
    AccessTokenIssuer,
    SigningKey,
    load_or_create_dev_signing_key,
    load_signing_key,
)
from idservice.config import ConfigError, Settings
from idservice.cpus import available_cpus
from idservice.domain.errors import DomainError
from idservice.domain.lockout import LockoutPolicy
from idservice.domain.sns import SnsProvider
from idservice.service_layer.connection_log import ConnectionRecorder, RecordConnections
from idservice.service_layer.policy import Policy
from idservice.service_layer.ports import EventSink, IdentityProvider, SnsIdentityProvider
from idservice.service_layer.rate_limits import RateLimit, RateLimits
from idservice.service_layer.registry import USE_CASES
from idservice.service_layer.use_cases import Command, Dependencies, UseCases, utc_now

log = logging.getLogger(__name__)

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Observers:
    """What the metrics watch inside the adapters: the Argon2 pool and the database pool."""

    hashing: PoolObserver | None = None
    db_pool: ConnectionPoolObserver | None = None


@dataclass
class App:
    """A wired service: what `serve` runs and what tests drive."""

    settings: Settings
    use_cases: UseCases
    engine: Engine
    cipher: FieldCipher
    closers: list[Callable[[], None]] = field(default_factory=list)
    # Connection-log entries of the calls served, written in batches (see `connection_log`).
    connections: ConnectionRecorder = field(init=False)

    def __post_init__(self) -> None:
        self.connections = ConnectionRecorder(
            lambda entries: self.use_cases.handle(RecordConnections(entries))
        )

    @property
    def deps(self) -> Dependencies:
        return self.use_cases.deps

    @property
    def sink(self) -> EventSink:
        return self.use_cases.deps.sink

    def handle(self, cmd: Command[R]) -> R:
        """Run one command through its use case."""
        return self.use_cases.handle(cmd)

    def database_reachable(self) -> bool:
        """One cheap read (read-only: on SQLite a probe must not take the write lock)."""
        try:
            with self.engine.execution_options(readonly=True).connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    @staticmethod
    def storage_error(exc: BaseException) -> DomainError | None:
        """DATABASE_UNAVAILABLE or SERVER_BUSY for a storage failure; None for anything else."""
        return as_domain_error(exc)

    def storage_gauges(self) -> StorageGauges:
        """The outbox's backlog and the consent requests by state (a few aggregate reads)."""
        return read_storage_gauges(self.engine, self.deps.clock())

    def reencrypt(self) -> dict[str, int]:
        """Re-encrypt every personal field under the current data key (counts per column)."""
        return reencrypt_all(self.engine, self.cipher)

    def close(self) -> None:
        try:
            self.connections.flush()
        except Exception as exc:
            log.warning("connection log entries lost at close: %s", type(exc).__name__)
        for close in reversed(self.closers):
            try:
                close()
            except Exception:
                log.warning("a component failed to close", exc_info=True)
        self.closers.clear()


def load_key_ring(settings: Settings) -> KeyRing | None:
    """The configured ring; None when the development ring is to be used."""
    if not settings.data_keys:
        return None
    try:
        return KeyRing.parse(settings.data_keys)
    except KeyRingError as exc:
        raise ConfigError("IDSERVICE_DATA_KEYS", str(exc)) from None


def load_dev_key_ring(settings: Settings, engine: Engine) -> KeyRing:
    """The development ring, generated only if the database was not written under another one."""
    ring_file = settings.keys_dir / DEV_RING_FILENAME
    try:
        key_check.refuse_lost_dev_ring(engine, ring_file, ENCRYPTED_COLUMNS)
    except key_check.KeyRingMismatchError as exc:
        raise ConfigError("IDSERVICE_DATA_KEYS", str(exc)) from None
    log.warning(
        "using development data keys from %s; set IDSERVICE_DATA_KEYS outside development",
        settings.keys_dir,
    )
    return load_or_create_dev_ring(settings.keys_dir)


def check_key_ring(engine: Engine, cipher: FieldCipher, now: datetime) -> None:
    """Contract §1: refuse a ring that cannot open the data already stored."""
    try:
        key_check.check_key_ring(engine, cipher, ENCRYPTED_COLUMNS, now=now)
    except key_check.KeyRingMismatchError as exc:
        raise ConfigError("IDSERVICE_DATA_KEYS", str(exc)) from None


def load_signer(settings: Settings) -> SigningKey:
    if settings.signing_key_file:
        try:
            return load_signing_key(Path(settings.signing_key_file))
        except (OSError, ValueError) as exc:
            raise ConfigError("IDSERVICE_SIGNING_KEY_FILE", _first_line(exc)) from None
    log.warning(
        "using a development signing key from %s; set IDSERVICE_SIGNING_KEY_FILE outside "
        "development",
        settings.keys_dir,
    )
    return load_or_create_dev_signing_key(settings.keys_dir)


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # The adapter may already name the variable; ConfigError names it once.
    text = text.removeprefix("IDSERVICE_SIGNING_KEY_FILE").lstrip(": ")
    return text[:200]


def build_identity_providers(
    settings: Settings, clock: Callable[[], datetime]
) -> dict[str, IdentityProvider]:
    """Only the configured provider: asking for another is PROVIDER_NOT_CONFIGURED.

    The sandbox mints verified people from a string, so it must never run beside PortOne
    (config refuses it in production altogether).
    """
    if settings.identity_provider == "portone":
        assert settings.portone_api_secret  # Settings.check requires it
        return {
            "portone": PortOneIdentityProvider(
                api_base=settings.portone_api_base,
                api_secret=settings.portone_api_secret,
                store_id=settings.portone_store_id,
            )
        }
    return {"sandbox": SandboxIdentityProvider(clock=clock)}


def build_sns_providers(settings: Settings) -> dict[SnsProvider, SnsIdentityProvider]:
    """Google and Kakao, each only when its client ids are configured (contract §1)."""
    providers: dict[SnsProvider, SnsIdentityProvider] = {}
    if settings.google_client_ids:
        providers[SnsProvider.GOOGLE] = GoogleProvider(
            discovery_url=settings.google_discovery_url,
            client_ids=settings.google_client_ids,
            client_secret=settings.google_client_secret,
        )
    if settings.kakao_client_ids:
        providers[SnsProvider.KAKAO] = KakaoProvider(
            discovery_url=settings.kakao_discovery_url,
            client_ids=settings.kakao_client_ids,
            api_base=settings.kakao_api_base,
            app_id=settings.kakao_app_id,
            client_secret=settings.kakao_client_secret,
        )
    return providers


def propagate_traces() -> None:
    """Outgoing HTTP calls carry the current API call's trace from now on (called once the
    OpenTelemetry SDK is set up; adapters/trace_context.py)."""
    trace_context.enable()


def build_event_sink(settings: Settings) -> EventSink:
    """The webhook when IDSERVICE_NOTIFY_WEBHOOK_URL is set, else the log (contract §1)."""
    if settings.notify_webhook_url:
        return WebhookSink(settings.notify_webhook_url, settings.notify_webhook_secret)
    return LogSink()


def policy_from(settings: Settings) -> Policy:
    """The business settings the use cases follow."""
    return Policy(
        terms_version=settings.terms_version,
        privacy_policy_version=settings.privacy_policy_version,
        require_identity_verification=settings.require_identity_verification,
        identity_provider=settings.identity_provider,
        refresh_token_ttl=settings.refresh_token_ttl,
        guardian_consent_window=settings.guardian_consent_window,
        rejoin_cooldown=settings.rejoin_cooldown,
        connection_log_retention=settings.connection_log_retention,
        lockout=LockoutPolicy(settings.lockout_threshold, settings.lockout_duration),
        access_audit_retention=settings.access_audit_retention,
        rate_limits=RateLimits(
            failed_logins=RateLimit(*settings.rate_limit_failed_logins),
            verifications=RateLimit(*settings.rate_limit_verifications),
            consent_codes=RateLimit(*settings.rate_limit_consent_codes),
            consent_resends=RateLimit(*settings.rate_limit_consent_resends),
        ),
    )


def _upgrade(engine: Engine) -> None:
    """Migrate; a database that a newer release migrated is a start-up error naming it."""
    try:
        migrations.upgrade(engine)
    except migrations.UnknownRevisionError as exc:
        raise ConfigError(
            "IDSERVICE_DATABASE_URL",
            f"the database is at revision {', '.join(exc.revisions)}, which this version does "
            f"not know (its newest is {exc.head}): a newer release migrated it; roll forward "
            "to that release or a later one",
        ) from None


def migrate_database(settings: Settings) -> str:
    """Apply the migrations to IDSERVICE_DATABASE_URL; returns the revision reached."""
    engine = build_engine(
        settings.database_url, pool_size=1, create_directory=settings.creates_database_directory
    )
    try:
        with migrations.startup_lock(engine):
            _upgrade(engine)
        return migrations.current_revision(engine) or "none"
    finally:
        engine.dispose()


def prepare_database(settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> None:
    """What `build_app` does first, once for several server processes: under the start-up lock,
    migrate and check the data key ring (generating development keys once); then read or
    generate the signing key. Refuses what `build_app` would refuse, with the same errors."""
    configured_ring = load_key_ring(settings)
    if settings.signing_key_file:
        load_signer(settings)
    engine = build_engine(
        settings.database_url, pool_size=1, create_directory=settings.creates_database_directory
    )
    try:
        with migrations.startup_lock(engine):
            _upgrade(engine)
            ring = (
                configured_ring
                if configured_ring is not None
                else load_dev_key_ring(settings, engine)
            )
            check_key_ring(engine, FieldCipher(ring), clock())
        if not settings.signing_key_file:
            load_signer(settings)
    finally:
        engine.dispose()


def build_app(
    settings: Settings,
    *,
    migrate: bool = True,
    clock: Callable[[], datetime] = utc_now,
    hasher: PasswordHasher | None = None,
    identity_providers: dict[str, IdentityProvider] | None = None,
    sink: EventSink | None = None,
    observers: Observers | None = None,
) -> App:
    """Wire everything from settings; overrides let tests swap a part for a real stand-in;
    `observers` see the Argon2 pool (unless a hasher is given) and the database pool."""
    configured_ring = load_key_ring(settings)
    # A configured key file is read now (a bad one stops start-up before anything is created);
    # development keys are generated only once the data key ring has been accepted.
    configured_signer = load_signer(settings) if settings.signing_key_file else None
    engine = build_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        create_directory=settings.creates_database_directory,
        # Unmigrated use reads a database that must already be there (`audit verify`).
        existing=not migrate,
    )
    try:
        with migrations.startup_lock(engine):
            if migrate:
                _upgrade(engine)
            ring = (
                configured_ring
                if configured_ring is not None
                else load_dev_key_ring(settings, engine)
            )
            cipher = FieldCipher(ring)
            check_key_ring(engine, cipher, clock())
        prepare_statements(engine.dialect)  # the hot statements, compiled once for this database
        signing_key = configured_signer or load_signer(settings)
    except BaseException:
        engine.dispose()
        raise
    # Closed again if a later step fails (no pool, thread or client left behind), else by the app.
    closers: list[Callable[[], None]] = [engine.dispose]
    try:
        app = _assemble(
            settings,
            engine,
            cipher,
            signing_key,
            closers,
            clock=clock,
            hasher=hasher,
            identity_providers=identity_providers,
            sink=sink,
            observers=observers or Observers(),
        )
    except BaseException:
        _close_all(closers)
        raise
    app.closers.extend(closers)
    return app


def _assemble(
    settings: Settings,
    engine: Engine,
    cipher: FieldCipher,
    signing_key: SigningKey,
    closers: list[Callable[[], None]],
    *,
    clock: Callable[[], datetime],
    hasher: PasswordHasher | None,
    identity_providers: dict[str, IdentityProvider] | None,
    sink: EventSink | None,
    observers: Observers,
) -> App:
    """The rest of `build_app`: each part's closer is added to `closers` as it is built."""
    if observers.db_pool is not None:
        observe_pool(engine, observers.db_pool)  # nothing is checked out at this point
    if hasher is None:
        # At most half of the RPC threads hash (and wait for hashes); the rest stay for cheap
        # calls. The CPUs (affinity, capped by a CPU quota) are shared by the server processes.
        cpus = max(1, available_cpus() // settings.process_count)
        workers = min(cpus, max(1, settings.max_workers // 2))
        hasher = PasswordHasher(
            Argon2Parameters(
                time_cost=settings.argon2_time_cost,
                memory_cost=settings.argon2_memory_cost,
                parallelism=settings.argon2_parallelism,
            ),
            workers=workers,
            # Password work may hold at most half of the RPC threads; past that a burst gets
            # SERVER_BUSY at once instead of starving cheap calls (token checks, refreshes).
            max_queue=max(1, settings.max_workers // 2 - workers),
            observer=observers.hashing,
        )
    closers.append(hasher.shutdown)
    hasher.calibrate_decoy(sample_password_hashes(engine))  # unknown emails cost what most do
    providers = (
        identity_providers
        if identity_providers is not None
        else build_identity_providers(settings, clock)
    )
    closers.extend(provider.close for provider in providers.values())
    event_sink = sink if sink is not None else build_event_sink(settings)
    closers.append(event_sink.close)
    sns_providers = build_sns_providers(settings)
    closers.extend(sns.close for sns in sns_providers.values())
    deps = Dependencies(
        uow=SqlUnitOfWorkFactory(engine, cipher),
        hasher=hasher,
        tokens=AccessTokenIssuer(
            signing_key,
            issuer=settings.issuer,
            audience=settings.access_token_audience,
            ttl=settings.access_token_ttl,
        ),
        cipher=cipher,
        providers=providers,
        sns=sns_providers,
        sink=event_sink,
        policy=policy_from(settings),
        clock=clock,
    )
    return App(settings=settings, use_cases=UseCases(deps, USE_CASES), engine=engine, cipher=cipher)


def _close_all(closers: list[Callable[[], None]]) -> None:
    for close in reversed(closers):
        try:
            close()
        except Exception as exc:  # the start-up's own error is the one raised
            log.warning("closing after a failed start-up: %s", type(exc).__name__)
