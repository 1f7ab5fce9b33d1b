"""Fan a simulator sweep out over a Dask cluster: one task per configuration, the results
merged into one table.

    python python/examples/dask_sweep.py                       # a LocalCluster on this machine
    python python/examples/dask_sweep.py --scheduler tcp://host:8786
    python python/examples/dask_sweep.py --txs 1000000 --grid lambda=10,20,40,80 --grid tips=urts,walk

Every worker needs the `tangle` package installed (`pip install ./python`). Each task calls
`tangle.sim.run`, which releases the GIL, so a worker's threads run side by side. The table
has the same rows, in the same order, as `tangle.sim.sweep` (and `tangle-sim sweep`) on one
machine; with `--compare` the script also runs that single-process sweep and prints both
wall times.
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

import pandas as pd
from dask.distributed import Client, LocalCluster

from tangle import sim


def configurations(
    base: Mapping[str, Any], grid: Mapping[str, Sequence[Any]]
) -> List[Dict[str, Any]]:
    """Every combination of `grid` over `base`, the first key varying slowest (the order
    of `tangle.sim.sweep`)."""
    keys = list(grid)
    return [dict(base, **dict(zip(keys, values))) for values in itertools.product(*grid.values())]


def run_one(config: Mapping[str, Any], keys: Sequence[str]) -> Dict[str, Any]:
    """One task: run one configuration; its grid values and flattened summary as a row."""
    row: Dict[str, Any] = {k: str(config[k]) for k in keys}
    row.update(sim.flatten(sim.run(config, frames=False)))
    return row


def dask_sweep(
    client: Client, base: Mapping[str, Any], grid: Mapping[str, Sequence[Any]]
) -> pd.DataFrame:
    """Runs the sweep on `client`'s cluster, one task per configuration, and merges the
    rows into one DataFrame in grid order."""
    configs = configurations(base, grid)
    futures = client.map(run_one, configs, keys=list(grid), pure=False)
    return pd.DataFrame(client.gather(futures))


COLUMNS = [
    "mean_tips",
    "closed_form_tips",
    "confirmation_latency.p50",
    "confirmation_latency.p99",
    "orphan_rate",
    "wall_seconds",
]


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scheduler", help="address of a Dask scheduler (default: a LocalCluster)")
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster workers (processes)")
    ap.add_argument("--txs", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scenario", help="base scenario TOML")
    ap.add_argument(
        "--grid",
        action="append",
        metavar="KEY=V1,V2",
        help="an axis (repeat for a grid); default lambda=10,20,40,80 and tips=urts,walk",
    )
    ap.add_argument("--compare", action="store_true", help="also run tangle.sim.sweep in this process")
    a = ap.parse_args(argv)
    grid: Dict[str, List[str]] = {}
    for g in a.grid or ["lambda=10,20,40,80", "tips=urts,walk"]:
        k, _, v = g.partition("=")
        grid[k.strip()] = [x.strip() for x in v.split(",")]
    base: Dict[str, Any] = {"txs": a.txs, "seed": a.seed}
    if a.scenario:
        base["scenario"] = a.scenario

    if a.scheduler:
        client = Client(a.scheduler)
    else:
        cluster = LocalCluster(n_workers=a.workers, threads_per_worker=1, processes=True)
        client = Client(cluster)
    with client:
        started = time.perf_counter()
        table = dask_sweep(client, base, grid)
        dask_wall = time.perf_counter() - started
    pd.set_option("display.width", 200)
    print(table[list(grid) + COLUMNS].to_string(index=False))
    print(f"\n{len(table)} configurations on Dask: {dask_wall:.2f} s wall")
    if a.compare:
        started = time.perf_counter()
        sim.sweep(base, grid, jobs=a.workers)
        local_wall = time.perf_counter() - started
        print(f"tangle.sim.sweep in one process ({a.workers} threads): {local_wall:.2f} s wall")


if __name__ == "__main__":
    main()
