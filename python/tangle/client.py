"""The node client: submit payloads, wait for a final status, read accounts and channels,
follow the node's events. Blocking calls; the GIL is released while they wait.

The node's error codes raise one class each (all :class:`ClientError`): ``Malformed`` (400),
``NotFound`` / ``NotEnabled`` (404), ``Conflict`` (409), ``TooLarge`` (413), ``Invalid``
(422), ``RateLimited`` (429), ``Unavailable`` (503), ``ApiError`` (any other, with
``status`` and ``code``); ``Unreachable``, ``RequestTimeout``, ``BadResponse`` and
``WaitTimeout`` for the rest.
"""

from tangle._native import (
    ApiError,
    BadResponse,
    ClientError,
    Conflict,
    EventStream,
    Invalid,
    Malformed,
    NodeClient,
    NotEnabled,
    NotFound,
    RateLimited,
    RequestTimeout,
    TooLarge,
    Unavailable,
    Unreachable,
    WaitTimeout,
)

DEFAULT_NODE_URL = "http://127.0.0.1:14265"

__all__ = [
    "DEFAULT_NODE_URL",
    "ApiError",
    "BadResponse",
    "ClientError",
    "Conflict",
    "EventStream",
    "Invalid",
    "Malformed",
    "NodeClient",
    "NotEnabled",
    "NotFound",
    "RateLimited",
    "RequestTimeout",
    "TooLarge",
    "Unavailable",
    "Unreachable",
    "WaitTimeout",
]
