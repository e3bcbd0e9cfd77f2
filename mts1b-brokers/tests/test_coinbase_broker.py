"""CoinbaseBroker against the Coinbase stand-in: the field's faults, one test each.

Every test runs the real SDK over HTTPS and the user channel over WSS against
:class:`~mts1b_brokers.testing.coinbase_server.CoinbaseServer`, scripts one fault there, and
checks what the broker reported and what reached the venue (``server.requests``): an
ambiguous create is looked up, never sent twice; a gap, a lost message, a half-open socket
and a disconnect in the middle of a fill are recovered through REST; duplicates count once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("coinbase", reason="needs the coinbase extra (coinbase-advanced-py)")

from mts1b_brokers import BrokerConfigError, get_broker
from mts1b_brokers.coinbase import CoinbaseBroker, CoinbaseConfig
from mts1b_brokers.coinbase.rest import CoinbaseRest
from mts1b_brokers.testing.coinbase_harness import coinbase_pair
from mts1b_brokers.testing.coinbase_server import CoinbaseServer
from mts1b_brokers.testing.coinbase_tls import new_api_key
from mts1b_foundation import (
    BrokerRejected,
    BrokerTransportError,
    BrokerUnknownOutcome,
    ConnectionState,
    CryptoPair,
    ExecType,
    ExecutionReport,
    Order,
    OrderType,
    ReplyCode,
    TimeInForce,
    TradingSession,
)

BTC = CryptoPair(symbol="BTC-USD", base="BTC", quote="USD")


class _Run:
    def __init__(self, server: CoinbaseServer, broker: CoinbaseBroker) -> None:
        self.server, self.broker = server, broker
        self.reports: list[ExecutionReport] = []
        self._stream = broker.execution_reports()
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        async for report in self._stream:
            self.reports.append(report)

    def of(self, oid: str, *types: ExecType) -> list[ExecutionReport]:
        return [r for r in self.reports if r.order_id == oid and (
            not types or r.exec_type in types)]

    async def until(self, oid: str, exec_type: ExecType, timeout: float = 4.0
                    ) -> ExecutionReport:
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.of(oid, exec_type):
            assert asyncio.get_running_loop().time() < deadline, (
                f"no {exec_type.value} for {oid}; saw {[r.exec_type for r in self.of(oid)]}")
            await asyncio.sleep(0.02)
        return self.of(oid, exec_type)[-1]

    def creates(self, oid: str) -> int:
        return sum(1 for r in self.server.sent("POST", "/orders")
                   if r.body.get("client_order_id") == oid)


async def _run(**options: Any) -> AsyncIterator[_Run]:
    server_options = options.pop("server", {})
    async with CoinbaseServer(new_api_key("EdDSA"), heartbeat_interval=0.1,
                              **server_options) as server:
        broker = coinbase_pair(server, **{"reconcile_interval": 60.0, **options})
        await broker.connect()
        run = _Run(server, broker)
        try:
            yield run
        finally:
            run._task.cancel()
            await broker.close()


@pytest.fixture
async def run() -> AsyncIterator[_Run]:
    async for r in _run():
        yield r


def _order(n: int | str, quantity: str = "10", limit: str | None = "100",
           tif: TimeInForce = TimeInForce.GTC) -> Order:
    return Order(order_id=f"o-{n}", idempotency_key=f"k-{n}", fund_id="conf",
                 strategy_id="s", instrument=BTC, side="buy", quantity=Decimal(quantity),
                 order_type=OrderType.LIMIT if limit else OrderType.MARKET,
                 limit_price=Decimal(limit) if limit else None, time_in_force=tif)


@pytest.mark.parametrize("fault", ["500_after", "drop_after"])
async def test_an_ambiguous_create_is_looked_up_never_sent_twice(run: _Run, fault: str
                                                                 ) -> None:
    run.server.fail_next("/orders", fault)
    ack = await run.broker.submit(_order(1))
    assert ack.exec_type is ExecType.ACK and ack.broker_order_id
    assert run.creates("o-1") == 1
    lookups = run.server.sent("GET", "/orders/historical/batch")
    assert any(r.query.get("client_order_id") == ["o-1"] for r in lookups)
    assert (await run.broker.submit(_order(1))).broker_order_id == ack.broker_order_id
    assert run.creates("o-1") == 1


async def test_the_lookup_works_when_coinbase_ignores_the_client_order_id_filter(
        run: _Run) -> None:
    run.server.venue.filters_client_order_id = False
    for n in range(3):
        await run.broker.submit(_order(f"other-{n}"))
    run.server.fail_next("/orders", "drop_after")
    ack = await run.broker.submit(_order(14))
    assert ack.exec_type is ExecType.ACK
    assert ack.broker_order_id == run.server.venue.by_client["o-14"].order_id
    status = await run.broker.order_status("o-other-1")
    assert status is not None and status.order_id == "o-other-1"
    assert run.creates("o-14") == 1


async def test_ambiguous_cancels_and_edits_are_looked_up_never_sent_twice(run: _Run) -> None:
    await run.broker.submit(_order(16))
    await run.broker.submit(_order(17))
    run.server.fail_next("/orders/batch_cancel", "drop_after")  # cancelled, answer lost
    assert (await run.broker.cancel("o-16")).exec_type is ExecType.CANCELED
    run.server.fail_next("/orders/batch_cancel", "drop_before")  # never reached Coinbase
    with pytest.raises(BrokerUnknownOutcome, match="not re-sent"):
        await run.broker.cancel("o-17")
    assert len(run.server.sent("POST", "/orders/batch_cancel")) == 1
    run.server.fail_next("/orders/edit", "500_after")  # edited, then a 500
    replaced = await run.broker.replace("o-17", quantity=Decimal(12))
    assert replaced.exec_type is ExecType.REPLACED and replaced.leaves_quantity == 12
    run.server.fail_next("/orders/edit", "drop_before")
    with pytest.raises(BrokerUnknownOutcome, match="not re-sent"):
        await run.broker.replace("o-17", limit_price=Decimal(99))
    assert len(run.server.sent("POST", "/orders/edit")) == 1
    assert run.server.venue.by_client["o-17"].size == 12


async def test_open_orders_read_every_page_and_stop_limits_trigger(run: _Run) -> None:
    for n in range(130):  # placed elsewhere (another process, the web UI)
        run.server.venue.create({
            "client_order_id": f"ext-{n}", "product_id": "BTC-USD", "side": "BUY",
            "order_configuration": {"limit_limit_gtc": {"base_size": "1", "limit_price": "50"}}})
    stop = Order(order_id="o-18", idempotency_key="k-18", fund_id="conf", strategy_id="s",
                 instrument=BTC, side="buy", quantity=Decimal(2),
                 order_type=OrderType.STOP_LIMIT, limit_price=Decimal(106),
                 stop_price=Decimal(105), time_in_force=TimeInForce.GTC)
    await run.broker.submit(stop)
    working = await run.broker.open_orders("conf")
    assert len(working) == 131 and sum(o.strategy_id == "external" for o in working) == 130
    pages = [r for r in run.server.sent("GET", "/orders/historical/batch")
             if r.query.get("order_status")]
    assert len(pages) == 2  # 100 + 31
    await run.server.trade("BTC-USD", Decimal(104), Decimal(10))  # below the stop
    await asyncio.sleep(0.2)
    assert not run.of("o-18", ExecType.FILL)
    await run.server.trade("BTC-USD", Decimal("105.5"), Decimal(10))  # triggers, within limit
    fill = await run.until("o-18", ExecType.FILL)
    assert fill.last_price == Decimal("105.5")


async def test_a_timed_out_create_is_resolved_by_listing() -> None:
    async for r in _run(timeout=0.5):
        r.server.fail_next("/orders", "hang_after")
        ack = await r.broker.submit(_order(2))
        assert ack.exec_type is ExecType.ACK
        assert r.creates("o-2") == 1


async def test_a_create_that_never_arrived_is_unknown_then_none(run: _Run) -> None:
    run.server.fail_next("/orders", "drop_before")
    with pytest.raises(BrokerUnknownOutcome, match="not re-sent"):
        await run.broker.submit(_order(3))
    assert run.creates("o-3") == 0
    assert await run.broker.order_status("o-3") is None
    assert (await run.broker.submit(_order(3))).exec_type is ExecType.ACK  # the OMS's repeat
    assert run.creates("o-3") == 1


async def test_429_is_waited_out_and_sent_again(run: _Run) -> None:
    run.server.fail_next("/orders", "429", times=2, retry_after=0.05)
    ack = await run.broker.submit(_order(4))
    assert ack.exec_type is ExecType.ACK
    assert run.broker.rest.rate_limited == 2
    assert [r.status for r in run.server.sent("POST", "/orders")] == [429, 429, 200]
    assert len(run.server.venue.orders) == 1


async def test_rejects_carry_coinbase_code_and_text(run: _Run) -> None:
    run.server.reject_next_create("INSUFFICIENT_FUND", "PREVIEW_INSUFFICIENT_FUND",
                                  "Insufficient balance in source account")
    with pytest.raises(BrokerRejected) as caught:
        await run.broker.submit(_order(5))
    ctx = caught.value.context
    assert ctx["reason_code"] == ReplyCode.INSUFFICIENT_BUYING_POWER
    assert ctx["venue_code"] == "INSUFFICIENT_FUND"
    report = ctx["report"]
    assert report.exec_type is ExecType.REJECT
    assert report.venue_message == "Insufficient balance in source account"
    assert (await run.broker.order_status("o-5")) == report
    with pytest.raises(BrokerRejected, match="UNSUPPORTED"):
        await run.broker.submit(_order(6, tif=TimeInForce.DAY))
    assert run.creates("o-6") == 0  # refused here: Coinbase has no DAY orders


async def test_the_orders_session_24h_or_rth_is_sent_and_any_other_refused(run: _Run) -> None:
    """Coinbase trades around the clock: the default RTH and 24H go out with the same body;
    an equity-market window (or weekdays-only 24X5) is refused and never reaches Coinbase."""
    for n, session in (("s-rth", TradingSession.RTH), ("s-24h", TradingSession.H24)):
        ack = await run.broker.submit(_order(n).model_copy(update={"session": session}))
        assert ack.exec_type is ExecType.ACK
    bodies = [r.body["order_configuration"] for r in run.server.sent("POST", "/orders")
              if r.body.get("client_order_id") in ("o-s-rth", "o-s-24h")]
    assert len(bodies) == 2 and bodies[0] == bodies[1]
    for n, session in (("s-pre", TradingSession.PRE), ("s-night", TradingSession.IBEOS),
                       ("s-24x5", TradingSession.H24X5)):
        with pytest.raises(BrokerRejected,
                           match=f"UNSUPPORTED: session '{session.value}' cannot be kept"):
            await run.broker.submit(_order(n).model_copy(update={"session": session}))
        assert run.creates(f"o-{n}") == 0
        report = await run.until(f"o-{n}", ExecType.REJECT)
        assert report.code is ReplyCode.UNSUPPORTED


async def test_a_fill_racing_the_cancel_wins(run: _Run) -> None:
    await run.broker.submit(_order(7))
    await run.server.trade("BTC-USD", Decimal(100), Decimal(3))
    await run.until("o-7", ExecType.PARTIAL_FILL)
    run.server.fill_before_cancel(Decimal("99.5"))
    answer = await run.broker.cancel("o-7")
    assert answer.exec_type is ExecType.CANCEL_REJECT
    assert answer.venue_code == "ORDER_IS_FULLY_FILLED" and answer.cumulative_quantity == 10
    fills = run.of("o-7", ExecType.PARTIAL_FILL, ExecType.FILL)
    assert [(f.last_quantity, f.last_price) for f in fills] == [
        (Decimal(3), Decimal(100)), (Decimal(7), Decimal("99.5"))]
    assert fills[-1].exec_type is ExecType.FILL
    assert run.reports.index(fills[-1]) < run.reports.index(
        await run.until("o-7", ExecType.CANCEL_REJECT))


async def test_a_sequence_gap_is_recovered_through_rest(run: _Run) -> None:
    await run.broker.submit(_order(8))
    run.server.ws_gap_next()
    await run.server.trade("BTC-USD", Decimal(100), Decimal(4))  # its update is lost
    part = await run.until("o-8", ExecType.PARTIAL_FILL)  # the next heartbeat shows the gap
    assert (part.last_quantity, part.cumulative_quantity) == (Decimal(4), Decimal(4))
    assert run.broker.stream.gaps == 1


async def test_a_lost_message_is_found_by_the_periodic_reconciliation() -> None:
    async for r in _run(reconcile_interval=0.3):
        await r.broker.submit(_order(9))
        r.server.ws_lose_next()
        await r.server.trade("BTC-USD", Decimal(100), Decimal(10))
        fill = await r.until("o-9", ExecType.FILL)
        assert fill.cumulative_quantity == 10 and r.broker.stream.gaps == 0


async def test_a_fills_list_trailing_the_order_is_read_again(run: _Run) -> None:
    await run.broker.submit(_order(15))
    run.server.venue.fills_lag = 2  # the order says 10 filled; the fills list shows none yet
    await run.server.trade("BTC-USD", Decimal(100), Decimal(10))
    fill = await run.until("o-15", ExecType.FILL, timeout=3.0)  # not the 60 s reconciliation
    assert fill.cumulative_quantity == 10 and run.server.venue.fills_lag == 0


async def test_a_gtd_order_expires_at_its_time(run: _Run) -> None:
    expire_at = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
    order = Order(order_id="o-19", idempotency_key="k-19", fund_id="conf", strategy_id="s",
                  instrument=BTC, side="buy", quantity=Decimal(10), order_type=OrderType.LIMIT,
                  limit_price=Decimal(100), time_in_force=TimeInForce.GTD, expire_at=expire_at)
    await run.broker.submit(order)
    assert run.server.venue.by_client["o-19"].config["end_time"] == expire_at.strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    await asyncio.sleep((expire_at - dt.datetime.now(dt.UTC)).total_seconds() + 0.05)
    await run.server.trade("BTC-USD", Decimal(100), Decimal(10))  # too late for it
    expired = await run.until("o-19", ExecType.EXPIRED)
    assert expired.cumulative_quantity == 0 and not run.of("o-19", ExecType.FILL)


async def test_requests_are_paced() -> None:
    rest = CoinbaseRest(broker="coinbase", max_rate=20)
    started = asyncio.get_running_loop().time()
    for _ in range(11):
        assert await rest.call("noop", dict, changes=False) == {}
    assert asyncio.get_running_loop().time() - started >= 0.49  # 10 intervals of 50 ms


async def test_duplicates_count_once(run: _Run) -> None:
    await run.broker.submit(_order(10))
    await run.server.duplicate_next_execution()
    await run.server.trade("BTC-USD", Decimal(100), Decimal(4))
    await run.until("o-10", ExecType.PARTIAL_FILL)
    await asyncio.sleep(0.3)
    assert len(run.of("o-10", ExecType.PARTIAL_FILL, ExecType.FILL)) == 1
    fills = run.server.sent("GET", "/orders/historical/fills")
    assert fills  # the trades were read from REST, where the fill was listed twice


async def test_a_disconnect_mid_fill_and_a_half_open_socket_recover() -> None:
    async for r in _run(heartbeat_timeout=0.4):
        await r.broker.submit(_order(11))
        r.server.ws_drop_on_next_fill()
        await r.server.trade("BTC-USD", Decimal(100), Decimal(4))
        assert (await r.until("o-11", ExecType.PARTIAL_FILL)).cumulative_quantity == 4
        assert r.broker.stream.reconnects >= 1
        before = r.broker.stream.reconnects
        r.server.ws_freeze()  # silence without a close: only the heartbeat watch notices
        await asyncio.sleep(0.2)
        await r.server.trade("BTC-USD", Decimal(100), Decimal(6))
        assert (await r.until("o-11", ExecType.FILL)).cumulative_quantity == 10
        assert r.broker.stream.reconnects > before
        assert r.broker.connection_state is ConnectionState.CONNECTED


async def test_a_connect_while_reconnecting_keeps_one_user_channel(run: _Run) -> None:
    run.broker._on_ws_state(False)  # as when the socket drops
    assert run.broker.connection_state is ConnectionState.RECONNECTING
    await run.broker.connect()
    await asyncio.sleep(0.2)
    state: ConnectionState = run.broker.connection_state  # read again after connect()
    assert state is ConnectionState.CONNECTED
    assert run.server.connections == 1  # the old stream was stopped, not left running


async def test_balances_positions_and_account(run: _Run) -> None:
    await run.broker.submit(_order(12, quantity="2", limit=None))
    await run.server.trade("BTC-USD", Decimal(100), Decimal(5))
    await run.until("o-12", ExecType.FILL)
    positions = await run.broker.positions("conf")
    assert [(p.symbol, p.quantity) for p in positions] == [("BTC-USD", Decimal(2))]
    snap = await run.broker.account("conf")
    assert snap.cash == Decimal(1_000_000) - 200 - Decimal("0.2")
    assert snap.equity == snap.cash + 200 and snap.positions == {"BTC-USD": 2}
    with pytest.raises(BrokerRejected, match="ACCOUNT_NOT_FOUND"):
        await run.broker.account("other")


async def test_no_secret_reaches_an_error_or_a_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with CoinbaseServer(new_api_key("EdDSA")) as server:
        intruder = new_api_key("EdDSA")
        broker = CoinbaseBroker(api_key=server.key.name, api_secret=intruder.secret,
                                base_url=server.base_url, ws_url=server.ws_url,
                                ca_file=str(server.ca_file))
        with pytest.raises(BrokerTransportError) as caught:
            await broker.connect()
        assert caught.value.context["http_status"] == 401
        assert caught.value.context["venue_code"] == "UNAUTHENTICATED"
        text = f"{caught.value} {caught.value.context} {caplog.text}"
        assert intruder.secret not in text and "Bearer" not in text
        assert broker.connection_state is ConnectionState.DISCONNECTED
    with pytest.raises(BrokerConfigError) as bad:
        CoinbaseBroker(api_key="k", api_secret="not a key at all")
    assert "not a key at all" not in f"{bad.value} {bad.value.context}"
    with pytest.raises(BrokerTransportError, match="not sent"):
        await broker.submit(_order(13))


async def test_configuration_from_the_environment_and_the_registry() -> None:
    key = new_api_key("ES256")
    cfg = CoinbaseConfig.load(environ={
        "MTS_BROKERS_COINBASE_API_KEY": key.name,
        "MTS_BROKERS_COINBASE_API_SECRET": key.secret.replace("\n", "\\n"),
        "MTS_BROKERS_COINBASE_ACCOUNT_ID": "main"}, env_file=None)
    assert cfg.account_id == "main" and key.secret not in repr(cfg)
    async with CoinbaseServer(key) as server:
        broker = get_broker("coinbase", config=cfg, base_url=server.base_url,
                            ws_url=server.ws_url, ca_file=str(server.ca_file))
        assert isinstance(broker, CoinbaseBroker)
        async with broker:
            assert broker.connection_state is ConnectionState.CONNECTED
            assert await broker.open_orders("main") == []


async def test_a_refused_user_channel_fails_connect_at_once() -> None:
    async with CoinbaseServer(new_api_key("EdDSA")) as rest, \
            CoinbaseServer(new_api_key("EdDSA")) as other:
        broker = coinbase_pair(rest, heartbeat_timeout=5.0)
        broker._stream._url = other.ws_url  # a user channel that does not know this key
        started = asyncio.get_running_loop().time()
        with pytest.raises(BrokerTransportError, match="authentication failure"):
            await broker.connect()
        assert asyncio.get_running_loop().time() - started < 2  # not the 10 s snapshot wait
        assert broker.connection_state is ConnectionState.DISCONNECTED
        assert other.auth_failures


def test_without_the_extra_the_import_says_what_to_install() -> None:
    code = ("import sys; sys.modules['coinbase'] = None\n"
            "try:\n    import mts1b_brokers.coinbase\n"
            "except ImportError as exc:\n    print(exc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "pip install 'mts1b-brokers[coinbase]'" in out


@pytest.mark.integration
async def test_the_key_can_come_from_vault(tmp_path: Path) -> None:
    """The API key in Vault KV v2 (a real OpenBao dev server from the platform's wheel) at
    ``secret/mts1b/brokers-coinbase``, read through the platform's ``load_config``."""
    hvac = pytest.importorskip("hvac", reason="needs the vault extra of mts1b-platform")
    from mts1b_platform.config import VaultSettings
    from mts1b_platform.devservices import DevServiceError
    from mts1b_platform.devservices.openbao import start_vault, stop_vault

    try:
        svc = await asyncio.to_thread(start_vault, tmp_path)
    except DevServiceError as exc:
        pytest.skip(f"no OpenBao server to test against: {exc.message}")
    try:
        root = Path(svc.extra["MTS_VAULT_TOKEN_FILE"]).read_text().strip()
        key = new_api_key("EdDSA")
        hvac.Client(url=svc.url, token=root).secrets.kv.v2.create_or_update_secret(
            path="mts1b/brokers-coinbase",
            secret={"api_key": key.name, "api_secret": key.secret, "account_id": "vaulted"})
        cfg = await asyncio.to_thread(CoinbaseConfig.load, environ={}, env_file=None,
                                      vault=VaultSettings(addr=svc.url, token=root))
        assert (cfg.api_key, cfg.account_id) == (key.name, "vaulted")
        assert cfg.api_secret.get_secret_value() == key.secret
        assert key.secret not in repr(cfg) and key.secret not in str(cfg)
        async with CoinbaseServer(key) as server, CoinbaseBroker(
                config=cfg, base_url=server.base_url, ws_url=server.ws_url,
                ca_file=str(server.ca_file)) as broker:
            assert (await broker.account("vaulted")).cash == 1_000_000
    finally:
        await asyncio.to_thread(stop_vault, svc)
