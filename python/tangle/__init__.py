"""The tangle ledger from Python, at Rust speed.

- :mod:`tangle.wallet`: device keys (BIP-39 / SLIP-10, as ``tangle-wallet``), payload
  builders, payment channels, anchors, proof verification. No network access.
- :mod:`tangle.client`: the node client (submit, wait, accounts, channels, events).
- :mod:`tangle.sim`: the simulator (``tangle-sim``): runs and sweeps.

Every error is a :class:`tangle.errors.TangleError` subclass carrying the Rust message
(bad argument values raise ``ValueError`` / ``TypeError``).
"""

from tangle import client, errors, sim, wallet
from tangle._native import __version__

__all__ = ["client", "errors", "sim", "wallet", "__version__"]
