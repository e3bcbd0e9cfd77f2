"""Funds from the treasury: the OMS loads them from its KV bucket and follows their changes.

Why a bucket and not a request to the treasury service: an OMS must start (and keep trading
what it trades) while the treasury service restarts. The bucket
(:data:`~mts1b_foundation.TREASURY_FUNDS_BUCKET`) holds each open fund's current
configuration; the treasury writes it after each committed change. A changed fund the OMS
serves takes effect at once (:meth:`~mts1b_oms.oms.Oms.update_fund`: new limits for the next
order, strategies it dropped withdrawn); a fund created or closed while the OMS runs is logged,
and the OMS serves the new set after a restart (its kill switch and books are per fund).
"""

from __future__ import annotations

from typing import Any

from mts1b_foundation import TREASURY_FUNDS_BUCKET, FundConfig, MtsError, parse_message
from mts1b_platform.bus import Bus
from mts1b_platform.logging import get_logger

from mts1b_oms.oms import Oms

__all__ = ["TreasuryFundsError", "follow_treasury_funds", "load_treasury_funds"]

_log = get_logger("mts1b_oms.treasuryfunds")


class TreasuryFundsError(MtsError):
    """The treasury's bucket holds no fund (or none that reads)."""

    code = "OMS.NO_TREASURY_FUNDS"


async def load_treasury_funds(bus: Bus) -> list[FundConfig]:
    """The open funds in the treasury's bucket, sorted by id. A value that does not read as
    a FundConfig is skipped with an ERROR log naming the key; no fund at all raises."""
    kv = await bus.kv(TREASURY_FUNDS_BUCKET, history=5)
    funds = []
    for key in sorted(await kv.keys()):
        data = await kv.get(key)
        if data is None:
            continue
        try:
            funds.append(parse_message(FundConfig, data))
        except MtsError as exc:
            _log.error("unreadable fund in the treasury's bucket", key=key, error=exc.code)
    if not funds:
        raise TreasuryFundsError(
            f"the treasury's bucket {TREASURY_FUNDS_BUCKET!r} holds no open fund: create one "
            "with `mts mts1b-treasury fund create`, or pass --funds FILE",
            bucket=TREASURY_FUNDS_BUCKET, namespace=bus.namespace or "")
    return funds


async def follow_treasury_funds(oms: Oms, kv: Any) -> None:
    """Apply each change of the bucket to the funds ``oms`` serves, until cancelled."""
    async for key, value in kv.watch():
        if value is None:
            if key in oms.funds:
                _log.warning("a fund this OMS serves was closed in the treasury: it keeps "
                             "its current limits until a restart", fund_id=key)
            continue
        try:
            config = parse_message(FundConfig, value)
        except MtsError as exc:
            _log.error("unreadable fund in the treasury's bucket", key=key, error=exc.code)
            continue
        if config.fund_id not in oms.funds:
            _log.warning("a fund was opened in the treasury: restart the OMS to serve it",
                         fund_id=config.fund_id)
            continue
        if oms.funds[config.fund_id] == config:
            continue
        withdrawn = await oms.update_fund(config)
        _log.info("fund configuration from the treasury", fund_id=config.fund_id,
                  withdrawn=len(withdrawn), **config.effective_limits())
