"""Where the IBKR adapter keeps which IB order id carries which of our orders.

Why it must be durable and written *before* ``placeOrder``: IB order ids are integers the
client picks from nextValidId, not our client order ids. If the process dies between sending
an order and hearing back, the only way to find the order again (and not send it twice) is to
know the id it went out under, and our ``order_id`` in its ``orderRef``. Reconciliation reads
this record after every (re)connect.

Two stores: :class:`MemoryOrderStore` (one process, tests) and :class:`JsonFileOrderStore`
(the default when a path is given: one JSON file, replaced atomically on every write). Any
object with the :class:`OrderStore` methods can be passed instead (a database table).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["JsonFileOrderStore", "MemoryOrderStore", "OrderRecord", "OrderStore"]


@dataclass(frozen=True)
class OrderRecord:
    """One of our orders as sent to IB.

    ``state``: ``sending`` (recorded, placeOrder may or may not have left), ``acked``,
    ``rejected``, ``done`` (filled, canceled or expired). ``order_json`` is the foundation
    ``Order`` as JSON; ``report_json`` the last ``ExecutionReport`` (a reject's, say).
    """

    order_id: str
    ib_order_id: int
    account: str
    order_json: str
    state: str = "sending"
    perm_id: int = 0
    report_json: str = ""


@runtime_checkable
class OrderStore(Protocol):
    """Durable map of our order id -> :class:`OrderRecord`."""

    def put(self, record: OrderRecord) -> None: ...

    def get(self, order_id: str) -> OrderRecord | None: ...

    def all(self) -> list[OrderRecord]: ...


class MemoryOrderStore:
    """In-process store (lost with the process; for tests and paper-like runs)."""

    def __init__(self) -> None:
        self._records: dict[str, OrderRecord] = {}

    def put(self, record: OrderRecord) -> None:
        self._records[record.order_id] = record

    def get(self, order_id: str) -> OrderRecord | None:
        return self._records.get(order_id)

    def all(self) -> list[OrderRecord]:
        return list(self._records.values())


class JsonFileOrderStore(MemoryOrderStore):
    """One JSON file, rewritten through a temporary file and ``os.replace`` (atomic on POSIX),
    fsynced before the replace, so a crash leaves the old or the new file, never half of one.

    Fine for the few thousand orders a day of one account; a busier desk plugs in a database.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        if self.path.exists():
            try:
                rows = json.loads(self.path.read_text())
                for row in rows:
                    super().put(OrderRecord(**row))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"the IBKR order store {str(self.path)!r} cannot be read "
                                 f"({type(exc).__name__}); move it aside to start empty") from None

    def put(self, record: OrderRecord) -> None:
        super().put(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps([asdict(r) for r in self.all()], sort_keys=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".ibkr-orders-")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
