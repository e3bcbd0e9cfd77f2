"""The rendered configuration a release carries: one environment file per service.

Why rendered into the release and not read from the inventory at start: a rollback restores
the configuration together with the code it was tested with. The files hold addresses and
names only - no password, token or key: a service's secrets come from Vault
(``secret/mts1b/<service>``, :mod:`mts1b_deploy.bootstrap`) when it starts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from mts1b_deploy.inventory import Inventory

__all__ = ["config_sha256", "render_service_env"]


def render_service_env(inv: Inventory) -> dict[str, str]:
    """``{"<service>.env": text}``: where each service finds NATS, PostgreSQL and Vault."""
    nats = inv.services["nats"].ip
    postgres = inv.services["postgres"].ip
    vault = inv.services["vault"].ip
    files: dict[str, str] = {}
    for name, _ in inv.ordered():
        lines = [f"MTS_SERVICE={name}", f"MTS_DEPLOYMENT={inv.name}",
                 f"MTS_NATS_URL=nats://{nats}:4222",
                 f"MTS_DATABASE_URL=postgresql://mts1b_{name}@{postgres}:5432/mts1b",
                 f"VAULT_ADDR=https://{vault}:8200"]
        if name != "vault":  # written by `mts1b-deploy vault login` (delivery.py)
            lines.append(f"MTS_VAULT_TOKEN_FILE=/var/lib/mts1b-{name}/vault-token")
        if name in ("oms", "treasury"):
            lines.append(f"MTS_FUNDS={','.join(sorted(inv.funds))}")
        if name == "research":
            lines.append("MTS_STRATEGIES=" + ",".join(
                sorted({s for f in inv.funds.values() for s in f.strategies})))
        files[f"{name}.env"] = "\n".join(lines) + "\n"
    return files


def config_sha256(files: Mapping[str, str]) -> str:
    """One digest of a set of config files (names and contents, in name order)."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return digest.hexdigest()
