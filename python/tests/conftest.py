"""Shared fixtures: the workspace's binaries and a `tangle-node dev` started for the tests.

The binaries come from `$TANGLE_BIN_DIR`, else `$CARGO_TARGET_DIR/debug`, else the
workspace's `target/debug` (`bash scripts/check.sh` builds them; by hand:
`cargo build -p node -p wallet -p simulator`).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]


def binary(name: str) -> Path:
    """The path of a workspace binary; fails the test with how to build it if missing."""
    if os.environ.get("TANGLE_BIN_DIR"):
        d = Path(os.environ["TANGLE_BIN_DIR"])
    else:
        d = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug"
    p = d / name
    if not p.is_file():
        pytest.fail(f"{p} missing: build it first (cargo build -p node -p wallet -p simulator)")
    return p


@dataclass
class DevNode:
    """A running `tangle-node dev`: its API URL, genesis file and network id."""

    url: str
    genesis: Path
    network_id: int
    faucet: str


@pytest.fixture(scope="session")
def dev_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNode]:
    """`tangle-node dev` on 127.0.0.1 with a port the kernel picks (`--api-addr
    127.0.0.1:0`; the node binds, then prints the address it got), milestones every 200 ms."""
    data = tmp_path_factory.mktemp("node")
    proc = subprocess.Popen(
        [
            str(binary("tangle-node")),
            "dev",
            "--data-dir",
            str(data / "dev"),
            "--api-addr",
            "127.0.0.1:0",
            "--no-mqtt",
            "--milestone-interval-ms",
            "200",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: "queue.Queue[str | None]" = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen = []
    url = genesis = faucet = None
    network_id = None
    try:
        while url is None:
            # Only a guard against a node that hangs before printing its address: reading
            # the address is what the test waits for, not a timing check.
            line = lines.get(timeout=120)
            if line is None:
                pytest.fail("tangle-node dev exited:\n" + "".join(seen))
            seen.append(line)
            if m := re.match(r"\s+genesis\s+: (.+) \(network id (\d+)\)", line):
                genesis, network_id = Path(m.group(1)), int(m.group(2))
            elif m := re.match(r"\s+faucet address\s+: (\S+)", line):
                faucet = m.group(1)
            elif m := re.match(r"\s+API\s+: (http://[^/]+)/", line):
                url = m.group(1)
        assert genesis is not None and network_id is not None and faucet is not None, seen
        if not genesis.is_absolute():
            genesis = data / "dev" / genesis
        yield DevNode(url=url, genesis=genesis, network_id=network_id, faucet=faucet)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
