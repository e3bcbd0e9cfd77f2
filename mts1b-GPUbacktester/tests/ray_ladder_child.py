"""The Ray half of ``test_ladder.py::test_ray_executor_on_a_local_ray_cluster``, run as a script.

    python ray_ladder_child.py INPUT.pkl OUTPUT.pkl

INPUT holds ``(panel, grid)``; the script runs the per-asset ladder on a fresh local Ray
cluster (loopback only, two CPUs, no dashboard), shuts the cluster down and writes the ladder's
table to OUTPUT.

Why a separate process: starting a local Ray cluster has hung before (it bound the machine's
non-loopback address), and a hang inside the pytest process would block the whole suite. In a
process of its own, in its own session, the test can time it out and kill it together with the
GCS server, raylet and workers Ray started.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import ray
from mts1b_GPUbacktester import run_ladder

#: a local cluster that cannot wander off the machine: loopback, 2 CPUs, no dashboard
RAY_INIT = {"num_cpus": 2, "include_dashboard": False, "_node_ip_address": "127.0.0.1"}


def main(source: Path, target: Path) -> None:
    panel, grid = pickle.loads(source.read_bytes())
    try:
        result = run_ladder("f_sma_cross", grid, universe=panel, mode="per_asset", tile_size=2,
                            executor="ray", progress=False, backend="numpy", ray_init=RAY_INIT)
    finally:
        ray.shutdown()
    target.write_bytes(pickle.dumps(result.table))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
