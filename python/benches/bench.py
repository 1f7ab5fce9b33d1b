"""Figures of the Python package against the Rust ones (BENCHMARKS.md, "Python package").

    python python/benches/bench.py sign [--payments 10000] [--repeats 7]
        Pay payloads signed per second by Device.pay_batch (one call per batch; one core, the
        GIL released while signing). Compare: `cargo bench -p benches --bench wallet --
        pay_sign` (the same Device::pay loop in Rust).
    python python/benches/bench.py sim --cli target/release/tangle-sim [--txs 1000000] [--repeats 5]
        One simulator run from Python (tangle.sim.run) and the same run by the CLI
        (`tangle-sim run ... --out DIR --no-progress`), alternating; prints each run's wall
        time (the process's, for the CLI; the call's, for Python) and CPU time (user + system,
        what a loaded machine distorts least), and the medians.

Use a release build of the package (`pip install ./python`), not `maturin develop`'s debug
build. Prints medians; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tangle import sim, wallet

REPO = Path(__file__).resolve().parents[2]


def sign(payments: int, repeats: int) -> None:
    to = wallet.Device.generate().address
    batch = [(to, 1)] * payments
    rates, cpu_rates = [], []
    for _ in range(repeats):
        d = wallet.Device(bytes([1] * 32), network_id=0x5EED)
        t, c = time.perf_counter(), time.process_time()
        signed = d.pay_batch(batch)
        rates.append(payments / (time.perf_counter() - t))
        cpu_rates.append(payments / (time.process_time() - c))
        assert len(signed) == payments
    print("pay_batch payments/s (wall):", ", ".join(f"{r:,.0f}" for r in rates))
    print("pay_batch payments/s (this process's CPU time):", ", ".join(f"{r:,.0f}" for r in cpu_rates))
    print(
        f"median: {statistics.median(rates):,.0f} payments/s wall, "
        f"{statistics.median(cpu_rates):,.0f} per CPU second ({payments} per batch, {repeats} batches)"
    )


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def simulate(cli: str, txs: int, repeats: int, scenario: str) -> None:
    spec = {"scenario": scenario, "txs": txs, "seed": 1}
    flags = ["--scenario", scenario, "--txs", str(txs), "--seed", "1"]
    py_wall, cli_wall, py_cpu, cli_cpu = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            r = sim.run(spec, out=Path(tmp) / f"py-{i}", frames=False)
            py_wall.append(time.perf_counter() - t)
            py_cpu.append(time.process_time() - c)
            t, c = time.perf_counter(), _children_cpu()
            subprocess.run(
                [cli, "run", *flags, "--out", str(Path(tmp) / f"cli-{i}"), "--no-progress"],
                check=True,
                capture_output=True,
            )
            cli_wall.append(time.perf_counter() - t)
            cli_cpu.append(_children_cpu() - c)
            print(
                f"run {i}: python {py_wall[-1]:.2f} s wall {py_cpu[-1]:.2f} s CPU, "
                f"cli {cli_wall[-1]:.2f} s wall {cli_cpu[-1]:.2f} s CPU "
                f"({r['total_transactions']} transactions)"
            )
    for what, p, c in (
        ("wall", statistics.median(py_wall), statistics.median(cli_wall)),
        ("CPU", statistics.median(py_cpu), statistics.median(cli_cpu)),
    ):
        print(f"median {what}: python {p:.2f} s, cli {c:.2f} s, python/cli = {p / c:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("sign")
    s.add_argument("--payments", type=int, default=10_000)
    s.add_argument("--repeats", type=int, default=7)
    m = sub.add_parser("sim")
    m.add_argument("--cli", default=str(REPO / "target" / "release" / "tangle-sim"))
    m.add_argument("--txs", type=int, default=1_000_000)
    m.add_argument("--repeats", type=int, default=5)
    m.add_argument("--scenario", default=str(REPO / "simulator" / "scenarios" / "micropayments.toml"))
    a = ap.parse_args()
    if a.what == "sign":
        sign(a.payments, a.repeats)
    else:
        simulate(a.cli, a.txs, a.repeats, a.scenario)


if __name__ == "__main__":
    main()
