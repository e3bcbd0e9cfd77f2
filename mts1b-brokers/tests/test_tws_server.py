"""FakeTws speaks the TWS API as ib_async reads it: every message type it sends is decoded by
ib_async's own decoder, for each server version it claims, and a scripted session matches the
committed golden transcript byte for byte."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from ib_async import IB, ExecutionFilter, LimitOrder, MarketOrder, Stock
from mts1b_brokers.testing import tws_wire as w
from mts1b_brokers.testing.tws import SUPPORTED_SERVER_VERSIONS, FakeTws

GOLDEN = Path(__file__).parent / "golden" / "tws_session_v178.txt"
T0 = dt.datetime(2024, 1, 2, 15, 30, tzinfo=dt.UTC)
ACCOUNT = "DU1234567"


async def until(check: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait for what the server sent to be taken in by the client (no fixed sleeps)."""
    for _ in range(int(timeout / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the client never saw what the server sent")


@pytest.fixture
def decode_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """ib_async logs (and swallows) any message its decoder cannot parse."""
    caplog.set_level(logging.ERROR, logger="ib_async.Decoder")
    return caplog.records


@pytest.mark.parametrize("version", SUPPORTED_SERVER_VERSIONS)
async def test_ib_async_decodes_every_message(version: int,
                                              decode_errors: list[logging.LogRecord]) -> None:
    errors: list[tuple[int, int, str]] = []
    async with FakeTws(server_version=version, prices={"AAPL": Decimal(100)},
                       clock=lambda: T0) as tws:
        ib = IB()
        ib.errorEvent += lambda req, code, text, contract: errors.append((req, code, text))
        # connectAsync's startup sync asks for positions, open and completed orders,
        # account updates (plain and multi) and executions: each must be answered
        await ib.connectAsync("127.0.0.1", tws.port, clientId=7, timeout=3,
                              raiseSyncErrors=True)
        try:
            assert ib.client.serverVersion() == version
            assert ib.managedAccounts() == [ACCOUNT]          # managedAccounts (15)
            assert ib.client.isReady()                         # + nextValidId (9)
            assert {v.tag for v in ib.accountValues()} >= {"NetLiquidation", "TotalCashValue"}

            # placeOrder -> openOrder (5) + orderStatus (3)
            trade = ib.placeOrder(Stock("AAPL", "SMART", "USD"), LimitOrder(
                "BUY", 10, 99.5, orderRef="ord-1", account=ACCOUNT, tif="GTC"))
            await until(lambda: trade.orderStatus.status == "Submitted")
            order, status = trade.order, trade.orderStatus
            assert (order.permId, order.orderRef, order.account, order.tif) == (
                1_000_001, "ord-1", ACCOUNT, "GTC")
            assert (order.lmtPrice, order.totalQuantity, order.orderType) == (99.5, 10, "LMT")
            assert (status.status, status.filled, status.remaining, status.clientId) == (
                "Submitted", 0, 10, 7)

            # a fill: execDetails (11) + orderStatus + commissionReport (59) + position (61)
            await tws.trade("AAPL", Decimal("99.5"), Decimal(4))
            await until(lambda: bool(trade.fills and ib.positions()
                                     and trade.fills[0].commissionReport.commission))
            (fill,) = trade.fills
            ex = fill.execution
            assert (ex.execId, ex.side, ex.shares, ex.price, ex.cumQty, ex.orderRef) == (
                "0000e0d5.00000001.01.01", "BOT", 4, 99.5, 4, "ord-1")
            assert (ex.permId, ex.acctNumber, ex.time) == (1_000_001, ACCOUNT, T0)
            assert fill.commissionReport.commission == 1.0
            assert fill.commissionReport.currency == "USD"
            assert (trade.orderStatus.filled, trade.orderStatus.remaining) == (4, 6)
            (pos,) = ib.positions()
            assert (pos.account, pos.position, pos.avgCost, pos.contract.symbol) == (
                ACCOUNT, 4, 99.5, "AAPL")
            assert fill.contract.conId == pos.contract.conId == 265_598

            # reqOpenOrders -> openOrder + openOrderEnd (53)
            (open_trade,) = await ib.reqOpenOrdersAsync()
            assert open_trade.order.orderRef == "ord-1"
            # reqExecutions -> execDetails + commissionReport + execDetailsEnd (55)
            (replayed,) = await ib.reqExecutionsAsync(ExecutionFilter(clientId=7))
            assert replayed.execution.execId == ex.execId
            # reqAccountSummary -> accountSummary (63) + accountSummaryEnd (64)
            summary = {v.tag: v.value for v in await ib.accountSummaryAsync(ACCOUNT)}
            assert Decimal(summary["TotalCashValue"]) == Decimal(1_000_000) - Decimal(398)
            assert Decimal(summary["NetLiquidation"]) == Decimal(1_000_000)
            # reqCurrentTime -> currentTime (49)
            assert await ib.reqCurrentTimeAsync() == T0

            # reqRealTimeBars -> realTimeBars (50)
            live = ib.reqRealTimeBars(Stock("AAPL", "SMART", "USD"), 5, "TRADES", False)
            await until(lambda: tws.bar_subscribers("AAPL") == 1)
            assert await tws.push_bar("AAPL", T0, Decimal("99.5"), Decimal(100), Decimal(99),
                                      Decimal("99.75"), Decimal(300)) == 1
            await until(lambda: len(live) == 1)
            (rt,) = live
            assert (rt.time, rt.open_, rt.high, rt.low, rt.close, rt.volume) == (
                T0, 99.5, 100, 99, 99.75, 300)
            ib.cancelRealTimeBars(live)

            # cancelOrder -> orderStatus Cancelled + error 202; completedOrder (101/102)
            ib.cancelOrder(trade.order)
            await until(lambda: any(code == 202 for _, code, _ in errors))
            assert (trade.order.orderId, 202, "Order Canceled - reason:") in errors
            (done,) = await ib.reqCompletedOrdersAsync(False)
            assert (done.orderStatus.status, done.order.orderRef, done.order.permId) == (
                "Cancelled", "ord-1", 1_000_001)
            assert done.order.filledQuantity == 4

            # an error with a code: 110 off-tick price; 201 reject beyond buying power
            ib.placeOrder(Stock("AAPL", "SMART", "USD"), LimitOrder(
                "BUY", 1, 99.505, orderRef="ord-2", account=ACCOUNT))
            ib.placeOrder(Stock("AAPL", "SMART", "USD"), MarketOrder(
                "BUY", 10**9, orderRef="ord-3", account=ACCOUNT))
            await until(lambda: len(errors) >= 3)
            assert [code for _, code, _ in errors[-2:]] == [110, 201]
        finally:
            ib.disconnect()
    assert not decode_errors, [r.getMessage() for r in decode_errors]


async def test_version_range_outside_the_servers_is_closed() -> None:
    async with FakeTws(server_version=176) as tws:
        reader, writer = await asyncio.open_connection("127.0.0.1", tws.port)
        writer.write(b"API\0" + w.frame([])[:0] + len(b"v177..178").to_bytes(4, "big")
                     + b"v177..178")
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
    with pytest.raises(ValueError, match="server_version"):
        FakeTws(server_version=201)


# ------------------------------------------------------------------------- golden
async def _scripted_session() -> list[tuple[str, bytes]]:
    """A fixed exchange of raw messages (the requests as ib_async 2.1.0 encodes them)."""
    async with FakeTws(server_version=178, prices={"AAPL": Decimal(100)},
                       clock=lambda: T0) as tws:
        reader, writer = await asyncio.open_connection("127.0.0.1", tws.port)
        decoder = w.FrameDecoder()

        async def expect(n: int) -> list[list[str]]:
            got: list[list[str]] = []
            while len(got) < n:
                got += decoder.feed(await asyncio.wait_for(reader.read(65536), 2))
            return got

        def send(*fields: object) -> None:
            writer.write(w.frame(fields))

        writer.write(b"API\0" + len(b"v157..178").to_bytes(4, "big") + b"v157..178")
        assert (await expect(1))[0] == ["178", "20240102 15:30:00 UTC"]
        send(w.IN.START_API, 2, 7, "")
        await expect(2)
        contract = [0, "AAPL", "STK", "", 0.0, "", "", "SMART", "", "USD", "", ""]
        send(w.IN.PLACE_ORDER, 1, *contract, "", "", "BUY", 10, "LMT", 99.5, "", "GTC", "",
             ACCOUNT, "O", 0, "ord-1", 1, 0)
        await expect(2)
        await tws.trade("AAPL", Decimal("99.5"), Decimal(4))
        await expect(3)
        tws.faults.duplicate_next_execution = True
        await tws.trade("AAPL", Decimal("99.4"), Decimal(2))
        await expect(5)
        await tws.correct_execution(shares=Decimal(3))
        await expect(2)
        send(w.IN.REQ_EXECUTIONS, 3, 9, 7, "", "", "", "", "", "")
        await expect(5)
        send(w.IN.CANCEL_ORDER, 1, 1, "")
        await expect(2)
        send(w.IN.CANCEL_ORDER, 1, 1, "")
        await expect(1)
        send(w.IN.REQ_POSITIONS, 1)
        await expect(2)
        writer.close()
        return list(tws.transcript)


def _render(transcript: list[tuple[str, bytes]]) -> str:
    return "".join(f"{d} {data!r}\n" for d, data in transcript)


async def test_golden_transcript() -> None:
    text = _render(await _scripted_session())
    assert text == GOLDEN.read_text(), (
        "FakeTws's bytes changed; if intended, regenerate with "
        "`python mts1b-brokers/tests/test_tws_server.py` and review the diff")
    # the golden's every server message decodes with ib_async's decoder too
    assert "0000e0d5.00000002.01.02" in text  # the correction of the second execution


if __name__ == "__main__":  # regenerate the golden transcript
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(_render(asyncio.run(_scripted_session())))


class _Recorder:
    """A stand-in for ib_async's Wrapper that keeps what the decoder hands it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args: self.calls.append((name, args))


@pytest.mark.parametrize("version", SUPPORTED_SERVER_VERSIONS)
def test_order_messages_line_up_field_by_field(version: int) -> None:
    """openOrder and completedOrder are long and version-dependent: the decoder must read
    the status and the fields after it where FakeTws wrote them."""
    from ib_async.decoder import Decoder

    contract = w.ContractFields(con_id=265_598, symbol="AAPL")
    order = w.OrderFields(7, 3, 1_000_007, "SELL", Decimal(5), "LMT", Decimal("101.25"),
                          None, "GTC", ACCOUNT, "ord-7", Decimal(2))
    rec = _Recorder()
    decoder = Decoder(rec, version)  # type: ignore[arg-type]
    for fields in (w.open_order(version, contract, order, "PreSubmitted"),
                   w.completed_order(version, contract, order, "Cancelled",
                                     "20240102 15:30:00 UTC", "Cancelled by user")):
        (decoded,) = w.FrameDecoder().feed(w.frame(fields))
        decoder.interpret(decoded)  # type: ignore[no-untyped-call]
    (name1, (oid, c1, o1, st1)), (name2, (c2, o2, st2)) = rec.calls
    assert (name1, name2) == ("openOrder", "completedOrder")
    assert (oid, o1.permId, o1.orderRef, o1.action, o1.lmtPrice, o1.tif, o1.clientId) == (
        7, 1_000_007, "ord-7", "SELL", 101.25, "GTC", 3)
    assert (st1.status, o1.adjustedOrderType, c1.conId) == ("PreSubmitted", "None", 265_598)
    assert (st2.status, st2.completedTime, st2.completedStatus, o2.filledQuantity) == (
        "Cancelled", "20240102 15:30:00 UTC", "Cancelled by user", 2.0)
    assert (o2.orderRef, o2.permId, c2.symbol) == ("ord-7", 1_000_007, "AAPL")
