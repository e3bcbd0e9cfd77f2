"""What importing the datalake loads: structural checks, no timings.

pandas, pyarrow, fsspec and DuckDB take most of a second together. ``import mts1b_datalake``,
its error classes (which other libraries and the CLI import to catch them) and its CLI module
(which ``mts --help`` loads) must load none of them; the modules that read and write data load
them when one of their names is first used. Each check runs in a fresh interpreter, because
this test process has long since imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("pandas", "pyarrow", "fsspec", "duckdb", "scipy", "numba", "plotly",
         "exchange_calendars")


def _loaded_after(code: str) -> list[str]:
    """The heavy top-level modules present in ``sys.modules`` after ``code`` runs alone."""
    probe = (f"import sys\n{code}\nimport json\n"
             f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=120)
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize("code", [
    "import mts1b_datalake",
    "from mts1b_datalake import DatalakeError, StoreError, __version__",
    "import mts1b_datalake.errors",
    "import mts1b_datalake.cli",
])
def test_imports_load_no_heavy_module(code: str) -> None:
    assert _loaded_after(code) == []


def test_a_name_loads_its_module_on_first_use() -> None:
    code = ("import mts1b_datalake\n"
            "assert 'mts1b_datalake.store' not in sys.modules\n"
            "assert mts1b_datalake.Store.__module__ == 'mts1b_datalake.store'")
    assert "pandas" in _loaded_after(code)  # the store reads and writes with pandas/pyarrow


def test_unknown_names_still_raise_attribute_error() -> None:
    import mts1b_datalake

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mts1b_datalake.nope  # noqa: B018 - the attribute access is the test
    assert set(mts1b_datalake.__all__) <= set(dir(mts1b_datalake))


def test_the_cli_module_loads_no_wire_model() -> None:
    """``mts mts1b-datalake --help`` imports only the CLI module: no pydantic models either."""
    code = ("import mts1b_datalake.cli\n"
            "assert 'mts1b_foundation' not in sys.modules, 'foundation loaded'\n"
            "assert 'pydantic' not in sys.modules, 'pydantic loaded'")
    assert _loaded_after(code) == []
