"""mts1b-deploy: the inventory of the services' containers, the Vault bootstrap, releases.

What works today: the inventory (validated, errors naming line, field and value) and ``plan``;
``vault bootstrap`` against Vault or OpenBao; releases on the ``local`` target (an offline
wheelhouse checked against ``uv.lock``, installed with ``--no-index --require-hashes`` into
``releases/<generation>-<sha>``, an atomic ``current`` switch, history, rollback guarded by the
database schema). See README.md for what is not built yet.
"""

from __future__ import annotations

from mts1b_deploy.bootstrap import BootstrapOptions, BootstrapReport, bootstrap
from mts1b_deploy.delivery import login_with_delivery, read_delivery, unwrap_delivery
from mts1b_deploy.errors import (
    DeployError,
    InventoryError,
    ReleaseError,
    RollbackRefused,
    VaultBootstrapError,
)
from mts1b_deploy.history import Generation
from mts1b_deploy.inventory import SERVICES, Inventory, load_inventory, parse_inventory
from mts1b_deploy.local import KeptRelease, LocalTarget, ReleaseRequest
from mts1b_deploy.plan import PlannedContainer, container_params, plan, render_plan
from mts1b_deploy.rendered import render_service_env

__version__ = "0.1.0"

__all__ = [
    "SERVICES", "BootstrapOptions", "BootstrapReport", "DeployError", "Generation", "Inventory",
    "InventoryError", "KeptRelease", "LocalTarget", "PlannedContainer", "ReleaseError",
    "ReleaseRequest", "RollbackRefused", "VaultBootstrapError", "__version__", "bootstrap",
    "container_params", "load_inventory", "login_with_delivery", "parse_inventory", "plan",
    "read_delivery",
    "render_plan", "render_service_env", "unwrap_delivery",
]
