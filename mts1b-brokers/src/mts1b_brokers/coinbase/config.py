"""Configuration of the Coinbase adapter, from arguments or the platform's config (env/Vault).

The API secret is a :class:`~pydantic.SecretStr` from the moment it is read: it prints as
``**********``, it is checked here (an Ed25519 key as CDP issues it - base64 of 32 or 64
bytes - or an EC P-256 PEM) so a bad key fails at start with a message that names the field
and never the value, and it is handed to the SDK only.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from mts1b_brokers.errors import BrokerConfigError

__all__ = ["CoinbaseConfig", "key_algorithm"]


def key_algorithm(secret: str) -> str:
    """``"EdDSA"`` or ``"ES256"`` for a usable private key; ``BrokerConfigError`` (naming the
    field, never showing the value) otherwise."""
    problem = "is neither an Ed25519 key (base64) nor an EC P-256 private key (PEM)"
    text = secret.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(
                text.replace("\\n", "\n").encode(), password=None)
        else:
            raw = base64.b64decode("".join(text.split()), validate=True)
            if len(raw) not in (32, 64):
                raise ValueError("length")
            key = ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32])
    # binascii.Error is a ValueError; cryptography raises NotImplementedError for key types it
    # cannot load
    except (ValueError, TypeError, NotImplementedError):
        raise BrokerConfigError(f"api_secret {problem}", field="api_secret",
                                value="<hidden>") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
        return "ES256"
    raise BrokerConfigError(f"api_secret {problem}", field="api_secret", value="<hidden>")


class CoinbaseConfig(BaseModel):
    """What :class:`~mts1b_brokers.coinbase.CoinbaseBroker` needs.

    Loaded by ``load_config("brokers-coinbase", CoinbaseConfig)`` from
    ``MTS_BROKERS_COINBASE_API_KEY`` / ``..._API_SECRET`` (and the other fields), a ``.env``
    file, or Vault KV ``secret/mts1b/brokers-coinbase`` - the platform's usual order.
    """

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    api_key: str = Field(min_length=1, max_length=300,
                         description="the CDP key name, organizations/<org>/apiKeys/<id>")
    api_secret: SecretStr
    account_id: str = Field(default="coinbase", min_length=1, max_length=128)
    quote_currency: str = Field(default="USD", pattern=r"^[A-Z0-9]{2,10}$")
    base_url: str = "api.coinbase.com"
    ws_url: str = "wss://advanced-trade-ws-user.coinbase.com"
    ca_file: str | None = None
    product_ids: list[str] = Field(default_factory=list)
    timeout: float = Field(default=10.0, gt=0, le=120)
    max_rate: float = Field(default=25.0, gt=0, le=30)
    heartbeat_timeout: float = Field(default=5.0, gt=0)
    reconcile_interval: float = Field(default=15.0, gt=0)
    reconnect_backoff: float = Field(default=0.25, gt=0)

    @field_validator("api_secret")
    @classmethod
    def _usable(cls, secret: SecretStr) -> SecretStr:
        text = secret.get_secret_value().strip()
        if text.startswith("-----BEGIN") and "\\n" in text:
            text = text.replace("\\n", "\n")  # a PEM kept on one line (.env, env variable)
        try:
            key_algorithm(text)
        except BrokerConfigError as exc:
            raise ValueError(exc.message) from None
        return SecretStr(text)

    @classmethod
    def load(cls, service: str = "brokers-coinbase", **options: Any) -> CoinbaseConfig:
        """The configuration through the platform's ``load_config`` (env, ``.env``, Vault)."""
        from mts1b_platform.config import load_config

        return load_config(service, cls, **options)
