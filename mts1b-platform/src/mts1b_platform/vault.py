"""A Vault session: log in (token or AppRole), read KV v2, keep the token renewed.

:func:`mts1b_platform.config.load_config` reads a service's secrets once, at start. A service that
runs for days holds a token whose TTL runs out, and it may use the token for more than that read
(other secrets engines through :attr:`VaultSession.client`, leases tied to the token). This module
is the one place that logs in, reads ``<mount>/mts1b/<service>`` and renews; ``load_config`` uses
the same :class:`VaultSession` for its one-shot read.

When renewal runs, and why both ways:

* **On demand.** Every :meth:`VaultSession.read` and every use of :attr:`VaultSession.client`
  first calls :meth:`VaultSession.ensure_token`: once two thirds of the token's TTL have passed
  (:data:`RENEW_FRACTION`, about what Vault's own agent does) it renews (``renew-self``), and when
  the token can no longer be renewed - its max TTL caps the renewal, it was revoked, or it lapsed
  while nobody read - it logs in again with AppRole (or reads the token file again, for a token
  that an agent rewrites). A fresh token costs one clock comparison and no thread, which is why
  ``load_config`` uses only this.
* **In the background** (:meth:`VaultSession.start_renewal`). On-demand renewal alone lets a token
  lapse whenever reads are further apart than its TTL. With AppRole that costs a login, but a
  token given in ``VAULT_TOKEN`` cannot be replaced once it lapses, and a token that other code
  holds through ``client`` must stay valid between our reads. A daemon thread therefore sleeps
  until the renewal point, renews, and logs in again with AppRole before a capped token reaches
  its max TTL, so there is no window in which the session holds a dead token.

A read refused with "permission denied" by a session that can log in again (AppRole, token file)
logs in once more and retries: the usual cause is a token revoked by an operator, and a real
policy denial still fails, with its own message. Every token and secret id the session sees is
registered with :func:`mts1b_platform.redaction.register_secret`; errors name the address, the
path and the variable to check, never a credential (:class:`~mts1b_platform.config.ConfigError`
with ``context["reason"]``).

>>> with VaultSession(VaultSettings.from_env()) as vault:   # doctest: +SKIP
...     vault.start_renewal()
...     secrets = vault.read("oms")
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from mts1b_platform.config import (
    VAULT_TOKEN_FILE_ENV,
    ConfigError,
    VaultSettings,
    read_token_file,
)
from mts1b_platform.logging import get_logger
from mts1b_platform.redaction import redact, register_secret, register_secrets

__all__ = ["RENEW_FRACTION", "VaultSession"]

RENEW_FRACTION = 2 / 3
"""Renew once this share of the token's TTL has passed."""

_MIN_INTERVAL = 0.5
"""Shortest wait between two renewals, so a token about to lapse cannot make the thread spin."""

_RETRY_MAX = 30.0
"""Longest wait between two tries of the background thread while Vault is down or sealed."""

_log = get_logger(__name__)


class VaultSession:
    """A logged-in Vault client for one process, its token kept renewed (see the module docs).

    Thread-safe: reads may come from any thread while the renewal thread runs. Use it as a
    context manager or call :meth:`close`, which stops the thread and revokes a token that the
    session obtained itself (AppRole); a token it was given is never revoked.
    """

    def __init__(self, settings: VaultSettings, *,
                 renew_fraction: float = RENEW_FRACTION) -> None:
        if not 0 < renew_fraction < 1:
            raise ValueError(f"renew_fraction must lie between 0 and 1, got {renew_fraction!r}")
        self._settings = settings
        self._fraction = renew_fraction
        self._lock = threading.RLock()
        self._client: Any = None
        self._owned = False  # the token came from our AppRole login: ours to revoke
        self._granted = 0.0  # what a renewal should give, seconds
        self._renewable = False
        self._capped = False  # a renewal gave less than _granted: the max TTL is near
        self._expires: float | None = None  # time.monotonic(); None: the token never lapses
        self._renew_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        register_secrets((settings.token, settings.role_id, settings.secret_id))

    @property
    def settings(self) -> VaultSettings:
        return self._settings

    @property
    def client(self) -> Any:
        """The logged-in ``hvac.Client`` (token renewed first if due), for other engines."""
        self.ensure_token()
        return self._client

    @property
    def expires_in(self) -> float | None:
        """Seconds until the current token lapses; None before login or for a token without TTL."""
        with self._lock:
            return None if self._expires is None else self._expires - time.monotonic()

    def __enter__(self) -> VaultSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- login and renewal ---------------------------------------------------------------

    def login(self) -> None:
        """Log in now: AppRole when ``role_id`` and ``secret_id`` are set, else the token."""
        with self._lock:
            self._login()

    def ensure_token(self) -> None:
        """Log in if not yet; renew when due; log in again when renewal no longer helps.

        Raises :class:`ConfigError` (reason ``expired``) when the token has lapsed and nothing
        can replace it (a ``VAULT_TOKEN`` past its max TTL).
        """
        with self._lock:
            if self._client is None:
                self._login()
            elif self._renew_at is not None and time.monotonic() >= self._renew_at:
                self._refresh()

    def start_renewal(self) -> None:
        """Log in if needed, then keep the token renewed from a daemon thread until :meth:`close`.

        Login errors are raised here, to the caller; later failures are logged and retried with
        backoff (Vault sealed or unreachable for a while), and the thread ends when nothing can
        replace a lapsed token or the token never lapses.
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self.ensure_token()
            self._stop.clear()
            self._thread = threading.Thread(target=self._renew_loop, daemon=True,
                                            name="mts1b-vault-renewal")
            self._thread.start()

    def close(self) -> None:
        """Stop the renewal thread; revoke a token this session obtained (best effort)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self._settings.timeout + 1)
        with self._lock:
            client, owned = self._client, self._owned
            self._client, self._owned, self._expires, self._renew_at = None, False, None, None
            self._thread = None
        if client is None:
            return
        if owned:
            self._revoke(client.token)
        client.adapter.close()

    def _renew_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            with self._lock:
                due = self._renew_at
            if due is None:
                return
            delay = due - time.monotonic()
            if failures:
                delay = min(_RETRY_MAX, _MIN_INTERVAL * 2 ** failures)
            if self._stop.wait(max(delay, 0.0)):
                return
            try:
                self.ensure_token()
                failures = 0
            except ConfigError as exc:
                failures += 1
                final = exc.context.get("reason") == "expired" or (
                    exc.context.get("reason") == "token_rejected" and not self._can_login_again())
                _log.warning("Vault token renewal failed%s: %s",
                             "; renewal stops" if final else f" (try {failures})", exc.message)
                if final:
                    return
            except Exception:  # an answer hvac could not make sense of: keep trying
                failures += 1
                _log.exception("Vault token renewal failed (try %d)", failures)

    def _can_login_again(self) -> bool:
        s = self._settings
        return bool(s.role_id and s.secret_id) or s.token_file is not None

    def _login(self) -> None:
        if self._client is not None:
            self._login_with(self._client)
            return
        client = self._new_client()
        try:
            self._login_with(client)
        except BaseException:
            client.adapter.close()  # a first login that failed leaves no connection open
            raise

    def _login_with(self, client: Any) -> None:
        s = self._settings
        # A token of ours that is still valid is revoked once replaced, so that logging in
        # again does not leave tokens behind until their TTL.
        replaced = client.token if self._owned and (
            self._expires is None or time.monotonic() < self._expires) else None
        if s.role_id and s.secret_id:
            answer = self._call("login", None, client.auth.approle.login, role_id=s.role_id,
                                secret_id=s.secret_id, mount_point=s.approle_mount)
            auth = answer["auth"]
            register_secret(auth["client_token"])
            client.token = auth["client_token"]
            ttl = float(auth["lease_duration"])
            self._owned = True
            self._granted = ttl
            self._set_lease(ttl or None, bool(auth["renewable"]))
        else:
            token = read_token_file(s.token_file) if s.token_file else s.token
            if not token:
                raise ConfigError(
                    f"Vault at {s.addr} has no credentials: set VAULT_TOKEN, "
                    f"{VAULT_TOKEN_FILE_ENV}, or VAULT_ROLE_ID and VAULT_SECRET_ID",
                    vault=s.addr, reason="no_credentials")
            client.token = token
            self._owned = False
            info = self._call("lookup", None, client.auth.token.lookup_self)["data"]
            ttl = float(info.get("ttl") or 0)
            self._granted = float(info.get("period") or info.get("creation_ttl") or ttl)
            # A token without TTL has no expire_time; ttl 0 with one means it is about to lapse.
            self._set_lease(None if info.get("expire_time") is None else ttl,
                            bool(info.get("renewable")))
        self._client = client
        self._capped = False
        if replaced and replaced != client.token:
            self._revoke(replaced)

    def _revoke(self, token: str) -> None:
        """Revoke ``token`` through a client of its own, so that reads going on meanwhile keep
        the current token. Best effort: a token left behind lapses at its TTL anyway."""
        client = self._new_client()
        client.token = token
        try:
            self._call("revoke", None, client.auth.token.revoke_self)
        except ConfigError as exc:
            _log.debug("Vault token not revoked: %s", exc.message)
        finally:
            client.adapter.close()

    def _refresh(self) -> None:
        alive = self._expires is None or time.monotonic() < self._expires
        if alive and self._renewable and not self._capped:
            try:
                auth = self._call("renew", None, self._client.auth.token.renew_self)["auth"]
            except ConfigError as exc:
                reason = exc.context.get("reason")
                if reason == "not_renewable":  # e.g. "past the max TTL": no further renewal
                    self._renewable = False
                elif reason != "token_rejected" or not self._can_login_again():
                    raise  # sealed or unreachable: try again later; revoked: nothing to do
                # otherwise revoked or lapsed: log in again below
            else:
                ttl = float(auth["lease_duration"])
                self._capped = ttl < self._granted
                self._set_lease(ttl, bool(auth["renewable"]))
                return
        if self._can_login_again():
            self._login()
            return
        if not alive:
            raise ConfigError(
                f"the Vault token {self._token_source()} for {self._settings.addr} has lapsed "
                "and cannot be renewed any further (max TTL reached); give the service AppRole "
                f"credentials (VAULT_ROLE_ID, VAULT_SECRET_ID) or a token file "
                f"({VAULT_TOKEN_FILE_ENV}) so that it can log in again",
                vault=self._settings.addr, reason="expired")
        self._renew_at = self._expires  # capped or not renewable: nothing to do until it lapses

    def _set_lease(self, ttl: float | None, renewable: bool) -> None:
        self._renewable = renewable
        if ttl is None:
            self._expires = self._renew_at = None
            return
        now = time.monotonic()
        self._expires = now + ttl
        self._renew_at = min(self._expires, now + max(ttl * self._fraction, _MIN_INTERVAL))

    # -- reading ---------------------------------------------------------------------------

    def read(self, service: str, *, missing_ok: bool = False) -> dict[str, Any]:
        """The KV v2 data at ``<mount>/mts1b/<service>``.

        Nothing stored there (never written, or the latest version deleted) raises
        :class:`ConfigError` with reason ``not_found``, or returns ``{}`` with ``missing_ok``.
        """
        s = self._settings
        for attempt in (1, 2):
            self.ensure_token()
            try:
                answer = self._call("read", service, self._client.secrets.kv.v2.read_secret_version,
                                    path=s.path_for(service), mount_point=s.mount,
                                    raise_on_deleted_version=True)
                break
            except ConfigError as exc:
                reason = exc.context.get("reason")
                if missing_ok and reason == "not_found":
                    return {}
                if reason != "denied" or attempt == 2 or not self._can_login_again():
                    raise
                self.login()  # a revoked token reads as "permission denied": once more, fresh
        data = answer.get("data") if isinstance(answer, dict) else None
        data = data.get("data") if isinstance(data, dict) else None
        if not isinstance(data, dict):
            raise ConfigError(f"Vault at {s.addr} returned no KV v2 data object for "
                              f"{s.mount}/{s.path_for(service)}",
                              vault=s.where(service), reason="bad_data")
        return dict(data)

    # -- plumbing -----------------------------------------------------------------------------

    def _new_client(self) -> Any:
        s = self._settings
        try:
            import hvac
        except ImportError:
            raise ConfigError(f"Vault is configured ({s.addr}) but hvac is not installed: "
                              'pip install "hvac>=2.1,<3" (the vault extra of mts1b-platform)',
                              vault=s.addr, reason="no_client") from None
        return hvac.Client(url=s.addr, verify=s.verify, cert=s.client_cert, timeout=s.timeout,
                           namespace=s.namespace)

    def _token_source(self) -> str:
        s = self._settings
        if self._owned:
            return f"from the AppRole login at auth/{s.approle_mount}"
        if s.token_file:
            return f"from {VAULT_TOKEN_FILE_ENV}={s.token_file}"
        return "from VAULT_TOKEN"

    def _call(self, step: str, service: str | None, fn: Callable[..., Any],
              **kwargs: Any) -> Any:
        """``fn(**kwargs)``, with hvac's and requests' errors turned into a ConfigError."""
        from hvac import exceptions as hvac_errors
        from requests import exceptions as http_errors

        try:
            return fn(**kwargs)
        except (hvac_errors.VaultError, http_errors.RequestException) as exc:
            raise self._error(exc, step, service) from None

    def _error(self, exc: Exception, step: str, service: str | None) -> ConfigError:
        from hvac import exceptions as hvac_errors
        from requests import exceptions as http_errors

        s = self._settings
        addr = s.addr
        path = f"{s.mount}/{s.path_for(service)}" if service else ""
        doing = {"login": f"logging in with AppRole at auth/{s.approle_mount}",
                 "lookup": "looking up its token", "renew": "renewing its token",
                 "revoke": "revoking its token", "read": f"reading {path}"}[step]
        # Vault's own words, never the exception text (which can carry a response body).
        detail = redact("; ".join(" ".join(str(e).split())
                                  for e in getattr(exc, "errors", None) or ()))
        if isinstance(exc, http_errors.SSLError):
            reason, message = "tls", (
                f"TLS with Vault at {addr} failed while {doing}: check VAULT_CACERT, "
                "VAULT_CLIENT_CERT/VAULT_CLIENT_KEY or VAULT_SKIP_VERIFY")
        elif isinstance(exc, http_errors.RequestException):
            reason, message = "unreachable", (
                f"Vault at {addr} is unreachable ({type(exc).__name__}) while {doing}")
        elif isinstance(exc, hvac_errors.VaultDown) and "sealed" in detail.lower():
            reason, message = "sealed", (
                f"Vault at {addr} is sealed (while {doing}); it must be unsealed "
                "(`bao operator unseal` / `vault operator unseal`) before anything can be read")
        elif step == "login" and isinstance(exc, hvac_errors.InvalidRequest
                                            | hvac_errors.Forbidden):
            reason, message = "login_failed", (
                f"Vault at {addr} refused the AppRole login at auth/{s.approle_mount}/login "
                f"({detail or 'no detail'}): check VAULT_ROLE_ID and VAULT_SECRET_ID")
        elif step == "renew" and (isinstance(exc, hvac_errors.InvalidRequest) or (
                isinstance(exc, hvac_errors.InternalServerError)  # OpenBao: "past the max TTL"
                and any(w in detail.lower() for w in ("max ttl", "not renewable")))):
            reason, message = "not_renewable", (
                f"Vault at {addr} will not renew the token {self._token_source()} any further "
                f"({detail or 'no detail'})")
        elif step in ("lookup", "renew") and isinstance(exc, hvac_errors.Forbidden):
            reason, message = "token_rejected", (
                f"Vault at {addr} rejected the token {self._token_source()} (permission denied "
                f"on auth/token/{step}-self): it is invalid, expired or revoked")
        elif step == "read" and isinstance(exc, hvac_errors.Forbidden):
            revoked = "" if self._can_login_again() else ", or the token was revoked"
            reason, message = "denied", (
                f"Vault at {addr} denied reading {path} (permission denied): the token's "
                f"policies do not allow read on {s.mount}/data/{s.path_for(str(service))}"
                f"{revoked}")
        elif step == "read" and isinstance(exc, hvac_errors.InvalidPath) and detail:
            reason, message = "no_mount", (
                f"Vault at {addr} has no secrets engine mounted at {s.mount}/ to read {path} "
                f"from (MTS_VAULT_MOUNT): {detail}")
        elif step == "read" and isinstance(exc, hvac_errors.InvalidPath):
            reason, message = "not_found", (
                f"Vault at {addr} has no secret at {path} (never written, its latest version "
                f"deleted, or {s.mount}/ is not a KV version 2 engine)")
        else:
            reason, message = "refused", (
                f"Vault at {addr} refused {doing} ({type(exc).__name__}"
                f"{f': {detail}' if detail else ''})")
        return ConfigError(message, vault=s.where(service) if service else addr, reason=reason)
