"""``mts1b-deploy ...`` (also ``mts mts1b-deploy ...``): plan, vault bootstrap, releases.

Errors are one line on stderr with a stable code (``mts1b-deploy: [DEPLOY.INVENTORY] ...``) and
exit status 1; an inventory error lists every problem with its line. Nothing this command prints
holds a secret: key shares, tokens and secret ids go to mode-0600 files whose paths are printed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer
from mts1b_foundation import MtsError
from mts1b_platform.redaction import redact

from mts1b_deploy.bootstrap import BootstrapOptions, bootstrap
from mts1b_deploy.containers import (
    DELIVERY_PATH,
    push_delivery,
    push_release,
    rollout_in_container,
)
from mts1b_deploy.delivery import login_with_delivery
from mts1b_deploy.errors import ReleaseError
from mts1b_deploy.gates import Gate, Heartbeats, KillSwitchUnchanged, ProcessesAlive
from mts1b_deploy.inventory import load_inventory
from mts1b_deploy.local import LocalTarget, ReleaseRequest, read_config_dir
from mts1b_deploy.nodessh import NodeShell
from mts1b_deploy.omscheck import OmsAnswers, OrdersGuard
from mts1b_deploy.paperstack import PaperStack, parse_symbols, write_paper_config
from mts1b_deploy.plan import plan as make_plan
from mts1b_deploy.plan import render_plan
from mts1b_deploy.proxmox import ProxmoxTarget, resolve_secret_ref
from mts1b_deploy.rendered import render_service_env
from mts1b_deploy.rollout import restart, rollout
from mts1b_deploy.supervisor import ServiceSpec, Supervisor, read_services
from mts1b_deploy.units import UNIT_SERVICES, render_unit, unit_name

__all__ = ["app", "main"]

app = typer.Typer(name="mts1b-deploy", no_args_is_help=True, add_completion=False,
                  help="MTS1B deploy: inventory and plan, Vault bootstrap, releases.")
vault_app = typer.Typer(no_args_is_help=True, add_completion=False,
                        help="Bootstrap a Vault or OpenBao server for the services.")
app.add_typer(vault_app, name="vault")

InventoryPath = Annotated[Path, typer.Argument(help="the inventory YAML file")]
Root = Annotated[Path, typer.Option(envvar="MTS_DEPLOY_ROOT",
                                    help="the local target's folder (releases/, current)")]


CaCert = Annotated[str | None, typer.Option(
    envvar="MTS_PROXMOX_CACERT", help="CA bundle of the Proxmox API (default: the system's)")]

# Options several commands share (one definition each).
NamespaceOption = Annotated[str | None, typer.Option(envvar="MTS_NATS_NAMESPACE",
                                                     help="the services' NATS namespace")]
DrainKeyOption = Annotated[Path | None, typer.Option(
    envvar="MTS_OMS_KEY_FILE", help="--drain: a signing key with the role operations")]
DrainTimeoutOption = Annotated[float, typer.Option(
    help="--drain: seconds to wait for the working orders to end")]


@app.command("plan")
def plan_command(inventory: InventoryPath,
                 as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
                 live: Annotated[bool, typer.Option(
                     "--live", help="compare with the Proxmox nodes: print the drift")] = False,
                 ca_cert: CaCert = None) -> None:
    """Print what the inventory would create: each container's Proxmox parameters (with
    --live: what differs on the nodes)."""
    inv = load_inventory(inventory)
    if live:
        target = ProxmoxTarget(inv, resolve_secret_ref(inv.proxmox.token_secret_ref),
                               verify=ca_cert or True)
        changes = target.drift()
        for change in changes:
            typer.echo(change.line())
        if not changes:
            typer.echo("no drift: the containers match the inventory")
        return
    planned = make_plan(inv)
    if as_json:
        typer.echo(json.dumps([{"service": p.service, "node": p.node, "params": p.params,
                                "runs": list(p.runs)} for p in planned], indent=1))
    else:
        typer.echo(render_plan(inv, planned))


@app.command("apply")
def apply_command(inventory: InventoryPath, ca_cert: CaCert = None) -> None:
    """Create, resize and start the inventory's containers on Proxmox (idempotent). A release
    goes inside them with `push`."""
    inv = load_inventory(inventory)
    target = ProxmoxTarget(inv, resolve_secret_ref(inv.proxmox.token_secret_ref),
                           verify=ca_cert or True)
    target.apply(log=typer.echo)


@vault_app.command("bootstrap")
def vault_bootstrap(
    addr: Annotated[str, typer.Option(envvar="VAULT_ADDR", help="the server's address")],
    out: Annotated[Path, typer.Option(
        help="folder (made mode 0700) for the key shares, deploy token, deliveries and keys.json")],
    shares: Annotated[int, typer.Option(help="unseal key shares (a new server)")] = 5,
    threshold: Annotated[int, typer.Option(help="shares needed to unseal")] = 3,
    token_file: Annotated[Path | None, typer.Option(
        help="a token with the mts1b-deploy policy, for a rerun (default: OUT/deploy-token)")
    ] = None,
    pgp_key: Annotated[list[Path] | None, typer.Option(
        help="an operator's OpenPGP public key file, one per share (repeat): the shares are "
             "encrypted to them")] = None,
    unseal_wait: Annotated[float, typer.Option(
        help="seconds to wait for the operators to unseal with PGP-encrypted shares")] = 600.0,
    ca_cert: Annotated[str | None, typer.Option(envvar="VAULT_CACERT",
                                                help="CA bundle of the server")] = None,
) -> None:
    """Initialise, unseal and configure the server (or complete it on a rerun); revoke root."""
    options = BootstrapOptions(addr=addr, out_dir=out, shares=shares, threshold=threshold,
                               token_file=token_file, pgp_keys=tuple(pgp_key or ()),
                               unseal_wait=unseal_wait, verify=ca_cert or True)
    bootstrap(options, log=typer.echo)


@vault_app.command("login")
def vault_login(
    delivery: Annotated[Path, typer.Option(help="the delivery file vault bootstrap wrote")],
    token_file: Annotated[Path, typer.Option(
        help="where the service's token goes (mode 0600; the service's MTS_VAULT_TOKEN_FILE)")],
    ca_cert: Annotated[str | None, typer.Option(envvar="VAULT_CACERT",
                                                help="CA bundle of the server")] = None,
) -> None:
    """In a service's container: unwrap the delivered secret id, log in, write the token file,
    delete the delivery. Run it as the service's user."""
    accessor = login_with_delivery(delivery, token_file, verify=ca_cert or True)
    typer.echo(f"logged in: token (accessor {accessor}) written to {token_file}; "
               f"{delivery} deleted")


@app.command("install")
def install_command(
    root: Root,
    library: Annotated[list[str], typer.Option(
        help="a library to release, e.g. mts1b-oms or mts1b-platform[vault] (repeat)")],
    wheelhouse: Annotated[Path, typer.Option(
        envvar="MTS_DEPLOY_WHEELHOUSE",
        help="the wheels (python3 dev.py wheels fills dist/)")] = Path("dist"),
    repo: Annotated[Path, typer.Option(envvar="MTS_DEPLOY_REPO",
                                       help="the checkout holding uv.lock")] = Path("."),
    sha: Annotated[str | None, typer.Option(help="the commit (default: the repo's HEAD)")
                   ] = None,
    inventory: Annotated[Path | None, typer.Option(
        help="render each service's config from this inventory")] = None,
    config_dir: Annotated[Path | None, typer.Option(
        help="a folder whose files go into the release's config/ (its services.json, if "
             "any, is the services'; mts1b-deploy services paper writes one)")] = None,
    keep: Annotated[int, typer.Option(help="releases kept")] = 10,
    services: Annotated[Path | None, typer.Option(
        help='the services\' commands, JSON: {"oms": {"argv": ["{release}/venv/bin/mts", '
             '"mts1b-oms", "serve"], "env": {...}}}')] = None,
    start: Annotated[bool, typer.Option(
        "--start", help="restart the services from the new release and run the health gates; "
                        "a failed gate rolls back by itself")] = False,
    settle: Annotated[float, typer.Option(help="seconds the processes must stay up")] = 2.0,
    heartbeat: Annotated[list[str] | None, typer.Option(
        help="a service whose heartbeat on NATS is a gate (repeat)")] = None,
    nats_url: Annotated[str, typer.Option(envvar="MTS_NATS_URL", help="NATS, for the gates")
                        ] = "nats://127.0.0.1:4222",
    namespace: NamespaceOption = None,
    watch_kill_switch: Annotated[bool, typer.Option(
        "--watch-kill-switch", help="gate: no kill-switch change on the bus during the deploy")
    ] = False,
    oms_answers: Annotated[bool, typer.Option(
        "--oms-answers", help="gate: the OMS answers on its trading-state subject")] = False,
    gate_timeout: Annotated[float, typer.Option(
        help="seconds the heartbeat and OMS gates wait")] = 30.0,
    drain: Annotated[bool, typer.Option(
        "--drain", help="orders working in the OMS: halt trading (signed with --key-file) and "
                        "wait until none works, instead of refusing")] = False,
    key_file: DrainKeyOption = None,
    drain_timeout: DrainTimeoutOption = 120.0,
) -> None:
    """Install a release on the local target and make it current; with --start, restart the
    services from it behind health gates. Refused while the OMS has working orders (its
    restart would interrupt them) unless --drain."""
    config = render_service_env(load_inventory(inventory)) if inventory else {}
    specs: dict[str, ServiceSpec] = {}
    if config_dir is not None:
        files, specs = read_config_dir(config_dir)
        config.update(files)
    if services:
        specs = read_services(services)
    request = ReleaseRequest(repo=repo, libraries=tuple(library), wheelhouse=wheelhouse,
                             sha=sha, config=config, services=specs)
    target = LocalTarget(root, keep=keep)
    if drain and key_file is None:
        raise ReleaseError("--drain needs --key-file (a signing key with the role operations)",
                           field="--key-file")
    if not start:
        target.install(request, log=typer.echo)
        return
    gates: list[Gate] = [ProcessesAlive(settle_s=settle)]
    if heartbeat:
        gates.append(Heartbeats(nats_url, list(heartbeat), namespace=namespace,
                                timeout_s=gate_timeout))
    if oms_answers:
        gates.append(OmsAnswers(nats_url, namespace=namespace, timeout_s=gate_timeout))
    if watch_kill_switch:
        gates.append(KillSwitchUnchanged(nats_url, namespace=namespace))
    supervisor = Supervisor(root)
    runs_oms = target.current() is not None and "oms" in supervisor.specs()
    guard = OrdersGuard(nats_url, namespace, key_file if drain else None, drain_timeout) \
        if runs_oms or drain else None
    rollout(target, request, supervisor, gates, log=typer.echo, guard=guard)


services_app = typer.Typer(no_args_is_help=True, add_completion=False,
                           help="Write the services a release runs (its config/ folder).")
app.add_typer(services_app, name="services")


@services_app.command("paper")
def services_paper(
    symbol: Annotated[list[str], typer.Option(
        help="a symbol the OMS may trade (repeat, or comma-separated): its instruments.csv")],
    out: Annotated[Path, typer.Option(help="the release config folder to write")
                   ] = Path("paper-config"),
    key_file: Annotated[Path, typer.Option(
        help="the signing key (operations and risk) whose registry the OMS gets; made when "
             "missing (mode 0600, kept outside the release)")] = Path("desk.key"),
    fund_file: Annotated[Path, typer.Option(
        help="where the fund's configuration goes (for mts mts1b-treasury fund create)")
    ] = Path("fund.json"),
    fund: Annotated[str, typer.Option(help="the fund the stack trades")] = "paper",
    strategy: Annotated[str, typer.Option(help="the strategy the fund lists")] = "desk",
    cash: Annotated[str, typer.Option(help="the fund's capital, in USD")] = "1000000",
    commission_bps: Annotated[str, typer.Option(help="the venue's commission")] = "0",
    participation_rate: Annotated[str, typer.Option(
        help="most of a bar's volume an order may take")] = "1",
    leverage: Annotated[str, typer.Option(help="the paper account's buying power / equity")
                        ] = "2",
    nats_url: Annotated[str, typer.Option(envvar="MTS_NATS_URL", help="the services' NATS")
                        ] = "nats://127.0.0.1:4222",
    dsn: Annotated[str, typer.Option(envvar="MTS_DATABASE_URL", help="their PostgreSQL")
                   ] = "postgresql://postgres@127.0.0.1:5432/postgres",
    namespace: Annotated[str | None, typer.Option(envvar="MTS_NATS_NAMESPACE",
                                                  help="their NATS namespace")] = None,
    oms_schema: Annotated[str, typer.Option(envvar="MTS_OMS_SCHEMA",
                                            help="the OMS's PostgreSQL schema")] = "mts_oms",
    treasury_schema: Annotated[str, typer.Option(
        envvar="MTS_TREASURY_SCHEMA", help="the treasury's PostgreSQL schema")
    ] = "mts_treasury",
) -> None:
    """The paper-trading stack (the paper venue, the OMS, the treasury) with the command lines
    `mts mts1b-research paper up` runs, on the wall clock: services.json, instruments.csv and
    keys.json in --out, the fund in --fund-file (create it with `mts mts1b-treasury fund
    create --file fund.json` before the first start)."""
    stack = PaperStack(
        fund_id=fund, strategy=strategy, cash=_decimal("--cash", cash),
        symbols=parse_symbols(symbol), nats_url=nats_url, database_url=dsn,
        namespace=namespace, oms_schema=oms_schema, treasury_schema=treasury_schema,
        commission_bps=_decimal("--commission-bps", commission_bps),
        participation_rate=_decimal("--participation-rate", participation_rate),
        leverage=_decimal("--leverage", leverage))
    for path in write_paper_config(stack, out, key_file, fund_file=fund_file):
        typer.echo(f"wrote {path}")
    typer.echo(f"signing key: {key_file} (not part of any release)")


def _decimal(field: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ReleaseError(f"{field}: {text!r} is not a number", field=field,
                           value=text) from None
    if not value.is_finite():
        raise ReleaseError(f"{field}: {text!r} is not a finite number", field=field,
                           value=text)
    return value


@app.command("push")
def push_command(
    service: Annotated[str, typer.Argument(help="the service whose container gets it, e.g. oms")],
    inventory: Annotated[Path, typer.Option(help="the inventory: the container and its node")],
    root: Root,
    generation: Annotated[int | None, typer.Option(
        help="the kept release to push (default: the current one)")] = None,
    remote_root: Annotated[str, typer.Option(help="where releases live in the container")
                           ] = "/opt/mts",
    ssh_key: Annotated[Path | None, typer.Option(help="the key to log in to the node with")
                       ] = None,
    known_hosts: Annotated[Path | None, typer.Option(
        help="a known-hosts file holding the node's host key (default: the user's)")] = None,
    restart_unit: Annotated[bool, typer.Option(
        "--restart/--no-restart", help="restart the service's unit in the container")] = True,
    delivery: Annotated[Path | None, typer.Option(
        help="also push this Vault delivery (vault bootstrap's delivery/<service>.json) to "
             f"{DELIVERY_PATH}, mode 0600")] = None,
    heartbeat: Annotated[list[str] | None, typer.Option(
        help="gate: a heartbeat on NATS from this name, as the service beats (mts1b-oms, "
             "mts1b-treasury, mts1b-brokers-<broker>, ...; repeat)")] = None,
    oms_answers: Annotated[bool, typer.Option(
        "--oms-answers", help="gate: the OMS answers on its trading-state subject")] = False,
    watch_kill_switch: Annotated[bool, typer.Option(
        "--watch-kill-switch", help="gate: no kill-switch change on the bus during the push")
    ] = False,
    gate_timeout: Annotated[float, typer.Option(help="seconds the gates wait")] = 30.0,
    nats_url: Annotated[str, typer.Option(envvar="MTS_NATS_URL", help="NATS, for the gates")
                        ] = "nats://127.0.0.1:4222",
    namespace: NamespaceOption = None,
    drain: Annotated[bool, typer.Option(
        "--drain", help="pushing oms with orders working: halt trading (signed with "
                        "--key-file) and wait until none works, instead of refusing")] = False,
    key_file: DrainKeyOption = None,
    drain_timeout: DrainTimeoutOption = 120.0,
) -> None:
    """Install a release built here (install --root) inside the service's Proxmox container:
    over SSH to its node, pct push and pct exec; pip --no-index --require-hashes there, then
    current switched and the unit restarted, behind the NATS gates asked for (a failed one
    switches the container back). Pushing oms is refused while orders work, unless --drain.
    Pushing a release installed there already only switches to it: a rollback."""
    inv = load_inventory(inventory)
    if service not in inv.services:
        raise ReleaseError(f"service: {service!r} is not in the inventory; it has "
                           f"{sorted(inv.services)}", field="service", value=service)
    spec = inv.services[service]
    node = next(n for n in inv.nodes if n.name == spec.node)
    kept = LocalTarget(root).kept()
    chosen = [k for k in kept if (k.generation.generation == generation if generation
                                  is not None else k.current)]
    if not chosen:
        which = "current" if generation is None else f"generation {generation}"
        raise ReleaseError(f"no {which} release kept under {root}", root=str(root))
    shell = NodeShell(node.ssh_host, user=node.ssh_user, port=node.ssh_port, identity=ssh_key,
                      known_hosts=known_hosts)
    if drain and key_file is None:
        raise ReleaseError("--drain needs --key-file (a signing key with the role operations)",
                           field="--key-file")
    if delivery is not None:
        push_delivery(shell, spec.vmid, delivery, log=typer.echo)
    folder = LocalTarget(root).releases / chosen[0].generation.directory
    gates: list[Gate] = []
    if heartbeat:
        gates.append(Heartbeats(nats_url, list(heartbeat), namespace=namespace,
                                timeout_s=gate_timeout))
    if oms_answers:
        gates.append(OmsAnswers(nats_url, namespace=namespace, timeout_s=gate_timeout))
    if watch_kill_switch:
        gates.append(KillSwitchUnchanged(nats_url, namespace=namespace))
    if gates and not restart_unit:
        raise ReleaseError("the gates need the unit restarted: drop --no-restart",
                           field="--no-restart")
    guard = OrdersGuard(nats_url, namespace, key_file if drain else None, drain_timeout,
                        untouched="nothing was pushed") \
        if restart_unit and (service == "oms" or drain) else None
    if not gates and guard is None:
        push_release(shell, spec.vmid, folder, root=remote_root,
                     service=service if restart_unit else None, log=typer.echo)
        return
    rollout_in_container(shell, spec.vmid, folder, service, gates, root=remote_root,
                         guard=guard, log=typer.echo)


@app.command("status")
def status_command(root: Root) -> None:
    """The current release and whether each of its services runs."""
    target = LocalTarget(root)
    current = target.current()
    if current is None:
        typer.echo(f"no release installed under {root}")
        return
    typer.echo(f"current: generation {current.generation} ({current.sha[:12]}), installed "
               f"{current.installed_at} by {current.by}; {len(target.kept())} kept")
    running = Supervisor(root).running()
    for name, alive in sorted(running.items()):
        typer.echo(f"  {name}: {'running' if alive else 'NOT running'}")
    if not running:
        typer.echo("  no service started")


@app.command("logs")
def logs_command(
    service: Annotated[str, typer.Argument(help="the service, e.g. oms")],
    root: Root,
    lines: Annotated[int, typer.Option(help="how many of the last lines")] = 50,
) -> None:
    """The last lines of a service's log on the local target (``<root>/logs/<service>.log``)."""
    path = Supervisor(root).logs / f"{service}.log"
    if not path.is_file():
        raise ReleaseError(f"no log for {service!r} at {path}: has it been started here?",
                           service=service)
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - 256 * 1024))
        tail = handle.read().decode("utf-8", errors="replace").splitlines()[-lines:]
    typer.echo("\n".join(redact(line) for line in tail))


@app.command("stop")
def stop_command(root: Root) -> None:
    """Stop the services the supervisor started."""
    Supervisor(root).stop(log=typer.echo)


@app.command("history")
def history_command(root: Root) -> None:
    """List the kept releases, newest first; the current one is marked with *."""
    kept = LocalTarget(root).kept()
    if not kept:
        typer.echo(f"no release installed under {root}")
    for release in kept:
        g = release.generation
        schema = ", ".join(f"{k} {v:04d}" for k, v in sorted(g.schema.items())) or "none"
        typer.echo(f"{'*' if release.current else ' '} {g.generation:>4}  {g.sha[:12]}  "
                   f"{g.installed_at}  {g.by}  schema: {schema}")


@app.command("rollback")
def rollback_command(
    root: Root,
    to: Annotated[str, typer.Option("--to", help="a generation number or a commit sha")],
    restart_services: Annotated[bool, typer.Option(
        "--restart", help="restart the services from the release rolled back to (refused "
                          "while the OMS has working orders, unless --drain)")] = False,
    nats_url: Annotated[str, typer.Option(envvar="MTS_NATS_URL", help="NATS, for the orders")
                        ] = "nats://127.0.0.1:4222",
    namespace: NamespaceOption = None,
    drain: Annotated[bool, typer.Option(
        "--drain", help="--restart with orders working: halt trading (signed with --key-file) "
                        "and wait until none works, instead of refusing")] = False,
    key_file: DrainKeyOption = None,
    drain_timeout: DrainTimeoutOption = 120.0,
) -> None:
    """Make a kept release current again (code and config)."""
    target = LocalTarget(root)
    if restart_services:
        if drain and key_file is None:
            raise ReleaseError("--drain needs --key-file (a signing key with the role "
                               "operations)", field="--key-file")
        supervisor = Supervisor(root)
        if drain or (target.current() is not None and "oms" in supervisor.specs()):
            OrdersGuard(nats_url, namespace, key_file if drain else None, drain_timeout,
                        untouched="current was not switched")(typer.echo)
    target.rollback(to, log=typer.echo)
    if restart_services:
        restart(supervisor, typer.echo)


@app.command("units")
def units_command(
    out: Annotated[Path, typer.Option(help="folder to write the unit files into")],
    root: Annotated[str, typer.Option(help="where the releases live on the containers")
                    ] = "/opt/mts",
) -> None:
    """Write the systemd unit of each service that runs MTS1B code (oms, brokers, research,
    treasury, operations); check them with systemd-analyze verify / security."""
    out.mkdir(parents=True, exist_ok=True)
    for service in UNIT_SERVICES:
        path = out / unit_name(service)
        path.write_text(render_unit(service, root=root), encoding="utf-8")
        typer.echo(f"wrote {path}")


def main(argv: Sequence[str] | None = None) -> None:
    """The ``mts1b-deploy`` console script: an error is one line, not a traceback."""
    command = typer.main.get_command(app)
    try:
        command.main(args=list(argv) if argv is not None else None, prog_name="mts1b-deploy")
    except MtsError as exc:
        sys.stderr.write(redact(f"mts1b-deploy: {exc}") + "\n")
        sys.exit(1)
    except Exception as exc:
        sys.stderr.write(f"mts1b-deploy: the command failed unexpectedly "
                         f"({type(exc).__name__})\n")
        sys.exit(1)


if __name__ == "__main__":  # python -m mts1b_deploy.cli
    main()
