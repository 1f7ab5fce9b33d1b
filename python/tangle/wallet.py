"""The device wallet: keys, payloads, payment channels, anchors, proofs. No network access.

Keys derive as ``tangle-wallet`` derives them: the BIP-39 seed of the phrase (and optional
passphrase), then SLIP-10 Ed25519 ``m/44'/coin_type'/account'/0'/index'`` (coin type 1)::

    from tangle.wallet import Device
    ev = Device.from_mnemonic(phrase, account=0, index=0, network_id=info["network_id"])
    ev.address, ev.did
    pay = ev.pay(charger_address, 25, b"kWh 1")   # a signed Payload, ready to submit

Payment channels: ``payer, open = ev.open_channel(payee, deposit, expires_at)``;
``payer.voucher(25)`` gives voucher bytes for the payee's ``PayeeChannel.accept``;
``payee.claim(charger, current_milestone)`` gives the Claim payload.
"""

from tangle._native import (
    DEFAULT_COIN_TYPE,
    VOUCHER_LEN,
    AnchorError,
    BuildError,
    ChannelError,
    Device,
    PayeeChannel,
    Payload,
    PayerChannel,
    ProofError,
    ProofVerifier,
    VoucherError,
    WalletError,
    address_of,
    anchored_digest,
    decode_voucher,
    did_document,
    did_of,
    generate_mnemonic,
    hash_bytes,
    hash_file,
    mnemonic_to_seed,
    verify_digest,
    verify_file,
    verify_voucher,
)

__all__ = [
    "DEFAULT_COIN_TYPE",
    "VOUCHER_LEN",
    "AnchorError",
    "BuildError",
    "ChannelError",
    "Device",
    "PayeeChannel",
    "Payload",
    "PayerChannel",
    "ProofError",
    "ProofVerifier",
    "VoucherError",
    "WalletError",
    "address_of",
    "anchored_digest",
    "decode_voucher",
    "did_document",
    "did_of",
    "generate_mnemonic",
    "hash_bytes",
    "hash_file",
    "mnemonic_to_seed",
    "verify_digest",
    "verify_file",
    "verify_voucher",
]
