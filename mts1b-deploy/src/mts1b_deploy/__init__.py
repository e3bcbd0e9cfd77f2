"""mts1b-deploy: the inventory of the services' containers, the Vault bootstrap, releases.

What works today: the inventory (validated, errors naming line, field and value), ``plan`` and
the Proxmox containers (drift, an idempotent ``apply``); ``vault bootstrap`` against Vault or
OpenBao and ``vault login`` in a container; releases on the ``local`` target (an offline
wheelhouse checked against ``uv.lock``, installed with ``--no-index --require-hashes`` into
``releases/<generation>-<sha>``, an atomic ``current`` switch, history, rollback guarded by the
database schema) with a supervisor, health gates (the OMS answering among them) and automatic
rollback, refused while the OMS has working orders unless drained; the paper stack's services
for a release; systemd units. See README.md for what is not built yet.
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
from mts1b_deploy.gates import Gate, Heartbeats, KillSwitchUnchanged, ProcessesAlive
from mts1b_deploy.history import Generation
from mts1b_deploy.inventory import SERVICES, Inventory, load_inventory, parse_inventory
from mts1b_deploy.local import KeptRelease, LocalTarget, ReleaseRequest
from mts1b_deploy.omscheck import OmsAnswers, OrdersGuard, OrdersWorking, working_orders
from mts1b_deploy.paperstack import PaperStack, write_paper_config
from mts1b_deploy.plan import PlannedContainer, container_params, plan, render_plan
from mts1b_deploy.proxmox import Change, ProxmoxError, ProxmoxTarget
from mts1b_deploy.rendered import render_service_env
from mts1b_deploy.rollout import GateFailed, rollout
from mts1b_deploy.supervisor import ServiceSpec, Supervisor

__version__ = "0.1.0"

__all__ = [
    "SERVICES", "BootstrapOptions", "BootstrapReport", "Change", "DeployError", "Gate",
    "GateFailed", "Generation", "Heartbeats", "Inventory", "InventoryError", "KeptRelease",
    "KillSwitchUnchanged",
    "LocalTarget", "OmsAnswers", "OrdersGuard", "OrdersWorking", "PaperStack",
    "PlannedContainer", "ProcessesAlive", "ProxmoxError", "ProxmoxTarget",
    "ReleaseError", "ReleaseRequest", "RollbackRefused", "ServiceSpec", "Supervisor",
    "VaultBootstrapError", "__version__", "bootstrap",
    "container_params", "load_inventory", "login_with_delivery", "parse_inventory", "plan",
    "read_delivery",
    "render_plan", "render_service_env", "rollout", "unwrap_delivery", "working_orders",
    "write_paper_config",
]
