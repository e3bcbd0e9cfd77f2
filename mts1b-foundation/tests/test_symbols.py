"""Symbol: every real symbol in ../shared/data is accepted, hostile ones are refused, and the
subject-token encoding is reversible (property-tested over every valid symbol)."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import os
import re
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mts1b_foundation import (
    Bar,
    Equity,
    Fill,
    Option,
    Position,
    Quote,
    RiskEnvelope,
    Signal,
    SubjectError,
    Trade,
    ValidationFailed,
    check_publishable,
    is_symbol,
    model_for_subject,
    parse_message,
    symbol_of_subject,
    symbol_subject,
    symbol_to_token,
    token_to_symbol,
)
from mts1b_foundation.subjects import validate_subject
from mts1b_foundation.symbols import MAX_SYMBOL_LENGTH, SYMBOL_PATTERN, check_symbol

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("MTS1B_SHARED_DATA", ROOT.parent / "shared" / "data"))
NOW = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
_SYMBOL_COLUMNS = {"name", "stock", "asset", "symbol", "ticker"}
_TICKER_YEAR = re.compile(r"^([a-z]+)-\d{4}")


def _shared_symbols() -> set[str]:
    """Every symbol in ../shared/data (layouts in its README): the values of a symbol column
    (``Name``, ``Stock``, ``ASSET``) and, for single-instrument files, the file's name
    (``EURUSD=X.csv``; ``nvda-1999-2014.txt`` is NVDA), plus ``^GSPC``, the upstream name
    of ``benchmark/GSPC.csv``."""
    found = {"^GSPC"}
    for path in sorted(DATA.rglob("*")):
        if path.suffix not in {".csv", ".txt", ".gz"}:
            continue
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            rows = csv.reader(fh)
            header = [h.strip().lower() for h in next(rows)]
            columns = [i for i, h in enumerate(header) if h in _SYMBOL_COLUMNS]
            if columns:
                found.update(row[i] for row in rows for i in columns if len(row) > i)
                continue
        stem = path.name.split(".csv")[0].split(".txt")[0]
        ticker = _TICKER_YEAR.match(stem)
        found.add(ticker.group(1).upper() if ticker else stem)
    return found


def test_every_symbol_in_the_shared_data_is_a_symbol() -> None:
    if not DATA.is_dir():
        pytest.skip(f"real market data not found at {DATA} (set MTS1B_SHARED_DATA)")
    symbols = _shared_symbols()
    # the S&P 500 file alone has 505 names; the named ones are the awkward cases
    assert len(symbols) > 505
    assert {"BRK.B", "BF.B", "EURUSD=X", "JPY=X", "BTC-USD", "SPY_MAX", "GOOGL", "NVDA",
            "^GSPC"} <= symbols
    refused = sorted(s for s in symbols if not is_symbol(s))
    assert refused == []
    for s in symbols:
        assert token_to_symbol(symbol_to_token(s)) == s
        assert Equity(symbol=s).symbol == s


@pytest.mark.parametrize(("symbol", "reason"), [
    ("../../etc/passwd", "'/'"),
    ("..", "starts with a letter or a digit"),
    (".", "starts with a letter or a digit"),
    ("A..B", "followed by a character other than '.'"),
    ("BRK.", "followed by a character other than '.'"),
    ("C:\\Windows", "':', '\\\\'"),
    ("X;DROP TABLE bars;--", "' ', ';'"),
    ("bar\nnl", "'\\n'"),
    ("AAPL\n", "'\\n'"),
    ("AAPL ", "' '"),
    ("\tAAPL", "'\\t'"),
    ("O'NEIL", '"\'"'),
    ('A"B', "'\"'"),
    ("BTC/USD", "'/'"),
    ("ES*", "'*'"),
    ("ES>", "'>'"),
    ("100%", "'%'"),
    ("١٢٣", "'١'"),
    ("Ａ", "'Ａ'"),
    ("", "empty"),
    ("A" * 65, "at most 64 characters, this one 65"),
    ("A" * 300, "this one 300"),
    ("_X", "starts with a letter or a digit"),
    ("^", "starts with a letter or a digit"),
])
def test_hostile_symbols_are_refused_with_the_reason(symbol: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        check_symbol(symbol)
    assert not is_symbol(symbol)
    with pytest.raises(ValidationFailed) as info:
        parse_message(Bar, {"symbol": symbol, "ts": "2024-03-01T00:00:00Z", "open": "1",
                            "high": "1", "low": "1", "close": "1", "volume": "0"})
    error = info.value.context["errors"][0]
    assert error["field"] == "symbol" and error["value"] == symbol[:200] + (
        "..." if len(symbol) > 200 else "")
    assert reason in error["reason"]
    with pytest.raises(SubjectError):
        symbol_to_token(symbol)


def test_every_symbol_field_uses_symbol() -> None:
    """Instruments, market data, fills, positions, reports, weights and restricted lists."""
    bad = "../x"
    with pytest.raises(ValidationFailed, match="symbol"):
        parse_message(Fill, {"trade_id": "t", "order_id": "o", "fund_id": "F", "symbol": bad,
                             "side": "buy", "quantity": "1", "price": "1",
                             "ts": "2024-03-01T00:00:00Z"})
    with pytest.raises(ValidationFailed, match="symbol"):
        parse_message(Position, {"fund_id": "F", "symbol": bad, "quantity": "1",
                                 "as_of": "2024-03-01T00:00:00Z"})
    with pytest.raises(ValidationFailed, match=r"weights\.\.\./x"):
        parse_message(Signal, {"strategy_id": "s", "as_of": "2024-03-01T00:00:00Z",
                               "weights": {bad: "0.1"}})
    with pytest.raises(ValidationFailed, match=r"restricted_symbols\.0"):
        parse_message(RiskEnvelope, {"restricted_symbols": [bad]})
    with pytest.raises(ValidationFailed, match="underlying"):
        parse_message(Option, {"symbol": "A", "underlying": bad, "expiry": "2024-06-21",
                               "strike": "1", "right": "put"})
    assert RiskEnvelope(restricted_symbols=["BRK.B"]).restricted_symbols == ["BRK.B"]


def test_tokens_are_readable_and_plain_symbols_unchanged() -> None:
    assert symbol_to_token("AAPL") == "AAPL"
    assert symbol_to_token("BTC-USD") == "BTC-USD"
    assert symbol_to_token("BRK.B") == "BRK_2EB"
    assert symbol_to_token("EURUSD=X") == "EURUSD_3DX"
    assert symbol_to_token("^GSPC") == "_5EGSPC"
    assert symbol_to_token("SPY_MAX") == "SPY_5FMAX"
    assert symbol_to_token("M&M.NS") == "M_26M_2ENS"
    assert token_to_symbol("BRK_2EB") == "BRK.B"


@pytest.mark.parametrize("token", [
    "BRK_2e",      # lower-case hex: the encoder writes upper case only
    "BRK_41",      # an escaped 'A': letters are never escaped
    "BRK_2",       # a cut escape
    "a__b",        # '_' only ever starts an escape
    "X_2E_2E",     # decodes to 'X..', not a symbol
    "BRK.B",       # a raw '.' cannot be in a token
    "",
    "A B",
    "_2F_2E_2E",   # '/..' : '/' is never escaped because it is never in a symbol
])
def test_only_tokens_the_encoder_writes_decode(token: str) -> None:
    with pytest.raises(SubjectError):
        token_to_symbol(token)


valid_symbols = st.from_regex(SYMBOL_PATTERN, fullmatch=True).filter(
    lambda s: len(s) <= MAX_SYMBOL_LENGTH)


@settings(max_examples=1000)
@given(valid_symbols)
def test_token_round_trip_over_all_valid_symbols(symbol: str) -> None:
    assert is_symbol(symbol)
    token = symbol_to_token(symbol)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert token_to_symbol(token) == symbol
    for entity, model in (("bars", Bar), ("quotes", Quote), ("trades", Trade)):
        subject = symbol_subject(entity, symbol)
        assert validate_subject(subject)[4] == token
        assert model_for_subject(subject) is model
        assert symbol_of_subject(subject) == symbol


@settings(max_examples=1000)
@given(st.text(max_size=80))
def test_any_text_is_refused_or_a_safe_symbol(text: str) -> None:
    if not is_symbol(text):
        with pytest.raises(SubjectError):
            symbol_to_token(text)
        return
    assert 1 <= len(text) <= MAX_SYMBOL_LENGTH
    assert not set(text) & set("/\\ \t\r\n\x00'\";*>%:")
    assert text not in {".", ".."} and ".." not in text and text.isascii()
    assert token_to_symbol(symbol_to_token(text)) == text


@settings(max_examples=500)
@given(st.text(alphabet="AZaz09_-.=^&/%", max_size=20))
def test_a_token_decodes_only_to_the_symbol_whose_token_it_is(token: str) -> None:
    try:
        symbol = token_to_symbol(token)
    except SubjectError:
        return
    assert symbol_to_token(symbol) == token


def test_market_data_must_travel_on_its_own_symbol_subject() -> None:
    bar = Bar(symbol="BRK.B", ts=NOW, open=Decimal(1), high=Decimal(1), low=Decimal(1),
              close=Decimal(1), volume=Decimal(0))
    check_publishable("mts.v1.datalake.bars.BRK_2EB", bar)
    with pytest.raises(SubjectError, match=re.escape("'mts.v1.datalake.bars.BRK_2EB'")):
        check_publishable("mts.v1.datalake.bars.BRK-B", bar)
    quote = Quote(symbol="EURUSD=X", ts=NOW, bid=Decimal("1.08"), ask=Decimal("1.09"))
    check_publishable(symbol_subject("quotes", "EURUSD=X"), quote)
    with pytest.raises(SubjectError, match="no per-symbol subjects"):
        symbol_subject("fills", "AAPL")
    with pytest.raises(SubjectError, match="not a per-symbol subject"):
        symbol_of_subject("mts.v1.oms.fills.recorded")
