"""The compiled engine: the portfolio simulation as one loop compiled by numba.

Semantics, inputs and outputs are :func:`mts1b_GPUbacktester.sim.simulate`'s; this module is
that loop in numba's nopython mode, cached on disk.

Why numba: the simulation is path-dependent (each bar's orders depend on the book the previous
bars left), so it is a loop over bars; numpy can vectorize only across assets and combinations
inside a bar, which leaves a Python step of a few hundred small array calls per bar that trades
(2,499 of 2,520 bars with a daily rebalance). numba compiles the plain loop to machine code with
no new build step or platform wheel (a C or Cython extension would need both), it is already
what vectorbt runs on, and ``cache=True`` writes the machine code next to this file (or under
``NUMBA_CACHE_DIR``, or numba's per-user cache directory when this folder is read-only), so only
the first call after an install compiles (a few seconds) and later processes load it.

How the loop is organised (:func:`_run`): bars outer, combinations inner, assets innermost. Per
bar it first derives what does not depend on the book for the ``A`` assets (tradable, the price
orders are sized at, the mark, the participation cap, the impact coefficient); the reference
engine precomputes those for all rows as ``(T, A)`` arrays, this one keeps them in a few
``(A,)`` scratch rows, so its memory beyond the inputs is its outputs and ``O(A)`` state.
Every sum over assets uses numpy's pairwise summation (:func:`_psum`), and every element is
computed with the same operations in the same order as the reference, so the two agree to the
last bit in most runs and within a few units in the last place otherwise.

Fills are written into preallocated ledger chunks; :func:`_run` returns to Python when a chunk
cannot hold another bar's worst case (an order fill per asset, and the bar's delistings) and
resumes with the next chunk, so the ledger holds little slack and is never copied.
All arrays, chunks and scratch included, are allocated by numpy in Python, where ``tracemalloc``
sees them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numba
import numpy as np
import numpy.typing as npt

from mts1b_GPUbacktester.kernels import cost_rates
from mts1b_GPUbacktester.sim import (
    CostModel,
    FillLedger,
    SimInputs,
    SimOutput,
    dividend_rows,
    fill_key_dtype,
)

if TYPE_CHECKING:
    from numba.core.decorators import _JITWrapper

__all__ = ["kernel_dispatchers", "simulate_compiled"]

FloatArray = npt.NDArray[np.float64]

#: nopython, cached on disk, no GIL held; numpy's error model (x / 0 is inf or NaN, as in the
#: reference, instead of raising); no fastmath, so every operation rounds as numpy's does
_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


def _jit_as(signature: str) -> _JITWrapper:
    """:data:`_jit` with one explicit signature: the helpers are compiled for exactly the
    types the loop calls them with (numba would otherwise also compile a copy for each
    literal argument it sees, a second or more of compile time each)."""
    return numba.njit(signature, cache=True, nogil=True, error_model="numpy")


#: rows of the float scratch array: the per-bar asset rows, then per-combination work rows
_VALUE, _SAFE, _TRAD, _MARK, _CAP, _IMPACT, _HELD, _W, _TRS, _T1, _T2, _T3, _T4, _ORD = range(14)
_N_WORK = 14
#: ledger chunk sizes in fills: the first, and the most later chunks grow to (at most; see
#: :func:`simulate_compiled`)
_CHUNK_FIRST = 1 << 12
_CHUNK_MAX = 1 << 16


@_jit_as("float64(float64[::1], int64, int64)")
def _block(a: FloatArray, lo: int, n: int) -> float:
    """numpy's pairwise-summation leaf for ``a[lo:lo + n]``, ``n <= 128``: sequential below 8,
    else eight accumulators combined as ``((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))``
    and the rest added in order (``pairwise_sum_DOUBLE`` in numpy's ``loops_utils.h``)."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    top = n - n % 8
    while i < top:
        j = lo + i
        r0 += a[j]
        r1 += a[j + 1]
        r2 += a[j + 2]
        r3 += a[j + 3]
        r4 += a[j + 4]
        r5 += a[j + 5]
        r6 += a[j + 6]
        r7 += a[j + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return float(res)


@_jit_as("int64(int64)")
def _half(n: int) -> int:
    """Where numpy splits a pairwise sum of ``n > 128`` terms: half, down to a multiple of 8."""
    half = n // 2
    return half - half % 8


@_jit_as("float64(float64[::1], int64, int64, float64[::1])")
def _tree(a: FloatArray, lo: int, n: int, stack: FloatArray) -> float:
    """numpy's pairwise summation of ``a[lo:lo + n]``: a :func:`_block` up to 128 terms, else
    the sum of the two halves split at :func:`_half`, recursively.

    Written as a loop over an explicit stack (``stack``: 4 slots per level, levels up to
    ``log2(n / 128) + 1``) because numba cannot load a cached self-recursive function (the
    process crashes). Slots: first row, length, stage (0 new, 1 left half running, 2 right
    half running), left half's sum.
    """
    depth = 0
    stack[0], stack[1], stack[2] = float(lo), float(n), 0.0
    while True:
        first, m = int(stack[4 * depth]), int(stack[4 * depth + 1])
        if m > 128:  # descend into the left half
            stack[4 * depth + 2] = 1.0
            depth += 1
            stack[4 * depth], stack[4 * depth + 1] = float(first), float(_half(m))
            stack[4 * depth + 2] = 0.0
            continue
        val = _block(a, first, m)
        while True:  # hand the value up until a right half is still to do
            if depth == 0:
                return float(val)
            depth -= 1
            base = 4 * depth
            if stack[base + 2] == 1.0:  # the left half is done: start the right half
                stack[base + 3] = val
                stack[base + 2] = 2.0
                p_lo, p_n = int(stack[base]), int(stack[base + 1])
                half = _half(p_n)
                depth += 1
                stack[4 * depth], stack[4 * depth + 1] = float(p_lo + half), float(p_n - half)
                stack[4 * depth + 2] = 0.0
                break
            val = stack[base + 3] + val


@_jit_as("float64(float64[::1], int64, float64[::1])")
def _psum(a: FloatArray, n: int, stack: FloatArray) -> float:
    """``a[:n].sum()`` exactly as numpy computes it: 0.0 plus the pairwise sum."""
    return 0.0 + _tree(a, 0, n, stack)


@_jit
def _run(t0: int, shift: int, start: int,
         exec_price: FloatArray, mark_price: FloatArray, has_mark: bool, close: FloatArray,
         targets: FloatArray, rebalance: npt.NDArray[np.bool_],
         in_universe: npt.NDArray[np.bool_], outside: npt.NDArray[np.bool_],
         delist: npt.NDArray[np.int64],
         delisting: npt.NDArray[np.bool_],
         dividend: FloatArray, paying: npt.NDArray[np.bool_], has_dividend: bool,
         volume: FloatArray, has_cap: bool, participation: float,
         adv: FloatArray, sigma: FloatArray, has_impact: bool, impact_k: float,
         commission: FloatArray, slip: float, buy_rate: FloatArray, sell_rate: FloatArray,
         borrow: FloatArray, has_borrow: bool, signal: bool, band: float,
         delist_cost: float,
         shares: FloatArray, cash: FloatArray, pending: FloatArray,
         preason: npt.NDArray[np.int8], target: FloatArray,
         any_pending: npt.NDArray[np.bool_], last: FloatArray,
         nav: FloatArray, comm_out: FloatArray, slip_out: FloatArray, borrow_out: FloatArray,
         traded_out: FloatArray, weights: FloatArray, record_weights: bool,
         record_fills: bool, f_key: npt.NDArray[np.signedinteger[Any]],
         f_shares: FloatArray, f_comm: FloatArray, f_slip: FloatArray,
         has_slip_column: bool,
         work: FloatArray, sel: npt.NDArray[np.bool_], buying: npt.NDArray[np.bool_],
         gone: npt.NDArray[np.int64],
         stack: FloatArray) -> tuple[int, int]:
    """Run bars ``t0..`` until the end, or until the fill chunk cannot hold another bar.

    Returns ``(next bar, fills written)``. Shapes: prices, ``in_universe``, ``volume``,
    ``adv``, ``sigma`` ``(T, A)``; ``targets`` ``(C, T, A)``; ``rebalance`` and ``outside``
    (some asset is outside the universe) ``(T,)`` by decision row; ``delisting`` ``(T,)`` by
    row; cost rates and ``last`` ``(A,)``; the book (``shares``,
    ``pending``, ``preason``, ``target``) ``(C, A)``, ``cash`` and ``any_pending`` ``(C,)``;
    outputs ``(C, T)`` and ``weights`` ``(C, T, A)``; fill chunk columns ``(capacity,)``.
    ``last`` carries the mark (the last finite positive close) when ``has_mark`` is False.
    NaN policy and every rule: :func:`mts1b_GPUbacktester.sim.simulate`.
    """
    n_combo, t_len, a_len = targets.shape
    value, safe, trad = work[_VALUE], work[_SAFE], work[_TRAD]
    markv, capv, imp = work[_MARK], work[_CAP], work[_IMPACT]
    held, w = work[_HELD], work[_W]
    t1, t2, t3, t4, order = work[_T1], work[_T2], work[_T3], work[_T4], work[_ORD]
    every = (not signal) and band == 0.0
    inf = np.inf
    big = 1.7976931348623157e308  # numpy's nan_to_num of +-inf
    n_fill = 0
    room = f_key.shape[0]
    # The loops below are kept simple (selects, no early exits) so that LLVM vectorizes them;
    # isfinite(x) is written abs(x) < inf and "finite and positive" as (x > 0) & (x < inf).
    for t in range(t0, t_len):
        n_gone = 0
        if t >= start and delisting[t]:
            for a in range(a_len):
                if delist[a] == t:
                    gone[n_gone] = a
                    n_gone += 1
        # a bar writes at most A order fills (each at the next free slot) and its delistings
        if record_fills and t >= start and n_fill + a_len + n_gone > room:
            return t, n_fill
        # -- what does not depend on the book, for every asset --------------------------------
        if t < start:
            if not has_mark:  # carry the last finite positive close
                for a in range(a_len):
                    c_t = close[t, a]
                    last[a] = c_t if (c_t > 0) & (c_t < inf) else last[a]
            continue
        for a in range(a_len):
            if has_mark:
                pm = mark_price[t - 1, a] if t > 0 else np.nan
                m = mark_price[t, a]
            else:  # carry the last finite positive close
                pm = last[a]
                c_t = close[t, a]
                m = c_t if (c_t > 0) & (c_t < inf) else pm
                last[a] = m
            p = exec_price[t, a]
            ok = (p > 0) & (p < inf) & (t <= delist[a])
            v = p if ok else pm
            value[a] = v if abs(v) < inf else 0.0
            safe[a] = p if ok else 1.0
            trad[a] = 1.0 if ok else 0.0
            markv[a] = m if abs(m) < inf else 0.0
        d = t - shift
        active = d >= start
        rebal = active and rebalance[d]
        exits = active and outside[d]
        if has_cap:
            for a in range(a_len):
                vol = volume[t, a]
                vol = 0.0 if math.isnan(vol) else vol
                vol = big if vol == inf else (-big if vol == -inf else vol)
                capv[a] = participation * vol
        if has_impact:
            for a in range(a_len):
                adv_value = adv[t, a] * safe[a]
                inv = 1.0 / (adv_value if adv_value > 0 else 1.0) if adv_value > 0 else 0.0
                k = impact_k * sigma[t, a] * math.sqrt(inv)
                imp[a] = k if abs(k) < inf else 0.0
        for c in range(n_combo):
            keep = record_fills and c == 0  # fill reasons are kept for the recorded book
            if has_dividend and paying[t]:
                # cash dividends of the shares held at the previous close, before any trade
                for a in range(a_len):
                    t1[a] = shares[c, a] * dividend[t, a]
                cash[c] = cash[c] + _psum(t1, a_len, stack)
            if active and (rebal or exits or any_pending[c]):
                if rebal:
                    # -- a rebalance: the post-trade NAV over the assets the rule picks -------
                    for a in range(a_len):
                        held[a] = shares[c, a] * value[a]
                        tg = targets[c, d, a]
                        w[a] = tg if in_universe[d, a] & (abs(tg) < inf) else 0.0
                    v_pre = cash[c] + _psum(held, a_len, stack)
                    trs = trad  # every asset trades: the tradable flags as they are
                    if not every:
                        trs = work[_TRS]
                        limit = band * abs(v_pre)
                        for a in range(a_len):
                            pick = False
                            if band > 0.0:
                                pick = abs(held[a] - w[a] * v_pre) > limit
                            if signal and w[a] != target[c, a]:
                                pick = True
                            sel[a] = pick
                            trs[a] = trad[a] * (1.0 if pick else 0.0)
                    v = v_pre
                    if has_impact:  # fixed point of V = V_pre - sum |trade| rate(trade)
                        tol = 1e-15 * max(abs(v_pre), 1.0)
                        for _ in range(12):
                            for a in range(a_len):
                                tr = (w[a] * v - held[a]) * trs[a]
                                s = slip + imp[a] * math.sqrt(abs(tr))
                                rate = ((1 + s) * (1 + commission[a]) - 1 if tr > 0
                                        else 1 - (1 - s) * (1 - commission[a]))
                                t1[a] = abs(tr) * rate
                            v_new = v_pre - _psum(t1, a_len, stack)
                            if abs(v_new - v) <= tol:
                                v = v_new
                                break
                            v = v_new
                    else:  # exact for a guess of buys and sells; refine the guess
                        for it in range(6):
                            if it == 0:  # the first guess and its rates, in one pass
                                for a in range(a_len):
                                    buy = (w[a] * v - held[a]) * trs[a] > 0
                                    buying[a] = buy
                                    rate = (buy_rate[a] if buy else -sell_rate[a]) * trs[a]
                                    t1[a] = rate * held[a]
                                    t2[a] = rate * w[a]
                            else:  # the next guess; new rates only if it changed
                                changed = 0
                                for a in range(a_len):
                                    buy = (w[a] * v - held[a]) * trs[a] > 0
                                    changed += buy != buying[a]
                                    buying[a] = buy
                                if changed == 0:
                                    break
                                for a in range(a_len):
                                    rate = (buy_rate[a] if buying[a] else -sell_rate[a]) * trs[a]
                                    t1[a] = rate * held[a]
                                    t2[a] = rate * w[a]
                            v = ((v_pre + _psum(t1, a_len, stack))
                                 / (1.0 + _psum(t2, a_len, stack)))
                    # -- the orders: target weight x V / price - held shares ------------------
                    if every:  # with the exits and the residue filter below, in one pass
                        limit = 1e-10 * abs(v_pre)  # the dust NAV: the book has not moved
                        n_open = 0
                        for a in range(a_len):
                            val, sh = value[a], shares[c, a]
                            o = w[a] * v / (val if val > 0 else 1.0)
                            p = (o if val > 0 else sh) - sh
                            leave = exits & (not in_universe[d, a]) & (sh != 0)
                            p = -sh if leave else p
                            p = 0.0 if abs(p * val) <= limit else p
                            pending[c, a] = p
                            n_open += p != 0
                            preason[c, a] = 2 if leave else 0
                        any_pending[c] = n_open > 0
                    else:  # the others keep what they hold and what they have pending
                        for a in range(a_len):
                            if sel[a]:
                                val, sh = value[a], shares[c, a]
                                o = w[a] * v / (val if val > 0 else 1.0)
                                pending[c, a] = (o if val > 0 else sh) - sh
                                preason[c, a] = 0
                                if signal:
                                    target[c, a] = w[a]
                    nav_pre = v_pre  # the book has not moved since: the same sum
                # -- held assets that left the universe are sold ------------------------------
                if exits and not (rebal and every):
                    for a in range(a_len):
                        if not in_universe[d, a] and shares[c, a] != 0:
                            pending[c, a] = -shares[c, a]
                            preason[c, a] = 2
                            if signal:
                                target[c, a] = 0.0
                # -- float residue (less than 1e-10 of the NAV) is dropped --------------------
                if not (rebal and every):
                    if not rebal:
                        for a in range(a_len):
                            t1[a] = shares[c, a] * value[a]
                        nav_pre = cash[c] + _psum(t1, a_len, stack)
                    limit = 1e-10 * abs(nav_pre)
                    n_open = 0
                    for a in range(a_len):
                        p = pending[c, a]
                        p = 0.0 if abs(p * value[a]) <= limit else p
                        pending[c, a] = p
                        n_open += p != 0
                    any_pending[c] = n_open > 0
                # -- fills: what the price and the participation cap allow --------------------
                if n_open:
                    n_open = 0
                    for a in range(a_len):
                        o = pending[c, a] * trad[a]
                        if has_cap:
                            o = min(max(o, -capv[a]), capv[a])
                        px = safe[a]
                        notional = abs(o) * px
                        if has_impact:
                            sc = notional * (slip + imp[a] * math.sqrt(notional))
                        else:
                            sc = notional * slip
                        t1[a] = o * px
                        t2[a] = sc
                        t3[a] = (notional + (sc if o > 0 else -sc)) * commission[a]
                        t4[a] = notional
                        order[a] = o
                        shares[c, a] = shares[c, a] + o
                        left = pending[c, a] - o
                        pending[c, a] = left
                        n_open += left != 0
                    any_pending[c] = n_open > 0
                    if keep:  # the ledger, and what each order still open is (a carry)
                        code = 0 if rebal else 1
                        cell = t * a_len
                        for a in range(a_len):  # written at the next free slot, kept if not 0
                            o = order[a]
                            r = preason[c, a]
                            f_key[n_fill] = (cell + a) * 4 + (code if r == 0 else r)
                            f_shares[n_fill] = o
                            f_comm[n_fill] = t3[a]
                            if has_slip_column:
                                f_slip[n_fill] = t2[a]
                            n_fill += o != 0
                            preason[c, a] = max(r, 1) if pending[c, a] != 0 else 0
                    # without slippage every term is +0.0, and so is numpy's sum of them
                    slip_sum = _psum(t2, a_len, stack) if has_slip_column else 0.0
                    comm_sum = _psum(t3, a_len, stack)
                    cash[c] = cash[c] - _psum(t1, a_len, stack) - slip_sum - comm_sum
                    comm_out[c, t] += comm_sum
                    slip_out[c, t] += slip_sum
                    traded_out[c, t] += _psum(t4, a_len, stack)
            # -- delistings: what is still held is sold at the last close -----------------------
            if n_gone:
                for j in range(n_gone):
                    a = gone[j]
                    px = close[t, a]
                    q = -shares[c, a]
                    notional = abs(q) * px
                    sc = notional * slip * delist_cost
                    t1[j] = q * px
                    t2[j] = sc
                    t3[j] = (notional + (sc if q > 0 else -sc)) * commission[a] * delist_cost
                    t4[j] = notional
                    order[j] = q
                cash[c] = (cash[c] - _psum(t1, n_gone, stack) - _psum(t2, n_gone, stack)
                           - _psum(t3, n_gone, stack))
                comm_out[c, t] += _psum(t3, n_gone, stack)
                slip_out[c, t] += _psum(t2, n_gone, stack)
                traded_out[c, t] += _psum(t4, n_gone, stack)
                for j in range(n_gone):
                    a = gone[j]
                    if record_fills and c == 0 and order[j] != 0:
                        f_key[n_fill] = (t * a_len + a) * 4 + 3
                        f_shares[n_fill] = order[j]
                        f_comm[n_fill] = t3[j]
                        if has_slip_column:
                            f_slip[n_fill] = t2[j]
                        n_fill += 1
                    shares[c, a] = 0.0
                    pending[c, a] = 0.0
            # -- borrow on short market value, then the NAV at the marks ------------------------
            if has_borrow:
                for a in range(a_len):
                    t1[a] = (max(-shares[c, a], 0.0) * markv[a]) * borrow[a]
                charge = _psum(t1, a_len, stack)
                cash[c] = cash[c] - charge
                borrow_out[c, t] = charge
            for a in range(a_len):
                t1[a] = shares[c, a] * markv[a]
            nav_t = cash[c] + _psum(t1, a_len, stack)
            nav[c, t] = nav_t
            if record_weights:
                den = nav_t if nav_t != 0 else 1.0
                for a in range(a_len):
                    weights[c, t, a] = t1[a] / den
    return t_len, n_fill


def kernel_dispatchers() -> dict[str, Any]:
    """The numba dispatchers of this module by name (for cache checks: ``.stats``)."""
    return {"_run": _run, "_psum": _psum, "_tree": _tree, "_block": _block, "_half": _half}


def _readonly(x: Any, dtype: Any) -> npt.NDArray[Any]:
    """``x`` as a C-contiguous read-only array of ``dtype`` (a view when it already is one).

    Every input reaches the kernel read-only and contiguous, whatever the caller handed over
    (a panel's frozen fields are read-only, a test's arrays are not), so numba compiles and
    caches exactly one specialization.
    """
    arr = np.ascontiguousarray(x, dtype=dtype)
    if arr.flags.writeable:
        arr = arr.view()
        arr.flags.writeable = False
    return arr


def _per_asset(x: Any, a_len: int) -> npt.NDArray[np.float64]:
    """A scalar or ``(A,)`` rate as a read-only ``(A,)`` float64 array."""
    return _readonly(np.broadcast_to(np.asarray(x, dtype=np.float64), (a_len,)), np.float64)


def _rows_outside(in_universe: Any) -> npt.NDArray[np.bool_]:
    """``(T,)``: rows where some asset is outside the universe (a block of rows at a time, so
    no ``(T, A)`` temporary is made)."""
    mask = np.asarray(in_universe, dtype=bool)
    out = np.zeros(mask.shape[0], dtype=bool)
    for lo in range(0, mask.shape[0], 256):
        out[lo:lo + 256] = ~mask[lo:lo + 256].all(axis=1)
    return out


def simulate_compiled(inp: SimInputs, costs: CostModel, *, initial_nav: float = 1.0,
                      record_weights: bool = False, record_fills: bool = False,
                      trade_on: str = "schedule", band: float = 0.0) -> SimOutput:
    """:func:`mts1b_GPUbacktester.sim.simulate` on the compiled loop (numpy arrays in and out).

    Memory beyond the inputs: the outputs (``weights`` ``(C, T, A)`` when recorded, five
    ``(C, T)`` records, the fill ledger), the book ``(C, A)`` and fourteen ``(A,)`` scratch
    rows. The first call in a process loads the machine code from numba's cache (or compiles
    it, once per install).
    """
    n_combo, t_len, a_len = (int(n) for n in np.shape(inp.targets))
    f8, b1 = np.float64, np.bool_
    dummy2 = _readonly(np.zeros((1, 1)), f8)
    has_mark = inp.mark_price is not None
    commission = _per_asset(costs.commission, a_len)
    slip = float(costs.slippage)
    buy_rate, sell_rate = (_per_asset(r, a_len) for r in cost_rates(commission, slip))
    borrow = _per_asset(np.asarray(costs.borrow, dtype=f8) / costs.periods_per_year, a_len)
    has_cap = costs.participation is not None and inp.volume is not None
    has_impact = costs.impact_k > 0 and inp.adv is not None and inp.sigma is not None
    delist = _readonly(inp.delist_row, np.int64)
    delisting = np.zeros(t_len, dtype=bool)
    delisting[delist[(delist >= 0) & (delist < t_len)]] = True
    has_slip_column = slip != 0 or has_impact
    dividend, paying = dividend_rows(inp.dividend, t_len, a_len)
    has_dividend = bool(paying.any())
    book = dict(shares=np.zeros((n_combo, a_len)), cash=np.full(n_combo, float(initial_nav)),
                pending=np.zeros((n_combo, a_len)),
                preason=np.zeros((n_combo, a_len), dtype=np.int8),
                target=np.zeros((n_combo, a_len)), any_pending=np.zeros(n_combo, dtype=b1),
                last=np.full(a_len, np.nan))
    out = SimOutput(nav=np.full((n_combo, t_len), float(initial_nav)),
                    commission=np.zeros((n_combo, t_len)),
                    slippage=np.zeros((n_combo, t_len)), borrow=np.zeros((n_combo, t_len)),
                    traded=np.zeros((n_combo, t_len)),
                    weights=np.zeros((n_combo, t_len, a_len)) if record_weights else None)
    fixed = dict(
        shift=int(inp.shift), start=int(inp.start),
        exec_price=_readonly(inp.exec_price, f8),
        mark_price=_readonly(inp.mark_price, f8) if has_mark else dummy2, has_mark=has_mark,
        close=_readonly(inp.close, f8), targets=_readonly(inp.targets, f8),
        rebalance=_readonly(inp.rebalance, b1), in_universe=_readonly(inp.in_universe, b1),
        outside=_readonly(_rows_outside(inp.in_universe), b1),
        delist=delist, delisting=_readonly(delisting, b1),
        dividend=dummy2 if dividend is None or not has_dividend else _readonly(dividend, f8),
        paying=_readonly(paying, b1), has_dividend=has_dividend,
        volume=_readonly(inp.volume, f8) if has_cap else dummy2, has_cap=has_cap,
        participation=float(costs.participation or 0.0),
        adv=_readonly(inp.adv, f8) if has_impact else dummy2,
        sigma=_readonly(inp.sigma, f8) if has_impact else dummy2, has_impact=has_impact,
        impact_k=float(costs.impact_k), commission=commission, slip=slip, buy_rate=buy_rate,
        sell_rate=sell_rate, borrow=borrow, has_borrow=bool(np.any(borrow != 0)),
        signal=trade_on == "signal_change", band=float(band),
        delist_cost=1.0 if costs.delisting_costs else 0.0, **book,
        nav=out.nav, comm_out=out.commission, slip_out=out.slippage, borrow_out=out.borrow,
        traded_out=out.traded,
        weights=out.weights if record_weights else np.zeros((1, 1, 1)),
        record_weights=bool(record_weights), record_fills=bool(record_fills),
        has_slip_column=has_slip_column, work=np.zeros((_N_WORK, a_len)),
        sel=np.zeros(a_len, dtype=b1), buying=np.zeros(a_len, dtype=b1),
        gone=np.zeros(a_len, dtype=np.int64),
        stack=np.zeros(4 * 64))
    parts: list[tuple[Any, ...]] = []
    # chunks double from the first size up to the largest: about 1/32 of the panel's cells
    # (the unused end of the last chunk is slack) but at least 32 bars' worth of fills (a
    # chunk is handed back when a bar might not fit, leaving at most A slots unused)
    largest = max(min(_CHUNK_MAX, t_len * a_len // 32), 32 * a_len)
    size = max(min(_CHUNK_FIRST, largest), 2 * a_len) if record_fills else 0
    key_type = fill_key_dtype(t_len, a_len)
    t = 0
    while True:
        chunk = (np.empty(size, key_type), np.empty(size), np.empty(size),
                 np.empty(size if has_slip_column else 0))
        t, n = _run(t, f_key=chunk[0], f_shares=chunk[1], f_comm=chunk[2], f_slip=chunk[3],
                    **fixed)
        if record_fills:
            parts.append(tuple(col[:n] for col in chunk))
        if t >= t_len:
            break
        size = min(2 * size, largest)
    if record_fills:
        out.fills = FillLedger(parts, inp.exec_price, inp.close, n_assets=a_len,
                               has_slippage=has_slip_column)
    return out
