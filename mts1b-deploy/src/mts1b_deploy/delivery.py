"""The container's side of the bootstrap: a delivered, wrapped secret id turned into a login.

``vault bootstrap`` leaves, per service, ``delivery/<service>.json`` (mode 0600): the Vault
address, the AppRole's role id and a *response-wrapped* single-use secret id. In the service's
container, :func:`login_with_delivery` unwraps it (once: a wrapped id someone else unwrapped
fails, which is the alarm), logs in with the AppRole, writes the token - periodic, so the
service renews it for as long as it runs - to a mode-0600 token file and deletes the delivery.
The service then reads its secrets with ``MTS_VAULT_TOKEN_FILE`` pointing at that file
(:class:`mts1b_platform.vault.VaultSession` renews the token and reads the file again at each
login), so a restart needs no new secret id - as Vault Agent's auto-auth with a token sink
does, without an agent process.
"""

from __future__ import annotations

import json
from pathlib import Path

import hvac
import hvac.exceptions
from mts1b_platform.redaction import register_secret, register_secrets

from mts1b_deploy.errors import VaultBootstrapError
from mts1b_deploy.files import write_secret_file
from mts1b_deploy.vaultstep import vault_step

__all__ = ["login_with_delivery", "read_delivery", "unwrap_delivery"]


def read_delivery(path: Path) -> dict[str, str]:
    """The delivery file a container received (see step 7)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VaultBootstrapError(f"cannot read the delivery file {path} "
                                  f"({type(exc).__name__})", path=str(path)) from None
    if not isinstance(data, dict) or not {"vault_addr", "role_id", "wrapped_secret_id"} <= set(
            data):
        raise VaultBootstrapError(f"{path} is not a delivery file written by vault bootstrap",
                                  path=str(path))
    register_secrets([str(data["role_id"]), str(data["wrapped_secret_id"])])
    return {k: str(v) for k, v in data.items()}


def unwrap_delivery(path: Path, verify: bool | str = True) -> tuple[str, str]:
    """``(role_id, secret_id)``: the wrapped secret id of the delivery file unwrapped (once:
    a second unwrap, or one after ``wrap_ttl``, fails - a sign that someone else used it)."""
    data = read_delivery(path)
    # the wrapping token is the request's own token: unwrapping needs no other credential
    client = hvac.Client(url=data["vault_addr"], verify=verify, token=data["wrapped_secret_id"])
    try:
        with vault_step("unwrap", path=str(path)):
            try:
                answer = client.sys.unwrap()
            except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
                raise VaultBootstrapError(
                    f"unwrap: the wrapped secret id of {path} was already unwrapped or has "
                    "expired: if this container did not unwrap it, someone else may have - "
                    "investigate, then run vault bootstrap again for a new one",
                    step="unwrap", path=str(path), reason="wrapping_token_invalid") from None
    finally:
        client.adapter.close()
    secret_id = str(answer["data"]["secret_id"])
    register_secret(secret_id)
    return data["role_id"], secret_id


def login_with_delivery(delivery: Path, token_file: Path, verify: bool | str = True) -> str:
    """Unwrap ``delivery``, log in with the AppRole, write the token to ``token_file`` (mode
    0600), delete ``delivery``; returns the token's accessor (not a secret: it names the token
    for lookups and revocation, and cannot be used to authenticate)."""
    data = read_delivery(delivery)
    role_id, secret_id = unwrap_delivery(delivery, verify=verify)
    client = hvac.Client(url=data["vault_addr"], verify=verify)
    try:
        with vault_step("AppRole login", path=str(delivery)):
            answer = client.auth.approle.login(role_id=role_id, secret_id=secret_id,
                                               use_token=False)
    finally:
        client.adapter.close()
    token = str(answer["auth"]["client_token"])
    register_secret(token)
    token_file.parent.mkdir(parents=True, exist_ok=True)
    write_secret_file(token_file, token + "\n")
    delivery.unlink()
    return str(answer["auth"]["accessor"])
