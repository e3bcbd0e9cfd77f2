"""What importing the backtester loads: structural checks, no timings.

pandas, scipy and numba take most of a second each to import, plotly, pyarrow and DuckDB a good
part of one. ``import mts1b_GPUbacktester``, importing its public names and its CLI module (which
``mts --help`` loads) must load none of them; the functions that need them import them when
called. Each check runs in a fresh interpreter, because this test process has long since
imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("pandas", "scipy", "numba", "plotly", "pyarrow", "duckdb", "vectorbt", "ray", "cupy")


def _loaded_after(code: str) -> list[str]:
    """The heavy top-level modules present in ``sys.modules`` after ``code`` runs alone."""
    probe = (f"import sys\n{code}\nimport json\n"
             f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=120)
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize("code", [
    "import mts1b_GPUbacktester",
    "from mts1b_GPUbacktester import *",
    "import mts1b_GPUbacktester as bt\nfor name in bt.__all__:\n    getattr(bt, name)",
    "import mts1b_GPUbacktester.cli",
    "import mts1b_GPUbacktester.demo",
])
def test_imports_load_no_heavy_module(code: str) -> None:
    assert _loaded_after(code) == []


def test_import_loads_no_submodule_until_a_name_is_used() -> None:
    code = ("import mts1b_GPUbacktester\n"
            "assert not [m for m in sys.modules if m.startswith('mts1b_GPUbacktester.')]\n"
            "assert mts1b_GPUbacktester.__version__\n"
            "assert 'mts1b_GPUbacktester.engine' not in sys.modules\n"
            "mts1b_GPUbacktester.run_single\n"
            "assert 'mts1b_GPUbacktester.engine' in sys.modules")
    assert _loaded_after(code) == []


def test_unknown_names_still_raise_attribute_error() -> None:
    import mts1b_GPUbacktester

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mts1b_GPUbacktester.nope  # noqa: B018 - the attribute access is the test
    assert set(mts1b_GPUbacktester.__all__) <= set(dir(mts1b_GPUbacktester))
