"""Every exception the tangle package raises.

``TangleError`` is the base. ``WalletError`` (``BuildError``, ``ChannelError``,
``VoucherError``, ``AnchorError``, ``ProofError``) comes from :mod:`tangle.wallet`;
``ClientError`` and one subclass per node error code from :mod:`tangle.client`;
``ScenarioError`` from :mod:`tangle.sim`. The message is the Rust error's.
"""

from tangle._native import (
    AnchorError,
    ApiError,
    BadResponse,
    BuildError,
    ChannelError,
    ClientError,
    Conflict,
    Invalid,
    Malformed,
    NotEnabled,
    NotFound,
    ProofError,
    RateLimited,
    RequestTimeout,
    ScenarioError,
    TangleError,
    TooLarge,
    Unavailable,
    Unreachable,
    VoucherError,
    WaitTimeout,
    WalletError,
)

__all__ = [
    "AnchorError",
    "ApiError",
    "BadResponse",
    "BuildError",
    "ChannelError",
    "ClientError",
    "Conflict",
    "Invalid",
    "Malformed",
    "NotEnabled",
    "NotFound",
    "ProofError",
    "RateLimited",
    "RequestTimeout",
    "ScenarioError",
    "TangleError",
    "TooLarge",
    "Unavailable",
    "Unreachable",
    "VoucherError",
    "WaitTimeout",
    "WalletError",
]
