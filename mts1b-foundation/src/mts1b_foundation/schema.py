"""JSON Schema export of every wire model, and the committed snapshot they are checked against.

Why a snapshot: a change to a wire model changes what other processes (maybe older versions)
read. Comparing the generated schemas with the committed ones makes every such change show up in
review, where it must come with a ``SCHEMA_VERSION`` bump and a snapshot update
(``python -m mts1b_foundation.schema --write``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib import resources
from typing import Any

from pydantic import TypeAdapter

from mts1b_foundation import answers, commands, market_data, operations, orders, portfolio
from mts1b_foundation.instruments import (
    ETF,
    INSTRUMENT_SCHEMA_VERSION,
    CryptoPair,
    Equity,
    EventContract,
    Future,
    FxPair,
    Instrument,
    Option,
)
from mts1b_foundation.wire import WireModel

__all__ = ["SNAPSHOT_FILE", "export_schemas", "load_snapshot", "wire_models"]

SNAPSHOT_FILE = "schemas.json"


def wire_models() -> dict[str, type[WireModel]]:
    """Every concrete wire model by class name."""
    found: dict[str, type[WireModel]] = {}
    for module in (market_data, orders, portfolio, operations, commands, answers):
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, WireModel) and obj is not WireModel:
                found[name] = obj
    for cls in (Equity, ETF, Option, Future, FxPair, CryptoPair, EventContract):
        found[cls.__name__] = cls
    return dict(sorted(found.items()))


def export_schemas() -> dict[str, Any]:
    """``{name: {"schema_version": N, "schema": <JSON Schema>}}`` incl. the Instrument union."""
    out: dict[str, Any] = {}
    for name, model in wire_models().items():
        out[name] = {"schema_version": model.SCHEMA_VERSION,
                     "schema": model.model_json_schema(mode="validation")}
    out["Instrument"] = {"schema_version": INSTRUMENT_SCHEMA_VERSION,
                         "schema": TypeAdapter(Instrument).json_schema(mode="validation")}
    return out


def load_snapshot() -> dict[str, Any]:
    """The committed snapshot shipped inside the package."""
    text = resources.files("mts1b_foundation").joinpath(SNAPSHOT_FILE).read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export the wire models' JSON Schemas.")
    parser.add_argument("--write", action="store_true",
                        help="rewrite the committed snapshot inside the package")
    args = parser.parse_args(argv)
    text = _dumps(export_schemas())
    if args.write:
        target = resources.files("mts1b_foundation").joinpath(SNAPSHOT_FILE)
        with resources.as_file(target) as path:
            path.write_text(text, encoding="utf-8")
        sys.stderr.write(f"wrote {path}\n")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
