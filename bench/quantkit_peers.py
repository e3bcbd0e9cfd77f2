"""mts1b-quantkit against its reference libraries: same numbers first, then wall time.

    python bench/quantkit_peers.py            # prints one line per case
    python bench/quantkit_peers.py --repeat 7

Cases, on the 505-stock S&P 500 panel (``shared/data/sp500_5yr_cnuge``, 1,259 days):

* ``f_sma_cross`` (the migration guide's loop) vs ``f_sma_cross_fast`` (vectorized): identical
  values required;
* rolling mean / std (window 63) and EWM (span 20) vs pandas;
* Sharpe, Sortino, max drawdown over the 505 columns vs empyrical;
* per-date Spearman IC of 12-1 momentum vs 21-day forward returns vs scipy.stats.spearmanr per date;
* HRP on 50 stocks vs PyPortfolioOpt's ``HRPOpt``; min variance on 50 stocks vs its
  ``EfficientFrontier`` (cvxpy).

Each case checks agreement before timing (median of ``--repeat`` warm runs). The reference
libraries are the quantkit test dependencies (``uv sync --all-groups``). Not part of the tests.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    out = fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def report(name: str, ours: float, peer: float, peer_name: str, agree: str) -> None:
    print(f"{name:28s} ours {ours * 1e3:9.2f} ms | {peer_name:18s} {peer * 1e3:9.2f} ms | "
          f"x{peer / ours:7.2f} | {agree}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rep = args.repeat

    import empyrical
    from mts1b_foundation import UniversePanel
    from mts1b_quantkit import analytics, metrics, portfolio
    from mts1b_quantkit import factors as qf
    from pypfopt import EfficientFrontier, HRPOpt
    from scipy import stats

    df = pd.read_csv(DATA / "sp500_5yr_cnuge" / "all_stocks_5yr.csv.gz", parse_dates=["date"],
                     usecols=["date", "close", "Name"])
    px = df.pivot(index="date", columns="Name", values="close").sort_index()
    close = px.to_numpy()
    panel = UniversePanel(px.index.to_numpy(), list(px.columns), open=close, high=close,
                          low=close, close=close, volume=np.ones_like(close))
    print(f"panel: {close.shape[0]} days x {close.shape[1]} stocks")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_loop, a = timed(lambda: qf.evaluate("f_sma_cross", panel), rep)
    t_fast, b = timed(lambda: qf.evaluate("f_sma_cross_fast", panel), rep)
    report("f_sma_cross (loop vs fast)", t_fast, t_loop, "seed loop",
           f"identical={np.array_equal(a, b)}")

    frame = px
    rets = frame.pct_change(fill_method=None)
    r = rets.to_numpy()
    t_ours, m = timed(lambda: qf.rolling_mean(close, 63), rep)
    t_pd, p = timed(lambda: frame.rolling(63).mean().to_numpy(), rep)
    report("rolling_mean(63)", t_ours, t_pd, "pandas",
           f"max rel diff {np.nanmax(np.abs(m - p) / np.abs(p)):.1e}")
    t_ours, m = timed(lambda: qf.rolling_std(r, 63), rep)
    t_pd, p = timed(lambda: rets.rolling(63).std().to_numpy(), rep)
    report("rolling_std(63)", t_ours, t_pd, "pandas",
           f"max rel diff {np.nanmax(np.abs(m - p) / np.abs(p)):.1e}")
    t_ours, m = timed(lambda: qf.ewm_mean(close, span=20), rep)
    t_pd, p = timed(lambda: frame.ewm(span=20).mean().to_numpy(), rep)
    report("ewm_mean(span=20)", t_ours, t_pd, "pandas",
           f"max rel diff {np.nanmax(np.abs(m - p) / np.abs(p)):.1e}")

    r1 = r[1:]
    for name, ours_fn, ref_fn in [
        ("sharpe (505 columns)", metrics.sharpe, empyrical.sharpe_ratio),
        ("sortino (505 columns)", metrics.sortino, empyrical.sortino_ratio),
        ("max_drawdown (505 columns)", metrics.max_drawdown, empyrical.max_drawdown),
    ]:
        t_ours, m = timed(lambda f=ours_fn: f(r1), rep)
        t_ref, p = timed(lambda f=ref_fn: f(r1), rep)
        report(name, t_ours, t_ref, "empyrical",
               f"max rel diff {np.nanmax(np.abs(m - p) / np.abs(p)):.1e}")

    mom = qf.momentum_12_1(close)
    fwd = analytics.forward_returns(close, (21,))[21]

    def spearman_loop() -> np.ndarray:
        out = np.full(close.shape[0], np.nan)
        for t in range(close.shape[0]):
            ok = ~np.isnan(mom[t]) & ~np.isnan(fwd[t])
            if ok.sum() > 1:
                out[t] = stats.spearmanr(mom[t, ok], fwd[t, ok])[0]
        return out

    t_ours, m = timed(lambda: analytics.information_coefficient(mom, fwd), rep)
    t_ref, p = timed(spearman_loop, max(1, rep // 2))
    report("IC per date (Spearman)", t_ours, t_ref, "spearmanr loop",
           f"max abs diff {np.nanmax(np.abs(m - p)):.1e}")

    full = rets.iloc[1:].dropna(axis=1)  # stocks with every day: a well-conditioned covariance
    sub = full.iloc[:, :50]
    t_ours, m = timed(lambda: portfolio.hrp(sub), rep)
    t_ref, p = timed(lambda: pd.Series(HRPOpt(sub).optimize()).reindex(sub.columns)
                     .to_numpy(), rep)
    report("hrp (50 stocks)", t_ours, t_ref, "PyPortfolioOpt", f"max abs diff "
           f"{np.abs(m - p).max():.1e}")
    cov = sub.cov() * 252
    t_ours, m = timed(lambda: portfolio.min_variance(cov), rep)
    t_ref, p = timed(lambda: pd.Series(EfficientFrontier(None, cov).min_volatility())
                     .reindex(sub.columns).to_numpy(), rep)
    report("min_variance (50 stocks)", t_ours, t_ref, "PyPortfolioOpt", f"max abs diff "
           f"{np.abs(m - p).max():.1e}")


if __name__ == "__main__":
    main()
