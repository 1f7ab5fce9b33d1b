"""tangle.sim: runs with the CLI's flag names, the same summary as the CLI, sweeps."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import REPO, binary

from tangle import sim
from tangle.errors import ScenarioError

SMALL = {"tips": "urts", "lambda": 50, "delay": 1, "txs": 3000, "seed": 3}
WALL = ("wall_seconds", "sim_tx_per_second")


def deterministic(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in WALL}


def test_run_returns_the_summary_json_fields():
    r = sim.run(SMALL, frames=False)
    assert isinstance(r, dict)
    assert r["transactions"] == 3000
    assert (r["tips"], r["lambda"], r["delay"], r["seed"]) == ("urts", 50.0, 1.0, 3)
    assert r["mean_tips"] > 0 and r["confirmation_latency"]["p50"] > 0
    assert isinstance(r.timeseries, list) and r.timeseries
    assert set(r.timeseries[0]) == {
        "time", "tips", "unconfirmed", "held", "milestone", "issued", "confirmed"
    }
    assert r.timeseries[-1]["issued"] <= 3000
    assert set(r.latency[0]) == {"latency_upper", "count", "cdf"}
    assert sum(row["count"] for row in r.latency) > 0
    assert r.latency[-1]["cdf"] == pytest.approx(1.0)


def test_the_same_summary_as_the_cli(tmp_path):
    """`tangle-sim run` with the same flags writes the same summary.json (wall clock aside)."""
    out = tmp_path / "cli"
    subprocess.run(
        [
            str(binary("tangle-sim")),
            "run",
            "--tips", "urts",
            "--lambda", "50",
            "--delay", "1",
            "--txs", "3000",
            "--seed", "3",
            "--milestone-interval", "5",
            "--out", str(out),
            "--no-progress",
        ],
        check=True,
        capture_output=True,
    )
    cli = json.loads((out / "summary.json").read_text())
    py = sim.run(dict(SMALL, **{"milestone-interval": 5}), out=tmp_path / "py")
    assert deterministic(py) == deterministic(cli)
    assert json.loads((tmp_path / "py" / "summary.json").read_text())["mean_tips"] == cli["mean_tips"]


def test_toml_path_and_scenario_key():
    path = REPO / "simulator" / "scenarios" / "base.toml"
    toml = sim.scenario_toml(path)
    assert "lambda" in toml
    r = sim.run({"scenario": str(path), "txs": 2000}, frames=False)
    assert r["transactions"] == 2000


def test_dataframes_when_pandas_is_installed():
    pandas = pytest.importorskip("pandas")
    r = sim.run(SMALL)
    assert isinstance(r.timeseries, pandas.DataFrame)
    assert list(r.latency.columns) == ["latency_upper", "count", "cdf"]
    assert len(r.timeseries) > 0


def test_bad_scenarios_raise_with_the_simulator_message():
    with pytest.raises(ScenarioError, match="lambda must be positive"):
        sim.run({"lambda": -1, "txs": 10})
    with pytest.raises(ScenarioError, match="unknown sweep key"):
        sim.run({"lamda": 5})
    with pytest.raises(ScenarioError, match=r"bad value \"fast\" for tips"):
        sim.run({"tips": "fast"})
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        sim.run("/nonexistent/scenario.toml")
    with pytest.raises(ValueError, match="only the base mode"):
        sim.run({"mode": "node"})
    with pytest.raises(TypeError):
        sim.run({"txs": [1, 2]})
    with pytest.raises(TypeError):
        sim.run(42)


def test_sweep_runs_the_grid_in_order_and_matches_single_runs():
    rows = sim.sweep(
        {"txs": 2000, "delay": 1, "seed": 1},
        {"lambda": [10, 20], "tips": ["urts", "walk"]},
        jobs=2,
        frames=False,
    )
    assert [(r["lambda"], r["tips"]) for r in rows] == [
        (10.0, "urts"), (10.0, "walk"), (20.0, "urts"), (20.0, "walk")
    ]
    one = sim.run({"txs": 2000, "delay": 1, "seed": 1, "lambda": 20, "tips": "walk"})
    assert rows[3]["mean_tips"] == one["mean_tips"]
    assert rows[3]["confirmation_latency.p99"] == one["confirmation_latency"]["p99"]
    with pytest.raises(ScenarioError):
        sim.sweep({"txs": 100}, {"lamda": [1]})
    with pytest.raises(ValueError, match="no values"):
        sim.sweep({"txs": 100}, {"lambda": []})


def test_runs_in_threads_are_deterministic():
    """The GIL is released during a run: threads run side by side and each gets the result
    a run alone gets."""
    from concurrent.futures import ThreadPoolExecutor

    specs = [dict(SMALL, seed=s) for s in (1, 2, 3, 4)]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda s: sim.run(s, frames=False), specs))
    alone = [sim.run(s, frames=False) for s in specs]
    assert [deterministic(r) for r in together] == [deterministic(r) for r in alone]
