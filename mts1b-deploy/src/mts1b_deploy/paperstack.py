"""The paper-trading stack's services as a release runs them: ``mts1b-deploy services paper``.

Why these command lines: they are the ones ``mts mts1b-research paper up`` starts
(``mts1b_research.paper.PaperPlan.services``) - the paper venue, the OMS and the treasury -
with two differences only: the interpreter is the release's (``{release}/venv/bin/python -m
mts1b_platform.cli``, not the one running this tool) and there is no ``--replay-clock``: a
deployed stack runs on the wall clock, as production does, not in lockstep with a replay. A
test compares them with ``PaperPlan.services`` so they cannot drift apart. The signal service,
the composer and the replay are not among them yet (they need a registered strategy and a
datalake store in the release's reach).

The inputs the services read - the OMS's instrument registry and key registry - become files of
the release's ``config/`` folder (``--config-dir``), so a rollback restores them with the code.
The private signing key (operations and risk: it halts the OMS for ``--drain`` and resumes it)
is written beside that folder, mode 0600, never into a release.

Where the services find NATS and PostgreSQL is their environment in ``services.json``: a URL
with a password in it is refused (give PostgreSQL's through ``PGPASSFILE``, NATS's through the
credentials Vault delivers), because a release's config files are not secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from mts1b_platform.redaction import redact_url

from mts1b_deploy.errors import ReleaseError
from mts1b_deploy.supervisor import SERVICES_FILE, ServiceSpec, services_json

__all__ = ["PAPER_SERVICES", "PaperStack", "write_paper_config"]

PAPER_SERVICES = ("brokers", "oms", "treasury")
"""The services of the deployed paper stack, named as the inventory's containers are (the
paper loop calls the venue ``broker-paper``)."""
_SYMBOL = re.compile(r"^[A-Z][A-Z0-9.\-]{0,19}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class PaperStack:
    """One fund trading on the paper venue, served by the venue, the OMS and the treasury."""

    fund_id: str
    cash: Decimal
    symbols: tuple[str, ...]
    nats_url: str
    database_url: str
    namespace: str | None = None
    oms_schema: str = "mts_oms"
    treasury_schema: str = "mts_treasury"
    commission_bps: Decimal = Decimal(0)
    participation_rate: Decimal = Decimal(1)
    leverage: Decimal = Decimal(2)
    strategy: str = "desk"
    """The strategy the fund lists (orders name it)."""

    def __post_init__(self) -> None:
        checks: list[tuple[str, object, bool, str]] = [
            ("--fund", self.fund_id, bool(_NAME.match(self.fund_id)),
             "letters, digits, _ . - (at most 64)"),
            ("--strategy", self.strategy, bool(_NAME.match(self.strategy)),
             "letters, digits, _ . - (at most 64)"),
            ("--cash", self.cash, self.cash.is_finite() and self.cash > 0,
             "a finite amount > 0"),
            ("--commission-bps", self.commission_bps,
             self.commission_bps.is_finite() and self.commission_bps >= 0, "a number >= 0"),
            ("--participation-rate", self.participation_rate,
             self.participation_rate.is_finite() and 0 < self.participation_rate <= 1,
             "a fraction in (0, 1]"),
            ("--leverage", self.leverage, self.leverage.is_finite() and self.leverage > 0,
             "a number > 0"),
            ("--oms-schema", self.oms_schema, bool(_SCHEMA.match(self.oms_schema)),
             "a lower-case PostgreSQL name"),
            ("--treasury-schema", self.treasury_schema,
             bool(_SCHEMA.match(self.treasury_schema)), "a lower-case PostgreSQL name"),
            ("--symbol", ",".join(self.symbols), bool(self.symbols), "at least one symbol"),
        ]
        checks += [("--symbol", s, bool(_SYMBOL.match(s)), "upper-case letters, digits, . -")
                   for s in self.symbols]
        for url_field, url in (("--nats-url", self.nats_url), ("--dsn", self.database_url)):
            checks.append((url_field, redact_url(url), redact_url(url) == url,
                           "no password in it: a release's config is not secret"))
        for field, value, ok, rule in checks:
            if not ok:
                raise ReleaseError(f"{field}: {value!s} is not valid ({rule})", field=field,
                                   value=str(value))

    def _mts(self, *args: str) -> tuple[str, ...]:
        """A command of the release's ``mts`` (the paper loop's ``PaperPlan.mts``)."""
        return ("{release}/venv/bin/python", "-m", "mts1b_platform.cli", *args)

    def services(self) -> dict[str, ServiceSpec]:
        """``{service: ServiceSpec}``: the paper loop's command lines, wall clock."""
        ns = ["--namespace", self.namespace] if self.namespace else []
        env = {"MTS_NATS_URL": self.nats_url, "MTS_DATABASE_URL": self.database_url}
        if self.namespace:
            env["MTS_NATS_NAMESPACE"] = self.namespace
        return {
            "brokers": ServiceSpec(self._mts(
                "mts1b-brokers", "serve", "paper", *ns,
                "--account", f"{self.fund_id}={self.cash}",
                "--commission-bps", str(self.commission_bps),
                "--commission-quantum", "0.01",
                "--participation-rate", str(self.participation_rate),
                "--leverage", str(self.leverage)), env),
            "oms": ServiceSpec(self._mts(
                "mts1b-oms", "serve", "--broker", "paper", "--broker-wait", "60", *ns,
                "--schema", self.oms_schema,
                "--keys", "{release}/config/keys.json",
                "--instruments", "{release}/config/instruments.csv"), env),
            "treasury": ServiceSpec(self._mts(
                "mts1b-treasury", "serve", *ns, "--schema", self.treasury_schema), env),
        }

    def fund_config(self) -> dict[str, object]:
        """The fund to create in the treasury before the OMS starts (the paper loop's
        ``PaperPlan.fund_config``: one order may be worth the NAV, a position half of it)."""
        return {"fund_id": self.fund_id, "name": f"Paper {self.fund_id}",
                "target_nav_usd": str(self.cash), "broker": "paper",
                "broker_account_id": self.fund_id, "strategies": [self.strategy],
                "risk": {"max_order_notional": str(self.cash), "max_position_pct_nav": "0.5"}}


def write_paper_config(stack: PaperStack, out: Path, key_file: Path,
                       key_name: str = "deploy-desk", fund_file: Path | None = None
                       ) -> list[Path]:
    """Write the release config folder ``out`` (``services.json``, ``instruments.csv``,
    ``keys.json``) and the fund's configuration ``fund_file`` (default: ``fund.json`` beside
    ``out``); create the signing key ``key_file`` (roles operations and risk) unless it exists
    - its registry entry is then read from it. Returns the files written."""
    from mts1b_platform.signing import KeyRegistry, Role, SigningKey

    if key_file.resolve().parent == out.resolve():
        raise ReleaseError(f"--key-file {key_file} is inside the release config folder {out}: "
                           "a private key never goes into a release", field="--key-file",
                           value=str(key_file))
    out.mkdir(parents=True, exist_ok=True)
    if key_file.exists():
        key = SigningKey.load(key_file)
    else:
        key = SigningKey.generate(key_name)
        key.save(key_file)
    written: list[Path] = []

    def write(path: Path, text: str) -> None:
        path.write_text(text, encoding="utf-8")
        written.append(path)

    write(out / SERVICES_FILE, services_json(stack.services()))
    write(out / "instruments.csv",
          "symbol,asset_class\n" + "".join(f"{s},equity\n" for s in stack.symbols))
    write(out / "keys.json",
          KeyRegistry([key.registered([Role.OPERATIONS, Role.RISK])]).to_json())
    fund = fund_file or out.resolve().parent / "fund.json"
    if fund.resolve().parent == out.resolve():
        raise ReleaseError(f"--fund-file {fund} is inside the release config folder {out}",
                           field="--fund-file", value=str(fund))
    write(fund, json.dumps(stack.fund_config(), indent=1) + "\n")
    return written


def parse_symbols(values: Sequence[str]) -> tuple[str, ...]:
    """``--symbol A --symbol B,C`` as one tuple (order kept, duplicates dropped)."""
    seen: dict[str, None] = {}
    for value in values:
        for part in value.split(","):
            if part.strip():
                seen[part.strip()] = None
    return tuple(seen)
