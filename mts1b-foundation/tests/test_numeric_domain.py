"""The wire's numeric domain, strict schema_version, bounded tags and context, the timestamp
window and the hook for server-assigned order fields: the attacks of issue #15 are refused with
the field and the value named."""

from __future__ import annotations

import datetime as dt
import gc
import json
import re
from decimal import Decimal, localcontext
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mts1b_foundation import (
    AccountSnapshot,
    CommandReply,
    Equity,
    FxPair,
    Order,
    Position,
    RiskEnvelope,
    ValidationFailed,
    fit_to_domain,
    parse_message,
)
from mts1b_foundation.instruments import validated_instrument
from mts1b_foundation.wire import (
    DECIMAL_PATTERN,
    MAX_MAGNITUDE,
    MAX_SCALE,
    MAX_SIGNIFICANT_DIGITS,
    MAX_TAGS,
    ValidatedInstances,
    check_wire_decimal,
)

NOW = dt.datetime(2024, 3, 1, 14, 30, tzinfo=dt.UTC)
BASE: dict[str, Any] = {"idempotency_key": "k-1", "fund_id": "F1", "strategy_id": "s1",
                        "instrument": {"asset_class": "equity", "symbol": "AAPL"},
                        "side": "buy", "quantity": "100", "created_at": "2024-03-01T14:30:00Z"}


def refused(data: dict[str, Any] | str, field: str) -> dict[str, Any]:
    """Parse an Order that must fail; return the error that names ``field``."""
    with pytest.raises(ValidationFailed) as info:
        parse_message(Order, data if isinstance(data, str) else json.dumps(data))
    errors = info.value.context["errors"]
    named = [e for e in errors if e["field"] == field]
    assert named, f"no error names {field}: {errors}"
    return named[0]


@pytest.mark.parametrize(("value", "reason"), [
    ("1E+308", "magnitude must be below 1E+15"),
    ("1E+100", "magnitude must be below 1E+15"),
    ("9" * 40, "magnitude must be below 1E+15"),
    ("1e999999", "magnitude must be below 1E+15"),
    ("1000000000000000", "magnitude must be below 1E+15"),
    (10**15, "magnitude must be below 1E+15"),
    (10**400, "magnitude must be below 1E+15"),
    ("١٢٣", "not a decimal number"),
    ("１２３", "not a decimal number"),
    (" 123", "not a decimal number"),
    ("1_000", "not a decimal number"),
    ("0x10", "not a decimal number"),
    ("", "not a decimal number"),
    ("1" * 65, "limited to 64 characters"),
    ("NaN", "NaN and Infinity"),
    ("-Infinity", "NaN and Infinity"),
    ("sNaN", "NaN and Infinity"),
    (1.5, "binary float"),
    (True, "boolean"),
    (None, "decimal string or an integer"),
    ([1], "decimal string or an integer"),
    ("0.0000000000001", "at most 12 digits after the decimal point"),
    ("1.0000000000000", "at most 12 digits after the decimal point"),
    ("1.000000000000000000000000001", "at most 12 digits after the decimal point"),
    ("123456789012.123456789", "at most 20 significant digits"),
    ("-5", "must be > 0"),
    ("0", "must be > 0"),
])
def test_quantities_outside_the_domain_are_refused(value: object, reason: str) -> None:
    error = refused({**BASE, "quantity": value}, "quantity")
    assert reason in error["reason"]
    shown = error["value"]
    assert shown == value or (isinstance(value, str) and shown == value[:200] + "...") or (
        isinstance(value, list) and shown == repr(value)) or (
        isinstance(value, int) and shown == value)


@pytest.mark.parametrize(("text", "expected"), [
    ("100", Decimal(100)),
    ("+100", Decimal(100)),
    ("0.5", Decimal("0.5")),
    (".5", Decimal("0.5")),
    ("5.", Decimal(5)),
    ("1E-7", Decimal("1E-7")),
    ("1.5e3", Decimal(1500)),
    ("999999999999999", Decimal("999999999999999")),
    ("0.000000000001", Decimal("1E-12")),
    ("12345678.123456789012", Decimal("12345678.123456789012")),
    (100, Decimal(100)),
])
def test_domain_values_are_read_exactly(text: object, expected: Decimal) -> None:
    order = parse_message(Order, json.dumps({**BASE, "quantity": text}))
    assert order.quantity == expected
    assert parse_message(Order, order.to_json()) == order


def test_json_numbers_with_a_fraction_are_refused_because_they_are_floats() -> None:
    text = json.dumps(BASE).replace('"quantity": "100"', '"quantity": 1.00000000000000000001')
    assert "binary float" in refused(text, "quantity")["reason"]
    text = json.dumps(BASE).replace('"quantity": "100"', '"quantity": 1e999999')
    assert "binary float" in refused(text, "quantity")["reason"]


def test_every_decimal_field_has_the_domain() -> None:
    with pytest.raises(ValidationFailed, match="avg_cost='4E\\+308'"):
        parse_message(Position, {"fund_id": "F", "symbol": "AAPL", "quantity": "1",
                                 "avg_cost": "4E+308", "as_of": "2024-03-01T00:00:00Z"})
    with pytest.raises(ValidationFailed, match=r"positions\.AAPL"):
        parse_message(AccountSnapshot, {"broker": "paper", "account_id": "A", "cash": "1",
                                        "buying_power": "1", "equity": "1",
                                        "positions": {"AAPL": "4E+308"},
                                        "as_of": "2024-03-01T00:00:00Z"})
    with pytest.raises(ValidationFailed, match="max_order_quantity"):
        parse_message(RiskEnvelope, {"max_order_quantity": "1e999999"})
    with pytest.raises(ValidationFailed, match="tick_size"):
        parse_message(Equity, {"symbol": "AAPL", "tick_size": "١"})


decimals = st.decimals(min_value=-MAX_MAGNITUDE + 1, max_value=MAX_MAGNITUDE - 1,
                       allow_nan=False, allow_infinity=False, places=MAX_SCALE).map(
    lambda d: fit_to_domain(d))


@settings(max_examples=500)
@given(decimals, decimals)
def test_sums_and_differences_of_wire_values_are_exact(a: Decimal, b: Decimal) -> None:
    """Why 15 + 12 digits: any sum or difference of two wire decimals is exact in the default
    28-digit context, so a fill that completes an order compares equal to its quantity."""
    check_wire_decimal(a)
    check_wire_decimal(b)
    with localcontext() as exact:
        exact.prec = 60
        wide_sum, wide_diff = a + b, a - b
    assert a + b == wide_sum
    assert a - b == wide_diff
    assert (a + b) - b == a


def test_a_completing_fill_of_a_long_quantity_is_not_an_overfill() -> None:
    quantity = Decimal("99999999.999999999999")  # 20 significant digits, 12 places
    first, second = Decimal("0.000000000001"), Decimal("99999999.999999999998")
    check_wire_decimal(quantity)
    assert first + second == quantity


def test_fit_to_domain() -> None:
    assert fit_to_domain(Decimal(100) / 3) == Decimal("33.333333333333")
    assert fit_to_domain(17.65999984741211) == Decimal("17.659999847412")
    assert fit_to_domain(0.1) == Decimal("0.1")
    assert fit_to_domain(Decimal("100.00")) == Decimal("100.00")  # in the domain: unchanged
    assert fit_to_domain(Decimal("99999999.9999999999995")) == Decimal("100000000.00000000000")
    assert fit_to_domain(Decimal("123456789012.123456789")) == Decimal("123456789012.12345679")
    assert fit_to_domain(12) == Decimal(12)
    for bad in (Decimal("1E+15"), float("inf"), float("nan"), Decimal("NaN"), 10**15, True):
        with pytest.raises(ValueError, match=r"magnitude|finite|boolean"):
            fit_to_domain(bad)
    with pytest.raises(ValueError, match="magnitude"):
        fit_to_domain(Decimal("999999999999999.9999999"))  # rounds up to 1E+15


def test_domain_constants_are_the_documented_ones() -> None:
    assert Decimal("1E+15") == MAX_MAGNITUDE
    assert (MAX_SIGNIFICANT_DIGITS, MAX_SCALE, MAX_TAGS) == (20, 12, 32)


@pytest.mark.parametrize("version", ["2", True, 2.0, None, [2]])
def test_schema_version_must_be_a_json_integer(version: object) -> None:
    error = refused({**BASE, "schema_version": version}, "schema_version")
    assert error["value"] == version or error["value"] == repr(version)


def test_order_schema_version_is_the_current_one_when_omitted() -> None:
    assert parse_message(Order, BASE).schema_version == Order.SCHEMA_VERSION == 3


@pytest.mark.parametrize(("tags", "field", "reason"), [
    ({f"k{i}": i for i in range(MAX_TAGS + 1)}, "tags", "at most 32 items"),
    ({"k": "x" * 257}, "tags.k.constrained-str", "at most 256 characters"),
    ({"a b": 1}, "tags.a b.[key]", "should match pattern"),
    ({"": 1}, "tags..[key]", "should match pattern"),
    ({"k" * 65: 1}, f"tags.{'k' * 65}.[key]", "should match pattern"),
    ({"k": "line\nbreak"}, "tags.k.constrained-str", "should match pattern"),
    ({"k": 2**63}, "tags.k.constrained-int", "less than or equal to"),
    ({"k": 0.5}, "tags.k.constrained-int", "valid integer"),
    ({f"k{i}": "v" * 200 for i in range(25)}, "tags", "bytes as JSON; at most 4096"),
    ({"k": {"nested": 1}}, "tags.k.constrained-str", "valid string"),
])
def test_tags_are_bounded(tags: dict[str, Any], field: str, reason: str) -> None:
    error = refused({**BASE, "tags": tags}, field)
    assert reason in error["reason"]


def test_nine_hundred_kilobytes_of_tags_are_refused() -> None:
    tags = {f"k{i}": "x" * 256 for i in range(3600)}
    assert len(json.dumps(tags)) > 900_000
    assert "at most 32 items" in refused({**BASE, "tags": tags}, "tags")["reason"]


def test_reasonable_tags_pass() -> None:
    tags = {"desk": "eq", "batch": 7, "paper": True, "weight": "0.5", "note": None}
    assert parse_message(Order, {**BASE, "tags": tags}).tags == tags


def test_context_is_bounded() -> None:
    with pytest.raises(ValueError, match="context"):
        CommandReply(ok=True, context={f"k{i}": 1 for i in range(65)})
    with pytest.raises(ValidationFailed, match="context"):
        parse_message(CommandReply, {"ok": True, "context": {"k": "x" * 2001}})
    with pytest.raises(ValidationFailed, match="context"):
        parse_message(CommandReply, {"ok": True,
                                     "context": {f"k{i}": "x" * 1999 for i in range(9)}})


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00Z", "1899-12-31T23:59:59Z",
                                   "2200-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
def test_timestamps_outside_1900_to_2200_are_refused(stamp: str) -> None:
    error = refused({**BASE, "created_at": stamp}, "created_at")
    assert "outside 1900-01-01 .. 2200-01-01" in error["reason"]


def test_the_oms_assigns_order_id_and_created_at() -> None:
    """The hook the OMS calls on acceptance: whatever the client sent is replaced."""
    client = parse_message(Order, {**BASE, "created_at": "1900-01-01T00:00:00Z"})
    assert Order.SERVER_ASSIGNED == ("order_id", "created_at")
    accepted = client.assigned(order_id="ord-1", now=NOW, broker="paper")
    assert accepted.order_id == "ord-1" and accepted.created_at == NOW
    assert accepted.broker == "paper"
    assert accepted.model_dump(exclude={"order_id", "created_at", "broker"}) == (
        client.model_dump(exclude={"order_id", "created_at", "broker"}))
    with pytest.raises(ValidationFailed, match="created_at"):
        client.assigned(order_id="ord-1", now=dt.datetime(2024, 3, 1))  # naive  # noqa: DTZ001
    with pytest.raises(ValidationFailed, match="order_id"):
        client.assigned(order_id="../ord", now=NOW)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic: dumping unvalidated fields
def test_assigned_without_a_full_validation_only_for_a_validated_order() -> None:
    """``assigned`` skips validating the whole order again only for an order that passed
    validation itself (its fast path); what that cannot vouch for is validated again:
    its result is the full validation's, and everything the full validation refuses is
    refused."""
    client = parse_message(Order, {**BASE, "tags": {"run": 7}})
    fast = client.assigned(order_id="ord-1", now=NOW, broker="paper")
    full = parse_message(Order, {**client.model_dump(), "order_id": "ord-1",
                                 "created_at": NOW, "broker": "paper"})
    assert fast == full and fast.tags is not client.tags and fast.sleeves is not client.sleeves
    odd = Equity.model_construct(**{**client.instrument.__dict__, "lot_size": Decimal("NaN")})
    mutated = parse_message(Order, BASE)
    mutated.tags["no spaces"] = "x"  # a frozen model's dict can still be changed in place
    not_validated = [
        (Order.model_construct(**{**client.__dict__, "quantity": Decimal("NaN")}), "quantity"),
        (client.model_copy(update={"quantity": Decimal("1E+300")}), "quantity"),
        (Order(**{**client.__dict__, "instrument": odd}), "instrument"),  # taken as it is
        (mutated, "tags"),
    ]
    constructed = Order.model_construct(**{**client.__dict__, "quantity": Decimal("NaN")})
    taken = Order.model_validate(constructed)  # an instance passed in is taken as it is
    assert taken is constructed
    not_validated.append((taken, "quantity"))
    for bad, field in not_validated:
        with pytest.raises(ValidationFailed, match=field):
            bad.assigned(order_id="ord-1", now=NOW)
    with pytest.raises(ValidationFailed, match="broker"):
        client.assigned(order_id="ord-1", now=NOW, broker="no spaces")


def test_validated_instances_are_kept_by_identity_and_weakly() -> None:
    seen = ValidatedInstances()
    a, b = Equity(symbol="AAPL"), Equity(symbol="AAPL")
    seen.add(a)
    assert a in seen and b not in seen and a.model_copy() not in seen and len(seen) == 1
    del a
    gc.collect()
    assert len(seen) == 0

def test_only_instruments_that_passed_their_last_validator_are_remembered() -> None:
    """``Order.assigned`` keeps an instrument that passed validation as it is; one that
    did not, or whose kind has a check running after the remembering (FX, crypto), is
    validated again."""
    equity = Equity(symbol="AAPL")
    fx = FxPair(symbol="EURUSD", base="EUR", quote="USD")
    assert validated_instrument(equity) and not validated_instrument(fx)
    assert not validated_instrument(equity.model_copy())
    assert not validated_instrument(Equity.model_construct(**equity.__dict__))
    nan_fx = FxPair.model_construct(**{**fx.__dict__, "tick_size": Decimal("NaN")})
    with pytest.raises(ValidationFailed, match="instrument"):
        Order(**{**parse_message(Order, BASE).__dict__, "instrument": nan_fx}).assigned(
            order_id="ord-1", now=NOW)
    taken = Equity.model_validate(Equity.model_construct(**{**equity.__dict__,
                                                            "lot_size": Decimal("NaN")}))
    assert not validated_instrument(taken)  # an instance passed in is not validated again
    accepted = Order(**{**parse_message(Order, BASE).__dict__, "instrument": fx}).assigned(
        order_id="ord-1", now=NOW)
    assert accepted.instrument == fx


@settings(max_examples=2000)
@given(st.text(alphabet="0123456789.+-eE_ naIify\u0661", max_size=24)
       | st.from_regex(r"[+-]?[0-9]{0,18}(\.[0-9]{0,16})?([eE][+-]?[0-9]{1,3})?", fullmatch=True))
def test_decimal_text_follows_the_documented_grammar(text: str) -> None:
    """The fast string checks accept exactly the text that the JSON Schema's pattern states and
    whose value the domain allows, and read it as Decimal would."""
    try:
        number = parse_message(Order, {**BASE, "quantity": text}).quantity
    except ValidationFailed:
        accepted = False
    else:
        accepted = True
        assert number == Decimal(text)
    grammatical = re.fullmatch(DECIMAL_PATTERN, text) is not None
    in_domain = False
    if grammatical:
        try:
            value = check_wire_decimal(Decimal(text))
        except ValueError:
            pass
        else:
            in_domain = value > 0
    assert accepted == in_domain
