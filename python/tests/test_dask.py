"""The Dask sweep example on a LocalCluster: one task per configuration, merged into the same
table as the single-process sweep."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("dask.distributed")
pd = pytest.importorskip("pandas")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import dask_sweep  # noqa: E402

from tangle import sim  # noqa: E402


def test_dask_sweep_equals_the_local_sweep():
    from dask.distributed import Client, LocalCluster

    base = {"txs": 3000, "seed": 2, "delay": 1}
    grid = {"lambda": [10, 40], "tips": ["urts", "walk"]}
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, Client(cluster) as client:
        table = dask_sweep.dask_sweep(client, base, grid)
        ran_on = set(client.run(lambda: __import__("os").getpid()).values())
    local = sim.sweep(base, grid, frames=True)
    assert len(table) == 4
    assert list(table["tips"]) == ["urts", "walk", "urts", "walk"]
    assert list(table["lambda"]) == [10.0, 10.0, 40.0, 40.0]
    for col in ["transactions", "mean_tips", "confirmation_latency.p50", "orphan_rate"]:
        assert list(table[col]) == list(local[col]), col
    assert len(ran_on) == 2
