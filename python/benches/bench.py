"""Figures of the Python package against the Rust ones (BENCHMARKS.md, "Python package").

    python python/benches/bench.py sign [--payments 10000] [--repeats 7]
        Pay payloads signed per second by Device.pay_batch (one call per batch; one core, the
        GIL released while signing). Compare: `cargo bench -p benches --bench wallet --
        pay_sign` (the same Device::pay loop in Rust).
    python python/benches/bench.py sim --cli target/release/tangle-sim [--txs 1000000] [--repeats 5]
        One simulator run from Python (tangle.sim.run) and the same run by the CLI
        (`tangle-sim run ... --out DIR --no-progress`), alternating; prints each run's wall
        time (the process's, for the CLI; the call's, for Python) and the medians.

Use a release build of the package (`pip install ./python`), not `maturin develop`'s debug
build. Prints medians; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
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
    rates = []
    for _ in range(repeats):
        d = wallet.Device(bytes([1] * 32), network_id=0x5EED)
        t = time.perf_counter()
        signed = d.pay_batch(batch)
        rates.append(payments / (time.perf_counter() - t))
        assert len(signed) == payments
    print("pay_batch payments/s:", ", ".join(f"{r:,.0f}" for r in rates))
    print(f"median: {statistics.median(rates):,.0f} payments/s ({payments} per batch, {repeats} batches)")


def simulate(cli: str, txs: int, repeats: int, scenario: str) -> None:
    spec = {"scenario": scenario, "txs": txs, "seed": 1}
    flags = ["--scenario", scenario, "--txs", str(txs), "--seed", "1"]
    py_walls, cli_walls = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            t = time.perf_counter()
            r = sim.run(spec, out=Path(tmp) / f"py-{i}", frames=False)
            py_walls.append(time.perf_counter() - t)
            t = time.perf_counter()
            subprocess.run(
                [cli, "run", *flags, "--out", str(Path(tmp) / f"cli-{i}"), "--no-progress"],
                check=True,
                capture_output=True,
            )
            cli_walls.append(time.perf_counter() - t)
            print(f"run {i}: python {py_walls[-1]:.2f} s, cli {cli_walls[-1]:.2f} s "
                  f"({r['total_transactions']} transactions)")
    p, c = statistics.median(py_walls), statistics.median(cli_walls)
    print(f"median: python {p:.2f} s, cli {c:.2f} s, python/cli = {p / c:.3f}")


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
