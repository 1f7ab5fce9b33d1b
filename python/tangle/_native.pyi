"""Type stubs of the native module `tangle._native` (Rust, PyO3). Import from
`tangle.wallet`, `tangle.client`, `tangle.sim` and `tangle.errors` instead."""

from os import PathLike
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

__version__: str
DEFAULT_COIN_TYPE: int
VOUCHER_LEN: int

_Path = Union[str, "PathLike[str]"]
_Digest = Union[bytes, str]

# --- errors -----------------------------------------------------------------------------

class TangleError(Exception): ...
class WalletError(TangleError): ...
class BuildError(WalletError): ...
class ChannelError(WalletError): ...
class VoucherError(WalletError): ...
class AnchorError(WalletError): ...
class ProofError(WalletError): ...
class ClientError(TangleError): ...
class Unreachable(ClientError): ...
class RequestTimeout(ClientError): ...
class Malformed(ClientError): ...
class NotFound(ClientError): ...
class NotEnabled(ClientError): ...
class Conflict(ClientError): ...
class TooLarge(ClientError): ...
class Invalid(ClientError): ...
class RateLimited(ClientError): ...
class Unavailable(ClientError): ...
class ApiError(ClientError):
    status: int
    code: str
class BadResponse(ClientError): ...
class WaitTimeout(ClientError): ...
class ScenarioError(TangleError): ...

# --- wallet -----------------------------------------------------------------------------

class Payload:
    """A signed payload (Pay, Open, Claim, Refund or Anchor), ready to submit."""

    @property
    def id(self) -> str:
        """The payload id (64 hex digits), stable across reattachments."""
    @property
    def issuer(self) -> str:
        """The issuer's address (`tng1...`)."""
    @property
    def seq(self) -> int:
        """The issuer's sequence number."""
    @property
    def kind(self) -> str:
        """`pay`, `open`, `claim`, `refund` or `anchor`."""
    @property
    def body(self) -> Dict[str, Any]:
        """The body as the API's JSON shows it, e.g. `{"Pay": {"to", "amount", "memo"}}`."""
    @property
    def signature(self) -> bytes:
        """The Ed25519 signature (64 bytes)."""
    @property
    def channel_id(self) -> Optional[str]:
        """For an Open: the id of the channel it creates; else None."""
    def to_json(self) -> str:
        """The JSON the node's `POST /api/v1/payloads` takes."""
    @staticmethod
    def from_json(text: Union[str, bytes, Mapping[str, Any]]) -> Payload:
        """The payload from its JSON form; ValueError if it is not one."""
    def verify(self, network_id: int) -> bool:
        """Whether the signature is valid for `network_id`."""
    def __eq__(self, other: object) -> bool: ...

class Device:
    """One device key on one network, with the sequence number of its next payload.

    Keys derive as `tangle-wallet` derives them: BIP-39 seed, then SLIP-10 Ed25519
    `m/44'/coin_type'/account'/0'/index'`. Builders raise `BuildError` for what the ledger
    would refuse and then leave the sequence number as it was."""

    def __init__(self, secret: bytes, *, network_id: int = 0, next_seq: int = 0) -> None:
        """A device from a 32-byte Ed25519 secret seed."""
    @staticmethod
    def from_secret(secret: bytes, *, network_id: int = 0, next_seq: int = 0) -> Device: ...
    @staticmethod
    def generate(*, network_id: int = 0, next_seq: int = 0) -> Device:
        """A device with a fresh random key."""
    @staticmethod
    def from_mnemonic(
        phrase: str,
        account: int = 0,
        index: int = 0,
        *,
        network_id: int = 0,
        next_seq: int = 0,
        passphrase: str = "",
        coin_type: int = 1,
    ) -> Device:
        """Device key `index` of `account` of a BIP-39 phrase (ValueError if invalid)."""
    @staticmethod
    def from_seed(
        seed: bytes,
        account: int = 0,
        index: int = 0,
        *,
        network_id: int = 0,
        next_seq: int = 0,
        coin_type: int = 1,
    ) -> Device:
        """Device key `index` of `account` of a 64-byte BIP-39 seed."""
    @property
    def address(self) -> str:
        """The account address (`tng1...`)."""
    @property
    def did(self) -> str:
        """The `did:key:z6Mk...` of the key."""
    @property
    def public_key(self) -> bytes:
        """The Ed25519 public key (32 bytes)."""
    network_id: int
    """The network this device signs for (settable)."""
    @property
    def next_seq(self) -> int:
        """The sequence number the next payload will carry."""
    def resync(self, node_next_seq: int) -> str:
        """Adopts the node's next sequence number: `in_sync`, `advanced` or `rewound`."""
    def did_document(self) -> Dict[str, Any]:
        """The W3C DID document of the device's did:key."""
    def pay(self, to: str, amount: int, memo: Union[bytes, str, None] = None) -> Payload:
        """A payment to `to` (address or did:key), memo at most 64 bytes."""
    def pay_batch(
        self, payments: Sequence[Union[Tuple[str, int], Tuple[str, int, Union[bytes, str]]]]
    ) -> List[Payload]:
        """Signs many payments in one call with the GIL released; all or nothing."""
    def open_channel(
        self, payee: str, deposit: int, expires_at: int
    ) -> Tuple[PayerChannel, Payload]:
        """Opens a channel: the payer's end and the Open payload to submit."""
    def open(self, payee: str, deposit: int, expires_at: int) -> Payload:
        """A bare Open payload."""
    def claim(self, channel: str, amount: int, voucher_signature: bytes) -> Payload:
        """A bare Claim payload."""
    def refund(self, channel: str) -> Payload:
        """A Refund payload."""
    def anchor(self, tag: Union[bytes, str], digest: _Digest) -> Payload:
        """An Anchor payload: `digest` (32 bytes or hex) under `tag` (at most 32 bytes)."""

class PayerChannel:
    """The payer's end of a payment channel."""

    @staticmethod
    def resume(device: Device, state: Mapping[str, Any]) -> PayerChannel:
        """Resumes from a saved `state()` with the payer's device."""
    @property
    def id(self) -> str: ...
    @property
    def terms(self) -> Dict[str, Any]:
        """`{"id", "payer", "payee", "deposit", "expires_at"}`."""
    @property
    def paid(self) -> int: ...
    @property
    def remaining(self) -> int: ...
    def state(self) -> Dict[str, Any]: ...
    def voucher(self, increment: int) -> bytes:
        """A voucher adding `increment` to the cumulative amount, as bytes."""
    def voucher_total(self, total: int) -> bytes:
        """A voucher for the cumulative amount `total`, as bytes."""
    def refund(self, device: Device, current_milestone: int) -> Payload:
        """The Refund payload, once `current_milestone` is past the expiry."""

class PayeeChannel:
    """The payee's end of a payment channel: checks vouchers, keeps the best, claims it."""

    def __init__(
        self, network_id: int, open: Payload, payee: str, voucher_dir: Optional[_Path] = None
    ) -> None: ...
    @staticmethod
    def from_terms(
        network_id: int, terms: Mapping[str, Any], voucher_dir: Optional[_Path] = None
    ) -> PayeeChannel: ...
    @property
    def id(self) -> str: ...
    @property
    def terms(self) -> Dict[str, Any]: ...
    @property
    def earned(self) -> int: ...
    @property
    def best(self) -> Optional[bytes]: ...
    def accept(self, voucher: bytes) -> int:
        """Checks and keeps voucher bytes; returns the increment (VoucherError if refused)."""
    def claim(self, device: Device, current_milestone: int) -> Payload:
        """The Claim payload for the best voucher, before expiry."""

class ProofVerifier:
    """Checks proofs of confirmation against one network's genesis committee only."""

    def __init__(self, genesis_toml: str) -> None: ...
    @staticmethod
    def from_file(path: _Path) -> ProofVerifier: ...
    def verify(self, proof: Union[str, Mapping[str, Any]]) -> Dict[str, Any]:
        """What the proof proves: `{"transaction_id", "payload_id", "payload",
        "milestone", "milestone_id", "milestone_timestamp", "applied"}`; ProofError if not."""

def decode_voucher(voucher: bytes) -> Dict[str, Any]: ...
def verify_voucher(voucher: bytes, network_id: int, payer: str) -> None: ...
def generate_mnemonic() -> str: ...
def mnemonic_to_seed(phrase: str, passphrase: str = "") -> bytes: ...
def address_of(key: Union[bytes, str]) -> str: ...
def did_of(address: str) -> str: ...
def did_document(address: str) -> Dict[str, Any]: ...
def hash_bytes(data: bytes) -> bytes: ...
def hash_file(path: _Path) -> bytes: ...
def anchored_digest(payload: Payload) -> Tuple[bytes, bytes]: ...
def verify_digest(anchored: _Digest, actual: _Digest) -> None: ...
def verify_file(path: _Path, anchored: _Digest) -> None: ...

# --- client -----------------------------------------------------------------------------

class NodeClient:
    """A blocking client of one node's REST API; the GIL is released while it waits."""

    def __init__(
        self, url: str = "http://127.0.0.1:14265", *, timeout: float = 10.0, retries: int = 4
    ) -> None: ...
    @property
    def url(self) -> str: ...
    def info(self) -> Dict[str, Any]: ...
    def account(self, address: str) -> Dict[str, Any]: ...
    def submit(self, payload: Payload) -> Dict[str, Any]: ...
    def payload(self, payload_id: str) -> Dict[str, Any]: ...
    def wait_final(self, payload_id: str, timeout: float = 30.0) -> Dict[str, Any]: ...
    def submit_and_wait(self, payload: Payload, timeout: float = 30.0) -> Dict[str, Any]: ...
    def channel(self, channel_id: str) -> Dict[str, Any]: ...
    def faucet(self, address: str, amount: int) -> Dict[str, Any]: ...
    def payload_proof(self, payload_id: str) -> Dict[str, Any]: ...
    def signed_payload(self, payload_id: str) -> Payload: ...
    def events(
        self, last_event_id: Optional[int] = None, timeout: float = 30.0
    ) -> EventStream: ...

class EventStream(Iterator[Dict[str, Any]]):
    """The node's events: `{"id": int, "event": "message" | "lagged", "data": dict}`."""

    def __iter__(self) -> EventStream: ...
    def __next__(self) -> Dict[str, Any]: ...
    def close(self) -> None: ...
    def __enter__(self) -> EventStream: ...
    def __exit__(self, *exc: object) -> None: ...

# --- sim --------------------------------------------------------------------------------

def run_scenario(
    scenario: Union[Mapping[str, Any], _Path], out: Optional[str] = None
) -> Tuple[str, Dict[str, List[Any]], Dict[str, List[Any]]]: ...
def run_sweep(
    base: Union[Mapping[str, Any], _Path],
    grid: Mapping[str, Sequence[Any]],
    jobs: Optional[int] = None,
) -> List[Tuple[List[Tuple[str, str]], str]]: ...
def scenario_toml(spec: Union[Mapping[str, Any], _Path]) -> str: ...
