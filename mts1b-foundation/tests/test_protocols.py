import datetime as dt
from decimal import Decimal

from mts1b_foundation import (
    Bar,
    BrokerProtocol,
    BrokerRejected,
    BrokerUnknownOutcome,
    InMemoryMarketData,
    MarketDataProtocol,
    MtsError,
    SystemClock,
)
from mts1b_foundation.protocols import missing_members

DAY = dt.datetime(2024, 1, 2, 21, tzinfo=dt.UTC)


def bar(symbol: str, days: int) -> Bar:
    return Bar(symbol=symbol, ts=DAY + dt.timedelta(days=days), open=Decimal(1),
               high=Decimal(2), low=Decimal(1), close=Decimal(2), volume=Decimal(10))


def test_in_memory_market_data_conforms() -> None:
    md = InMemoryMarketData([bar("B", 1), bar("A", 0), bar("A", 1), bar("A", 5)])
    assert isinstance(md, MarketDataProtocol)
    assert missing_members(md, MarketDataProtocol) == []
    got = list(md.bars(["A"], dt.date(2024, 1, 2), dt.date(2024, 1, 3)))
    assert [(b.symbol, b.ts.date().isoformat()) for b in got] == [
        ("A", "2024-01-02"), ("A", "2024-01-03")]
    assert md.symbols() == ["A", "B"]
    assert md.latest_quote("A") is None


def test_broker_protocol_conformance_check_names_missing_methods() -> None:
    class Half:
        name = "half"

        async def submit(self, order: object) -> None: ...

    assert not isinstance(Half(), BrokerProtocol)
    missing = missing_members(Half(), BrokerProtocol)
    assert "cancel" in missing and "execution_reports" in missing and "submit" not in missing


def test_broker_errors_have_distinct_stable_codes() -> None:
    assert issubclass(BrokerRejected, MtsError)
    assert BrokerRejected.code == "BROKER.REJECTED"
    assert BrokerUnknownOutcome.code == "BROKER.UNKNOWN_OUTCOME"
    assert not issubclass(BrokerUnknownOutcome, BrokerRejected)
    assert SystemClock().now().tzinfo is dt.UTC
