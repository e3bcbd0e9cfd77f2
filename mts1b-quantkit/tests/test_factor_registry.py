"""Factor registry: names, duplicates, the seed's code verbatim, entry-point plugins, and
the ladder hook (LadderEvaluator, get_ladder)."""

from __future__ import annotations

import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
from mts1b_quantkit import factors
from mts1b_quantkit.errors import FactorRegistryError, UnknownFactorError

# The migration guide's "In MTS1B" block, verbatim (the backtest half is not quantkit's).
SEED_SMA_CROSS = '''
import numpy as np
from mts1b_quantkit.factors import register

@register("f_sma_cross")
def f_sma_cross(panel, /, p_fast: int = 20, p_slow: int = 50):
    """Long when fast SMA > slow SMA; flat otherwise."""
    close = panel.close  # (T, A)
    sma_fast = np.array([
        close[max(0, t - p_fast):t].mean(axis=0) for t in range(len(close))
    ])
    sma_slow = np.array([
        close[max(0, t - p_slow):t].mean(axis=0) for t in range(len(close))
    ])
    signal = (sma_fast > sma_slow).astype(float) * 2.0 - 1.0  # +1 / -1
    return signal
'''

# The FAQ's example, verbatim apart from the import of the primitive it uses.
FAQ_FACTOR = '''
from mts1b_quantkit.factors import register, zscore_cross_sectional

@register("f_my_factor")
def f_my_factor(panel, /, h=21):
    return zscore_cross_sectional(panel.close[-1] / panel.close[-h] - 1)
'''


@pytest.fixture
def restore_registry():  # type: ignore[no-untyped-def]
    from mts1b_quantkit.factors import _registry

    saved = dict(_registry._registry)
    saved_ladders = dict(_registry._ladders)
    yield
    _registry._registry.clear()
    _registry._registry.update(saved)
    _registry._ladders.clear()
    _registry._ladders.update(saved_ladders)


def _exec(source: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


@pytest.mark.parametrize("bad", ["sma", "f-x", "F_x", "f_ x", "", 3])
def test_names_must_start_with_f_and_be_identifiers(bad: object) -> None:
    with pytest.raises(FactorRegistryError, match="start"):
        factors.register(bad)  # type: ignore[arg-type]


def test_duplicate_registration_is_an_error_unless_replace(restore_registry) -> None:  # type: ignore[no-untyped-def]
    @factors.register("f_dup_test")
    def one(panel, /):  # type: ignore[no-untyped-def]
        return panel.close

    with pytest.raises(FactorRegistryError, match="already registered"):
        @factors.register("f_dup_test")
        def two(panel, /):  # type: ignore[no-untyped-def]
            return -panel.close

    @factors.register("f_dup_test", replace=True)
    def three(panel, /):  # type: ignore[no-untyped-def]
        return 2 * panel.close

    assert factors.get("f_dup_test") is three
    factors.unregister("f_dup_test")
    with pytest.raises(UnknownFactorError):
        factors.get("f_dup_test")


def test_unknown_factor_is_a_keyerror_naming_it() -> None:
    with pytest.raises(KeyError, match="f_nope"):
        factors.get("f_nope")


def test_seed_sma_cross_pasted_verbatim_registers_and_matches(restore_registry, panel) -> None:  # type: ignore[no-untyped-def]
    builtin = factors.evaluate("f_sma_cross", panel)
    module = _exec(SEED_SMA_CROSS, "user_strategy")
    with pytest.warns(RuntimeWarning):  # the guide's row 0 averages an empty slice
        mine = module.f_sma_cross(panel)
    assert factors.get("f_sma_cross") is module.f_sma_cross  # identical code: idempotent
    np.testing.assert_array_equal(mine, builtin)


def test_a_different_factor_under_a_builtin_name_is_refused(restore_registry) -> None:  # type: ignore[no-untyped-def]
    changed = SEED_SMA_CROSS.replace("* 2.0 - 1.0", "* 3.0 - 1.0")
    with pytest.raises(FactorRegistryError, match="f_sma_cross"):
        _exec(changed, "user_strategy2")


def test_faq_example_registers_and_is_discoverable(restore_registry, panel) -> None:  # type: ignore[no-untyped-def]
    module = _exec(FAQ_FACTOR, "faq")
    assert factors.get("f_my_factor") is module.f_my_factor
    assert "f_my_factor" in factors.list()
    values = factors.evaluate("f_my_factor", panel, h=21)
    assert values.shape == panel.shape
    assert np.isnan(values[:20]).all() and np.isfinite(values[20:, 0]).all()


def _write_plugin(root: Path, entry_points: str) -> None:
    (root / "qk_demo_plugin.py").write_text(textwrap.dedent('''
        import numpy as np
        from mts1b_quantkit.factors import register

        def f_plugin_fn(panel, /, k=1.0):
            return k * np.asarray(panel.close)

        @register("f_plugin_by_module")
        def by_module(panel, /):
            return np.asarray(panel.close)
    '''))
    dist = root / "qk_demo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: qk-demo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(entry_points)


def test_entry_point_plugins_are_discovered(tmp_path, monkeypatch, restore_registry, panel) -> None:  # type: ignore[no-untyped-def]
    _write_plugin(tmp_path, "[mts1b.factors]\n"
                            "f_plugin_fn = qk_demo_plugin:f_plugin_fn\n"
                            "module = qk_demo_plugin\n"
                            "f_broken = qk_demo_plugin_missing:nothing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(RuntimeWarning, match="f_broken"):
        errors = factors.discover(reload=True)
    assert set(errors) == {"f_broken"}
    assert {"f_plugin_fn", "f_plugin_by_module"} <= set(factors.list())
    np.testing.assert_array_equal(factors.evaluate("f_plugin_fn", panel, k=2.0),
                                  2.0 * panel.close)
    with pytest.raises(UnknownFactorError, match="failed to load"):
        factors.get("f_broken")
    sys.modules.pop("qk_demo_plugin", None)


# -- the ladder hook --------------------------------------------------------------------------
def _prepare_shift(panel, combos):  # type: ignore[no-untyped-def]
    """An evaluator for f_hook_test: every combination's values from one array."""
    close = np.asarray(panel.close)

    def values(lo: int, hi: int) -> np.ndarray:
        return np.stack([close * c.get("k", 1.0) for c in combos[lo:hi]])

    return values


def test_a_factor_registered_with_a_ladder_evaluator_offers_it(restore_registry, panel) -> None:  # type: ignore[no-untyped-def]
    evaluator = factors.LadderEvaluator(prepare=_prepare_shift, per_asset=True)

    @factors.register("f_hook_test", ladder=evaluator)
    def f_hook_test(panel, /, k=1.0):  # type: ignore[no-untyped-def]
        return np.asarray(panel.close) * k

    assert factors.get_ladder("f_hook_test") is evaluator
    assert factors.get_ladder(f_hook_test) is evaluator
    combos = [{"k": 1.0}, {"k": 2.0}, {}]
    values = evaluator.prepare(panel, combos)(0, 3)
    for c, v in zip(combos, values, strict=True):
        np.testing.assert_array_equal(v, factors.evaluate("f_hook_test", panel, **c))
    # a function registered without one, or an unregistered one, has none
    assert factors.get_ladder("f_momentum_12_1") is None
    assert factors.get_ladder(lambda p, /: p.close) is None
    with pytest.raises(UnknownFactorError):
        factors.get_ladder("f_not_registered")


def test_the_evaluator_stays_with_its_function(restore_registry) -> None:  # type: ignore[no-untyped-def]
    """A different function registered under the name later does not inherit it; the same code
    registered again (a re-run cell) keeps it; unregistering drops it."""
    evaluator = factors.LadderEvaluator(prepare=_prepare_shift, per_asset=False)
    source = '''
from mts1b_quantkit.factors import register

def f_hook_keep(panel, /, k=1.0):
    return panel.close * k
'''
    first = _exec(source, "hook_a")
    factors.register("f_hook_keep", ladder=evaluator)(first.f_hook_keep)
    again = _exec(source, "hook_b")  # identical code: idempotent, the evaluator still applies
    factors.register("f_hook_keep")(again.f_hook_keep)
    assert factors.get("f_hook_keep") is again.f_hook_keep
    assert factors.get_ladder("f_hook_keep") is evaluator

    @factors.register("f_hook_keep", replace=True)
    def other(panel, /, k=1.0):  # type: ignore[no-untyped-def]
        return -panel.close * k

    assert factors.get_ladder("f_hook_keep") is None
    assert factors.get_ladder(first.f_hook_keep) is None  # no longer what the name holds
    factors.register("f_hook_keep", replace=True, ladder=evaluator)(other)
    assert factors.get_ladder(other) is evaluator
    factors.unregister("f_hook_keep")
    factors.register("f_hook_keep")(other)
    assert factors.get_ladder("f_hook_keep") is None


def test_the_builtin_sma_cross_evaluator_equals_the_factor(panel) -> None:  # type: ignore[no-untyped-def]
    evaluator = factors.get_ladder("f_sma_cross")
    assert evaluator is not None and evaluator.per_asset
    assert factors.get_ladder("f_sma_cross_fast") is evaluator
    combos = [{"p_fast": 3, "p_slow": 10}, {"p_fast": 10, "p_slow": 3}, {"p_slow": 30}, {}]
    values = evaluator.prepare(panel, combos)
    assert evaluator.bytes_per_asset is not None
    assert evaluator.bytes_per_asset(combos, 100) == 8 * 100 * 5  # windows 3, 10, 20, 30, 50
    for lo, hi in ((0, 2), (2, 4)):
        got = values(lo, hi)
        assert got.dtype == bool
        for c, v in zip(combos[lo:hi], got, strict=True):
            np.testing.assert_array_equal(np.where(v, 1.0, -1.0),
                                          factors.evaluate("f_sma_cross", panel, **c))
    with pytest.raises(TypeError, match="unexpected keyword argument 'p_mid'"):
        evaluator.prepare(panel, [{"p_fast": 3, "p_mid": 5}])


def test_ladder_evaluators_are_checked() -> None:
    with pytest.raises(FactorRegistryError, match="prepare"):
        factors.LadderEvaluator(prepare=3, per_asset=True)  # type: ignore[arg-type]
    with pytest.raises(FactorRegistryError, match="per_asset"):
        factors.LadderEvaluator(prepare=_prepare_shift, per_asset=1)  # type: ignore[arg-type]
    with pytest.raises(FactorRegistryError, match="bytes_per_asset"):
        factors.LadderEvaluator(prepare=_prepare_shift, per_asset=True,
                                bytes_per_asset=5)  # type: ignore[arg-type]
    with pytest.raises(FactorRegistryError, match="LadderEvaluator"):
        factors.register("f_hook_bad", ladder=_prepare_shift)  # type: ignore[arg-type]
