"""mts1b-deploy: the inventory of the services' containers, the Vault bootstrap, releases.

What works today: the inventory (validated, errors naming line, field and value) and ``plan``;
``vault bootstrap`` against Vault or OpenBao. See README.md for what is not built yet.
"""

from __future__ import annotations

from mts1b_deploy.bootstrap import (
    BootstrapOptions,
    BootstrapReport,
    bootstrap,
    read_delivery,
    unwrap_delivery,
)
from mts1b_deploy.errors import (
    DeployError,
    InventoryError,
    ReleaseError,
    RollbackRefused,
    VaultBootstrapError,
)
from mts1b_deploy.inventory import SERVICES, Inventory, load_inventory, parse_inventory
from mts1b_deploy.plan import PlannedContainer, container_params, plan, render_plan

__version__ = "0.1.0"

__all__ = [
    "SERVICES", "BootstrapOptions", "BootstrapReport", "DeployError", "Inventory",
    "InventoryError", "PlannedContainer", "ReleaseError", "RollbackRefused",
    "VaultBootstrapError", "__version__", "bootstrap", "container_params", "load_inventory",
    "parse_inventory", "plan", "read_delivery", "render_plan", "unwrap_delivery",
]
