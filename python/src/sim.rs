//! `tangle.sim`: `simulator::run` and `simulator::run_grid` with the scenario given as the
//! `tangle-sim` flags (a dict whose keys are the flag names) or a TOML path. The flags map
//! onto the scenario exactly as the CLI maps them: a `scenario` file first, then each flag
//! through `simulator::apply_override`, then `sign`, then `Scenario::validate`.

use std::path::PathBuf;

use indicatif::ProgressBar;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};
use simulator::{Axis, RunOutput, Scenario};

use crate::errors;

/// A flag's value as the command line would spell it.
fn flag_value(key: &str, v: &Bound<'_, PyAny>) -> PyResult<String> {
    if v.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{key}: a boolean is not a value for this key"
        )));
    }
    if v.is_instance_of::<PyInt>()
        || v.is_instance_of::<PyFloat>()
        || v.is_instance_of::<PyString>()
    {
        return Ok(v.str()?.to_cow()?.to_string());
    }
    Err(PyTypeError::new_err(format!(
        "{key}: expected a number or a str, got {}",
        v.get_type().name()?
    )))
}

/// The scenario of `spec`: a path to a TOML file, or a dict of `tangle-sim run` flags
/// (`-` or `_` in names). Keys `out` and `no_progress` belong to the CLI only.
pub(crate) fn scenario(spec: &Bound<'_, PyAny>) -> PyResult<Scenario> {
    let Ok(d) = spec.cast::<PyDict>() else {
        let path: PathBuf = spec.extract().map_err(|_| {
            PyTypeError::new_err("a scenario is a dict of tangle-sim flags or a TOML path")
        })?;
        let sc = Scenario::load(&path).map_err(errors::scenario)?;
        sc.validate().map_err(errors::scenario)?;
        return Ok(sc);
    };
    let mut entries: Vec<(String, Bound<'_, PyAny>)> = Vec::new();
    for (k, v) in d.iter() {
        let k: String = k
            .extract()
            .map_err(|_| PyTypeError::new_err("scenario keys are str"))?;
        entries.push((k.replace('-', "_"), v));
    }
    let mut sc = match entries.iter().find(|(k, _)| k == "scenario") {
        Some((_, p)) => {
            let path: PathBuf = p.extract()?;
            Scenario::load(&path).map_err(errors::scenario)?
        }
        None => Scenario::default(),
    };
    for (k, v) in &entries {
        match k.as_str() {
            "scenario" => {}
            "sign" => sc.sign = v.extract::<bool>()?,
            "mode" => {
                let m: String = v.extract()?;
                if m != "base" {
                    return Err(PyValueError::new_err(format!(
                        "mode {m:?}: only the base mode runs from Python (use tangle-sim run --mode node)"
                    )));
                }
            }
            "out" | "no_progress" => {
                return Err(PyValueError::new_err(format!(
                    "{k} is a tangle-sim option, not a scenario key (pass out= to run())"
                )))
            }
            key => simulator::apply_override(&mut sc, key, &flag_value(key, v)?)
                .map_err(errors::scenario)?,
        }
    }
    sc.validate().map_err(errors::scenario)?;
    Ok(sc)
}

/// A run's time series and latency histogram as columns (`name -> list`).
fn columns<'py>(
    py: Python<'py>,
    out: &RunOutput,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyDict>)> {
    let s = &out.series;
    let series = PyDict::new(py);
    series.set_item("time", s.iter().map(|p| p.time).collect::<Vec<_>>())?;
    series.set_item("tips", s.iter().map(|p| p.tips).collect::<Vec<_>>())?;
    series.set_item(
        "unconfirmed",
        s.iter().map(|p| p.unconfirmed).collect::<Vec<_>>(),
    )?;
    series.set_item("held", s.iter().map(|p| p.held).collect::<Vec<_>>())?;
    series.set_item(
        "milestone",
        s.iter().map(|p| p.milestone).collect::<Vec<_>>(),
    )?;
    series.set_item("issued", s.iter().map(|p| p.issued).collect::<Vec<_>>())?;
    series.set_item(
        "confirmed",
        s.iter().map(|p| p.confirmed).collect::<Vec<_>>(),
    )?;
    // As latency.csv: bin upper edge, count, cumulative share.
    let h = &out.latency_histogram;
    let total: u64 = h.iter().map(|x| x.1).sum();
    let mut acc = 0u64;
    let cdf: Vec<f64> = h
        .iter()
        .map(|&(_, c)| {
            acc += c;
            if total > 0 {
                acc as f64 / total as f64
            } else {
                0.0
            }
        })
        .collect();
    let latency = PyDict::new(py);
    latency.set_item("latency_upper", h.iter().map(|x| x.0).collect::<Vec<_>>())?;
    latency.set_item("count", h.iter().map(|x| x.1).collect::<Vec<_>>())?;
    latency.set_item("cdf", cdf)?;
    Ok((series, latency))
}

/// Runs one scenario with the GIL released; returns `(summary_json, timeseries, latency)`
/// with the two tables as columns. With `out`, also writes the run directory `tangle-sim
/// run --out` writes.
#[pyfunction]
#[pyo3(signature = (scenario, out = None))]
pub(crate) fn run_scenario<'py>(
    py: Python<'py>,
    scenario: &Bound<'py, PyAny>,
    out: Option<PathBuf>,
) -> PyResult<(String, Bound<'py, PyDict>, Bound<'py, PyDict>)> {
    let sc = self::scenario(scenario)?;
    let output = py
        .detach(|| -> Result<RunOutput, String> {
            let o = simulator::run(&sc, &ProgressBar::hidden()).map_err(|e| e.to_string())?;
            if let Some(dir) = &out {
                simulator::write_run_dir(dir, &sc, &o).map_err(|e| e.to_string())?;
            }
            Ok(o)
        })
        .map_err(errors::ScenarioError::new_err)?;
    let summary = serde_json::to_string(&output.summary).map_err(errors::scenario)?;
    let (series, latency) = columns(py, &output)?;
    Ok((summary, series, latency))
}

/// A sweep's row: the grid point's `(key, value)` labels and its summary as JSON.
type SweepRow = (Vec<(String, String)>, String);

/// Runs the grid `axes` (`{key: [values]}`, keys as in `run`) over `base` on `jobs` threads
/// (default: all cores), the GIL released; returns `[(labels, summary_json)]` in grid order.
#[pyfunction]
#[pyo3(signature = (base, grid, jobs = None))]
pub(crate) fn run_sweep(
    py: Python<'_>,
    base: &Bound<'_, PyAny>,
    grid: &Bound<'_, PyDict>,
    jobs: Option<usize>,
) -> PyResult<Vec<SweepRow>> {
    let sc = scenario(base)?;
    let mut axes = Vec::new();
    for (k, values) in grid.iter() {
        let key: String = k.extract::<String>()?.replace('-', "_");
        let mut vs = Vec::new();
        for v in values.try_iter()? {
            vs.push(flag_value(&key, &v?)?);
        }
        if vs.is_empty() {
            return Err(PyValueError::new_err(format!(
                "grid axis {key} has no values"
            )));
        }
        axes.push(Axis { key, values: vs });
    }
    let threads = jobs.unwrap_or(0);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| errors::ScenarioError::new_err(format!("thread pool: {e}")))?;
    let results = py
        .detach(|| pool.install(|| simulator::run_grid(&sc, &axes)))
        .map_err(errors::scenario)?;
    results
        .into_iter()
        .map(|(labels, o)| {
            let s = serde_json::to_string(&o.summary).map_err(errors::scenario)?;
            Ok((labels, s))
        })
        .collect()
}

/// The scenario of `spec` as TOML (what `tangle-sim run` writes to `scenario.toml`); checks a
/// spec without running it.
#[pyfunction]
pub(crate) fn scenario_toml(spec: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(scenario(spec)?.to_toml())
}

/// Registers the simulator functions in `m`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run_scenario, m)?)?;
    m.add_function(wrap_pyfunction!(run_sweep, m)?)?;
    m.add_function(wrap_pyfunction!(scenario_toml, m)?)?;
    Ok(())
}
