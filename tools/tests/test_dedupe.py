"""tools.dedupe on planted fake repositories: each kind of finding is caught, near-misses not."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from tools.dedupe import (
    DEFAULT_ALLOWLIST,
    DEFAULT_CANONICAL,
    fingerprint,
    load_allowlist,
    load_canonical,
    scan,
)
from tools.dedupe.__main__ import main
from tools.dedupe.scan import Report

# A function of about 50 AST nodes: well above the default threshold of 25.
VOLATILITY = '''
def realised_vol(returns, periods=252):
    """Annualised standard deviation of returns."""
    mean = sum(returns) / len(returns)
    var = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    return (var * periods) ** 0.5
'''

# Same code, every name and literal changed, a different docstring, annotations added.
VOLATILITY_RENAMED = '''
def ann_sigma(xs: list[float], k: int = 365) -> float:
    """Another docstring."""
    mu = sum(xs) / len(xs)
    s2 = sum((x - mu) ** 3 for x in xs) / (len(xs) - 2)
    return (s2 * k) ** 0.25
'''

# Near-miss: one operator differs (``-`` -> ``+`` in the variance).
VOLATILITY_OTHER_OPERATOR = '''
def realised_vol(returns, periods=252):
    mean = sum(returns) / len(returns)
    var = sum((r + mean) ** 2 for r in returns) / (len(returns) - 1)
    return (var * periods) ** 0.5
'''

# Near-miss: same names and operators, different structure (an early return added).
VOLATILITY_OTHER_STRUCTURE = '''
def realised_vol(returns, periods=252):
    if not returns:
        return 0.0
    mean = sum(returns) / len(returns)
    var = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    return (var * periods) ** 0.5
'''

# Near-miss: the same variable used twice where the original uses two different ones.
VOLATILITY_OTHER_BINDING = '''
def realised_vol(returns, periods=252):
    mean = sum(returns) / len(returns)
    var = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    return (var * var) ** 0.5
'''

TINY = '''
def clip(x, lo, hi):
    return max(lo, min(x, hi))
'''

SHARPE = '''
def sharpe(returns):
    return sum(returns) / len(returns)
'''


def write(root: Path, library: str, module: str, code: str) -> Path:
    """Write ``code`` as ``<root>/mts1b-<library>/src/mts1b_<library>/<module>.py``."""
    package = root / f"mts1b-{library}" / "src" / f"mts1b_{library}"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").touch()
    path = package.joinpath(*module.split(".")).with_suffix(".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in path.relative_to(package).parents:
        (package / parent / "__init__.py").touch()
    path.write_text(textwrap.dedent(code), encoding="utf-8")
    return path


@pytest.fixture
def lists(tmp_path: Path) -> tuple[Path, Path]:
    """A canonical list with one primitive (sharpe in mts1b_a.metrics) and an empty allowlist."""
    canonical = tmp_path / "canonical.toml"
    canonical.write_text(
        '[[primitive]]\nname = "sharpe"\nhome = "mts1b_a.metrics"\n'
        'aliases = ["sharpe_ratio"]\n',
        encoding="utf-8",
    )
    allowlist = tmp_path / "allowlist.toml"
    allowlist.write_text("", encoding="utf-8")
    return canonical, allowlist


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The planted repository root; the lists stay outside it, next to it in ``tmp_path``."""
    return tmp_path / "repo"


def run(repo: Path, lists: tuple[Path, Path], **kwargs: int) -> Report:
    canonical, allowlist = lists
    return scan(repo, canonical=canonical, allowlist=allowlist, **kwargs)


def kinds(report: Report) -> list[str]:
    return [f.kind for f in report.findings]


def test_exact_copy_across_libraries_is_caught(repo: Path, lists: tuple[Path, Path]) -> None:
    write(repo, "a", "risk", VOLATILITY)
    write(repo, "b", "stats", VOLATILITY)
    report = run(repo, lists)
    assert kinds(report) == ["duplicate"]
    line = report.findings[0].render()
    assert "mts1b-a/src/mts1b_a/risk.py:2 ~ mts1b-b/src/mts1b_b/stats.py:2" in line
    assert "mts1b_a.risk:realised_vol" in line
    assert "mts1b_b.stats:realised_vol" in line


def test_copy_with_renamed_variables_and_literals_is_caught(
    repo: Path, lists: tuple[Path, Path]
) -> None:
    write(repo, "a", "risk", VOLATILITY)
    write(repo, "b", "stats", VOLATILITY_RENAMED)
    assert kinds(run(repo, lists)) == ["duplicate"]


def test_copied_class_is_reported_once_not_per_method(
    repo: Path, lists: tuple[Path, Path]
) -> None:
    method = textwrap.indent(
        textwrap.dedent(VOLATILITY).replace("(returns", "(self, returns"), "    "
    )
    code = "class Estimator:\n    scale = 1.0\n" + method
    write(repo, "a", "est", code)
    write(repo, "b", "est", code.replace("Estimator", "Vol"))
    report = run(repo, lists)
    assert kinds(report) == ["duplicate"]
    assert "mts1b_a.est:Estimator" in report.findings[0].reason


def test_copy_nested_and_decorated_is_caught(repo: Path, lists: tuple[Path, Path]) -> None:
    write(repo, "a", "risk", VOLATILITY)
    nested = "if True:\n    class Holder:\n        @staticmethod" + textwrap.indent(
        textwrap.dedent(VOLATILITY), "        "
    )
    write(repo, "b", "holder", "def outer():\n    pass\n\n" + nested)
    report = run(repo, lists)
    assert kinds(report) == ["duplicate"]
    assert "mts1b_b.holder:Holder.realised_vol" in report.findings[0].reason


@pytest.mark.parametrize(
    "variant",
    [VOLATILITY_OTHER_OPERATOR, VOLATILITY_OTHER_STRUCTURE, VOLATILITY_OTHER_BINDING],
    ids=["different-operator", "different-structure", "different-binding"],
)
def test_near_misses_are_not_caught(
    repo: Path, lists: tuple[Path, Path], variant: str
) -> None:
    write(repo, "a", "risk", VOLATILITY)
    write(repo, "b", "stats", variant)
    report = run(repo, lists)
    assert report.ok, [f.render() for f in report.findings]


def test_too_small_definitions_are_not_compared(
    repo: Path, lists: tuple[Path, Path]
) -> None:
    write(repo, "a", "util", TINY)
    write(repo, "b", "util", TINY)
    assert run(repo, lists).ok
    # ... unless the threshold is lowered below their size.
    size = fingerprint(ast.parse(textwrap.dedent(TINY)).body[0]).size  # type: ignore[arg-type]
    assert kinds(run(repo, lists, min_nodes=size)) == ["duplicate"]


def test_same_library_duplicates_are_not_reported(
    repo: Path, lists: tuple[Path, Path]
) -> None:
    write(repo, "a", "risk", VOLATILITY)
    write(repo, "a", "sub.stats", VOLATILITY_RENAMED)
    assert run(repo, lists).ok


def test_three_libraries_give_every_cross_library_pair(
    repo: Path, lists: tuple[Path, Path]
) -> None:
    for lib in "abc":
        write(repo, lib, "risk", VOLATILITY)
    assert kinds(run(repo, lists)) == ["duplicate"] * 3


def test_tests_and_benchmarks_are_not_scanned(
    repo: Path, lists: tuple[Path, Path]
) -> None:
    write(repo, "a", "risk", VOLATILITY)
    for folder in ("tests", "bench"):
        extra = repo / "mts1b-b" / folder / "test_risk.py"
        extra.parent.mkdir(parents=True)
        extra.write_text(textwrap.dedent(VOLATILITY), encoding="utf-8")
    assert run(repo, lists).ok


def test_canonical_primitive_outside_its_home_is_caught(
    repo: Path, lists: tuple[Path, Path]
) -> None:
    write(repo, "a", "metrics", SHARPE)
    write(repo, "b", "perf", SHARPE.replace("def sharpe", "def _SharpeRatio"))
    report = run(repo, lists)
    assert kinds(report) == ["canonical"]
    line = report.findings[0].render()
    assert "mts1b-b/src/mts1b_b/perf.py:2 ~ mts1b-a/src/mts1b_a/metrics.py:2" in line
    assert "outside its home mts1b_a.metrics" in line


def test_canonical_primitive_in_another_module_of_its_home_library_is_caught(
    repo: Path, lists: tuple[Path, Path]
) -> None:
    write(repo, "a", "other", SHARPE)
    report = run(repo, lists)
    assert kinds(report) == ["canonical"]
    assert "mts1b_a.metrics (home)" in report.findings[0].render()


def test_canonical_primitive_in_its_home_or_a_submodule_is_fine(
    repo: Path, lists: tuple[Path, Path]
) -> None:
    write(repo, "a", "metrics", SHARPE)
    write(repo, "a", "metrics.ratios", SHARPE.replace("sharpe", "sharpe_ratio"))
    assert run(repo, lists).ok


def test_methods_and_imports_of_a_primitive_are_fine(
    repo: Path, lists: tuple[Path, Path]
) -> None:
    write(repo, "a", "metrics", SHARPE)
    write(repo, "b", "result", """
        from mts1b_a.metrics import sharpe

        class Result:
            def sharpe(self):
                return sharpe(self.returns)
        """)
    assert run(repo, lists).ok


@pytest.mark.parametrize(
    "code",
    [
        "from mts1b_a.metrics import sharpe as _s\n\ndef sharpe_ratio(r):\n    return _s(r)\n",
        "import mts1b_a.metrics\n\ndef _sharpe(r):\n    return mts1b_a.metrics.sharpe(r)\n",
        "def sharpe(r):\n    from mts1b_a import metrics as m\n    return m.sharpe(r) * 2\n",
    ],
    ids=["from-import", "module-import", "local-import"],
)
def test_wrapper_that_delegates_to_the_home_is_fine(
    repo: Path, lists: tuple[Path, Path], code: str
) -> None:
    write(repo, "a", "metrics", SHARPE)
    write(repo, "b", "perf", code)
    assert run(repo, lists).ok


def test_reimplementation_next_to_an_unused_import_is_caught(
    repo: Path, lists: tuple[Path, Path]
) -> None:
    write(repo, "a", "metrics", SHARPE)
    write(repo, "b", "perf", "from mts1b_a.metrics import sharpe as s, cagr\n" + SHARPE.replace(
        "return sum", "return cagr(returns) or sum"))
    assert kinds(run(repo, lists)) == ["canonical"]


def test_relative_import_from_the_home_counts_as_delegation(
    repo: Path, lists: tuple[Path, Path]
) -> None:
    write(repo, "a", "metrics", SHARPE)
    write(repo, "a", "report", "from .metrics import sharpe as s\n\ndef _sharpe(r):\n"
                               "    return s(r)\n")
    write(repo, "a", "sub.deep", "from ..metrics import sharpe as s\n\ndef _sharpe(r):\n"
                                 "    return s(r)\n")
    assert run(repo, lists).ok


def test_allowlist_with_reason_suppresses(repo: Path, lists: tuple[Path, Path]) -> None:
    write(repo, "a", "risk", VOLATILITY)
    write(repo, "b", "stats", VOLATILITY)
    write(repo, "b", "perf", SHARPE)
    lists[1].write_text(
        '[[allow]]\nkind = "duplicate"\nsymbol = "mts1b_b.stats:realised_vol"\n'
        'other = "mts1b_a.risk:realised_vol"\nreason = "b must not depend on a"\n\n'
        '[[allow]]\nkind = "canonical"\nsymbol = "mts1b_b.perf:sharpe"\n'
        'reason = "kept for the deprecation period"\n',
        encoding="utf-8",
    )
    report = run(repo, lists)
    assert report.ok, [f.render() for f in report.findings]
    assert report.allowed == 2


@pytest.mark.parametrize(
    "reason", ["", 'reason = ""', 'reason = "   "'], ids=["absent", "empty", "blank"]
)
def test_allowlist_entry_without_reason_is_an_error(
    repo: Path, lists: tuple[Path, Path], reason: str
) -> None:
    write(repo, "a", "risk", VOLATILITY)
    write(repo, "b", "stats", VOLATILITY)
    lists[1].write_text(
        f'[[allow]]\nkind = "duplicate"\nsymbol = "mts1b_b.stats:realised_vol"\n{reason}\n',
        encoding="utf-8",
    )
    report = run(repo, lists)
    assert sorted(kinds(report)) == ["allowlist", "duplicate"]
    assert "needs a reason" in report.findings[0].render()


def test_allowlist_entry_matching_nothing_is_an_error(
    repo: Path, lists: tuple[Path, Path]
) -> None:
    write(repo, "a", "risk", VOLATILITY)
    lists[1].write_text(
        '[[allow]]\nkind = "canonical"\nsymbol = "mts1b_a.risk:gone"\nreason = "old"\n',
        encoding="utf-8",
    )
    report = run(repo, lists)
    assert kinds(report) == ["allowlist"]
    assert "matches no finding" in report.findings[0].render()


def test_canonical_list_errors_are_reported(repo: Path, lists: tuple[Path, Path]) -> None:
    write(repo, "a", "risk", VOLATILITY)
    lists[0].write_text(
        '[[primitive]]\nname = "sharpe"\nhome = "mts1b_a.metrics"\n\n'
        '[[primitive]]\nname = "Sharpe"\nhome = "mts1b_b.metrics"\n\n'
        '[[primitive]]\nname = "hrp"\n',
        encoding="utf-8",
    )
    messages = [f.render() for f in run(repo, lists).findings]
    assert any("already claimed by 'sharpe'" in m for m in messages)
    assert any("'home' must be a dotted module name" in m for m in messages)


def test_cli_exit_codes_and_output(
    repo: Path, lists: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    write(repo, "a", "risk", VOLATILITY)
    argv = ["--root", str(repo), "--canonical", str(lists[0]), "--allowlist", str(lists[1])]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    assert out[0].startswith("dedupe: ok")
    write(repo, "b", "stats", VOLATILITY)
    assert main(argv) == 1
    out = capsys.readouterr().out.splitlines()
    assert " ~ " in out[0]
    assert out[-1].startswith("dedupe: 1 problem(s)")


def test_shipped_lists_are_valid() -> None:
    primitives, errors = load_canonical(DEFAULT_CANONICAL)
    assert errors == []
    assert {"sharpe", "hrp", "walk_forward", "get_logger", "uuid7"} <= {p.name for p in primitives}
    assert load_allowlist(DEFAULT_ALLOWLIST)[1] == []
