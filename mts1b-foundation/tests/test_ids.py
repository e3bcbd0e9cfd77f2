import time
import uuid

import pytest
from mts1b_foundation import deterministic_id, new_event_id, new_order_id, uuid7
from mts1b_foundation.ids import uuid7_time_ms


def test_uuid7_is_version_7_and_time_ordered() -> None:
    ids = [uuid7() for _ in range(5000)]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
    assert ids == sorted(ids, key=lambda u: u.int)
    assert len(set(ids)) == len(ids)
    now_ms = time.time_ns() // 1_000_000
    assert abs(uuid7_time_ms(ids[-1]) - now_ms) < 5_000


def test_order_and_event_ids_are_canonical_uuid7_text_and_sort_by_creation() -> None:
    ids = [new_order_id() for _ in range(2000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for text in (ids[0], ids[-1], new_event_id()):
        prefix, _, rest = text.partition("-")
        u = uuid.UUID(rest)
        assert prefix in {"ord", "evt"} and u.version == 7 and str(u) == rest


def test_deterministic_ids_repeat() -> None:
    assert deterministic_id("trd", "paper", "X1", 3) == deterministic_id("trd", "paper", "X1", 3)
    assert deterministic_id("trd", "paper", "X1", 3) != deterministic_id("trd", "paper", "X1", 4)
    with pytest.raises(ValueError, match="prefix"):
        deterministic_id("t-d", "x")
    with pytest.raises(ValueError, match="not a UUIDv7"):
        uuid7_time_ms(uuid.uuid4())
