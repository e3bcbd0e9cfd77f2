"""Shared fixtures: small synthetic panels built from random walks (no datalake, no files), and
the strict CPU stand-in for cupy (``fake_cupy``)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from mts1b_foundation import UniversePanel


def make_panel(t_len: int = 300, a_len: int = 6, *, seed: int = 0, start: str = "2020-01-01",
               drift: float = 0.0003, vol: float = 0.02) -> UniversePanel:
    """Geometric random walks on business days; open = previous close x a small gap."""
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(drift, vol, (t_len, a_len)), axis=0))
    gap = np.exp(rng.normal(0.0, vol / 3, (t_len, a_len)))
    open_ = np.vstack([close[:1], close[:-1]]) * gap
    high = np.maximum(open_, close) * 1.005
    low = np.minimum(open_, close) * 0.995
    volume = rng.uniform(5e5, 2e6, (t_len, a_len)).round()
    dates = np.busday_offset(np.datetime64(start, "D"), np.arange(t_len), roll="forward")
    symbols = [f"S{i:02d}" for i in range(a_len)]
    return UniversePanel(dates, symbols, open=open_, high=high, low=low, close=close,
                         volume=volume)


@pytest.fixture
def panel() -> UniversePanel:
    return make_panel()


@pytest.fixture
def panel_factory():  # type: ignore[no-untyped-def]
    """``make_panel`` itself, for tests that need other shapes or seeds."""
    return make_panel


@pytest.fixture(scope="module")
def panel_factory_module():  # type: ignore[no-untyped-def]
    """``make_panel`` for module-scoped fixtures."""
    return make_panel


def _load_fake_cupy() -> ModuleType:
    """tests/fake_cupy.py as a module (tests are imported with --import-mode=importlib, so a
    sibling file is loaded by path, not by ``import``)."""
    path = Path(__file__).with_name("fake_cupy.py")
    spec = importlib.util.spec_from_file_location("mts1b_GPUbacktester_tests_fake_cupy", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FAKE_CUPY = _load_fake_cupy()


@pytest.fixture
def fake_cupy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """Install the strict CPU stand-in as ``cupy`` for one test.

    It goes into ``sys.modules``, so ``cupy_status`` imports it through its ordinary path
    (device count, device name, version) and ``backend="cupy"`` / ``"auto"`` pick it like a
    real install; the cache of ``cupy_status`` is cleared on the way in and out so no other
    test sees it.
    """
    from mts1b_GPUbacktester.backend import cupy_status

    monkeypatch.setitem(sys.modules, "cupy", FAKE_CUPY)
    cupy_status.cache_clear()
    yield FAKE_CUPY
    cupy_status.cache_clear()
