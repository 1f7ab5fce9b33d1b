"""The simulator (``tangle-sim``) from Python: runs and local sweeps, at Rust speed.

A scenario is a dict whose keys are ``tangle-sim run`` flag names (``-`` or ``_``), e.g.
``{"tips": "urts", "lambda": 50, "delay": 1, "txs": 300000, "seed": 3}``, optionally with
``"scenario": "path.toml"`` as the base, or just the path of a scenario TOML file. The flags
apply exactly as the CLI applies them (same keys, same validation, same defaults), so a run
here gives the same summary as the CLI with the same flags and seed (wall-clock fields aside).

>>> from tangle import sim
>>> r = sim.run({"tips": "urts", "lambda": 50, "delay": 1, "txs": 2000, "seed": 3})
>>> r["mean_tips"] > 0, r["transactions"]
(True, 2000)

The GIL is released while the simulation runs, so threads (and Dask workers) run in
parallel.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from tangle import _native
from tangle._native import ScenarioError

Scenario = Union[Mapping[str, Any], str, "os.PathLike[str]"]

__all__ = ["RunResult", "ScenarioError", "flatten", "run", "scenario_toml", "sweep"]


def _pandas(frames: Optional[bool]) -> Any:
    """pandas if frames are wanted and available; None for plain lists."""
    if frames is False:
        return None
    try:
        import pandas  # noqa: PLC0415 (optional dependency)
    except ImportError:
        if frames:
            raise
        return None
    return pandas


def _table(columns: Dict[str, list], pandas: Any) -> Any:
    if pandas is not None:
        return pandas.DataFrame(columns)
    names = list(columns)
    return [dict(zip(names, row)) for row in zip(*columns.values())]


class RunResult(dict):
    """The run's summary: a dict of the ``summary.json`` fields.

    Two more tables ride along as attributes, as pandas DataFrames when pandas is installed
    (or ``frames=True``), else lists of row dicts:

    - ``timeseries``: node 0's view over simulated time (``time``, ``tips``,
      ``unconfirmed``, ``held``, ``milestone``, ``issued``, ``confirmed``), as
      ``timeseries.csv``;
    - ``latency``: the confirmation latency histogram (``latency_upper``, ``count``,
      ``cdf``), as ``latency.csv``.
    """

    timeseries: Any
    latency: Any

    @property
    def summary(self) -> Dict[str, Any]:
        """The summary as a plain dict."""
        return dict(self)


def run(
    scenario: Scenario,
    *,
    out: Union[str, "os.PathLike[str]", None] = None,
    frames: Optional[bool] = None,
) -> RunResult:
    """Runs one scenario (base mode) and returns its summary (see :class:`RunResult`).

    ``out``: also write the run directory ``tangle-sim run --out`` writes (``summary.json``,
    ``scenario.toml``, CSVs and plots). ``frames``: ``None`` for DataFrames if pandas is
    installed, ``True`` to require them, ``False`` for lists.
    Raises :class:`ScenarioError` for an invalid scenario (the simulator's message),
    ``TypeError`` / ``ValueError`` for keys or values it cannot take.
    """
    pandas = _pandas(frames)
    summary, series, latency = _native.run_scenario(
        dict(scenario) if isinstance(scenario, Mapping) else scenario,
        None if out is None else os.fspath(out),
    )
    result = RunResult(json.loads(summary))
    result.timeseries = _table(series, pandas)
    result.latency = _table(latency, pandas)
    return result


def flatten(summary: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """One level of keys for a table: nested objects become ``a.b`` columns
    (``confirmation_latency.p50``); lists (the approvers histogram) are left out."""
    flat: Dict[str, Any] = {}
    for k, v in summary.items():
        if isinstance(v, Mapping):
            flat.update(flatten(v, f"{prefix}{k}."))
        elif not isinstance(v, list):
            flat[f"{prefix}{k}"] = v
    return flat


def sweep(
    base: Scenario,
    grid: Mapping[str, Sequence[Any]],
    *,
    jobs: Optional[int] = None,
    frames: Optional[bool] = None,
) -> Any:
    """Runs every combination of ``grid`` (``{key: [values]}``, keys as in :func:`run`)
    over ``base`` in this process on ``jobs`` threads (default: all cores), as
    ``tangle-sim sweep --grid key=v1,v2``. Returns one row per configuration in grid order
    (the first key varies slowest): the grid values and the :func:`flatten`-ed summary; a
    DataFrame when pandas is installed (see :func:`run` for ``frames``), else a list of dicts.
    """
    pandas = _pandas(frames)
    results = _native.run_sweep(
        dict(base) if isinstance(base, Mapping) else base,
        {k: list(v) for k, v in grid.items()},
        jobs,
    )
    rows: List[Dict[str, Any]] = []
    for labels, summary in results:
        row: Dict[str, Any] = dict(labels)
        row.update(flatten(json.loads(summary)))
        rows.append(row)
    return pandas.DataFrame(rows) if pandas is not None else rows


def scenario_toml(scenario: Scenario) -> str:
    """The scenario as TOML (``scenario.toml`` of a run), without running it: checks a spec."""
    return _native.scenario_toml(dict(scenario) if isinstance(scenario, Mapping) else scenario)
