"""tangle.wallet: keys as the CLI derives them, payload builders, channels, anchors, proofs."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import binary

from tangle import wallet
from tangle.errors import TangleError
from tangle.wallet import (
    AnchorError,
    BuildError,
    ChannelError,
    Device,
    PayeeChannel,
    Payload,
    ProofVerifier,
    VoucherError,
)

PHRASE = " ".join(["abandon"] * 23 + ["art"])
NET = 7


def test_from_mnemonic_derives_the_key_the_cli_derives(tmp_path):
    env = dict(os.environ, TANGLE_WALLET_PASSWORD="pw")
    out = subprocess.run(
        [
            str(binary("tangle-wallet")),
            "--json",
            "--keystore",
            str(tmp_path / "ks.json"),
            "init",
            "--restore",
            "--network-id",
            str(NET),
            "--kdf-memory-kib",
            "64",
            "--kdf-iterations",
            "1",
        ],
        input=PHRASE + "\n",
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    cli = json.loads(out.stdout)
    d = Device.from_mnemonic(PHRASE, account=0, index=0, network_id=NET)
    assert d.address == cli["address"]
    assert d.did == cli["did"]
    assert d.network_id == NET


def test_derivation_paths_and_seeds_agree():
    seed = wallet.mnemonic_to_seed(PHRASE)
    assert len(seed) == 64
    a = Device.from_mnemonic(PHRASE, account=1, index=2)
    assert a.address == Device.from_seed(seed, account=1, index=2).address
    # account and index are distinct path components: swapping them changes the key.
    assert a.address != Device.from_mnemonic(PHRASE, account=2, index=1).address
    # A BIP-39 passphrase gives other keys.
    assert a.address != Device.from_mnemonic(PHRASE, 1, 2, passphrase="x").address
    assert wallet.address_of(a.did) == a.address
    assert wallet.address_of(a.public_key) == a.address
    assert wallet.did_of(a.address) == a.did
    assert a.did_document()["id"] == a.did
    phrase = wallet.generate_mnemonic()
    assert len(phrase.split()) == 24
    Device.from_mnemonic(phrase)


def test_bad_keys_and_addresses_are_value_errors():
    with pytest.raises(ValueError, match="invalid BIP-39 mnemonic"):
        Device.from_mnemonic("abandon abandon")
    with pytest.raises(ValueError, match="expected 32"):
        Device(b"short")
    with pytest.raises(ValueError, match="address"):
        Device.generate().pay("tng1notanaddress", 1)


def test_pay_signs_in_sequence_and_refusals_burn_no_sequence_number():
    d = Device(bytes(range(32)), network_id=NET)
    to = Device.generate().address
    p = d.pay(to, 5, b"kWh")
    assert (p.kind, p.seq, p.issuer) == ("pay", 0, d.address)
    assert p.body == {"Pay": {"to": to, "amount": 5, "memo": b"kWh".hex()}}
    assert p.verify(NET) and not p.verify(NET + 1)
    assert len(p.signature) == 64 and len(p.id) == 64
    with pytest.raises(BuildError, match="amount must be greater than zero"):
        d.pay(to, 0)
    with pytest.raises(BuildError, match="memo is 65 bytes"):
        d.pay(to, 1, b"x" * 65)
    with pytest.raises(BuildError, match="recipient is the issuer itself"):
        d.pay(d.address, 1)
    assert d.next_seq == 1
    assert d.pay(to, 1, "text memo").seq == 1
    assert issubclass(BuildError, TangleError)


def test_pay_batch_equals_one_by_one_and_is_all_or_nothing():
    to = [Device.generate().address for _ in range(3)]
    a = Device(bytes(32), network_id=NET)
    b = Device(bytes(32), network_id=NET)
    batch = a.pay_batch([(to[i % 3], i + 1) for i in range(10)] + [(to[0], 3, b"m")])
    single = [b.pay(to[i % 3], i + 1) for i in range(10)] + [b.pay(to[0], 3, b"m")]
    assert batch == single
    assert [p.seq for p in batch] == list(range(11))
    with pytest.raises(BuildError, match="payment 1: amount must be greater than zero"):
        a.pay_batch([(to[0], 1), (to[0], 0)])
    assert a.next_seq == 11
    with pytest.raises(TypeError):
        a.pay_batch([to[0]])
    with pytest.raises(ValueError, match="address"):
        a.pay_batch([(to[0], 1), ("tng1bad", 1)])
    assert a.next_seq == 11


def test_payload_json_round_trip():
    d = Device.generate(network_id=NET)
    p = d.anchor("meter-7", wallet.hash_bytes(b"reading"))
    q = Payload.from_json(p.to_json())
    assert q == p and q.id == p.id
    with pytest.raises(ValueError, match="payload JSON"):
        Payload.from_json('{"issuer": 1}')


def test_ev_charging_channel_off_the_ledger(tmp_path):
    ev = Device.from_mnemonic(PHRASE, index=0, network_id=NET)
    charger = Device.from_mnemonic(PHRASE, index=1, network_id=NET)
    payer, open_ = ev.open_channel(charger.address, 100, 500)
    assert open_.kind == "open" and open_.channel_id == payer.id
    payee = PayeeChannel(NET, open_, charger.address, voucher_dir=tmp_path)
    assert payee.terms["deposit"] == 100 and payee.terms["payer"] == ev.address
    vouchers = [payer.voucher(3) for _ in range(10)]
    assert all(len(v) == wallet.VOUCHER_LEN for v in vouchers)
    assert [payee.accept(v) for v in vouchers] == [3] * 10
    assert payee.earned == 30 and payer.paid == 30 and payer.remaining == 70
    assert wallet.decode_voucher(payee.best)["amount"] == 30
    wallet.verify_voucher(payee.best, NET, ev.address)
    with pytest.raises(VoucherError, match="does not exceed"):
        payee.accept(vouchers[3])
    with pytest.raises(VoucherError, match="malformed"):
        payee.accept(b"\x01" * 10)
    with pytest.raises(VoucherError):
        wallet.verify_voucher(payee.best, NET + 1, ev.address)
    with pytest.raises(ChannelError, match="exceed the deposit"):
        payer.voucher(71)
    claim = payee.claim(charger, 12)
    assert claim.kind == "claim" and claim.body["Claim"]["amount"] == 30
    with pytest.raises(ChannelError, match="expired"):
        payee.claim(charger, 500)
    with pytest.raises(ChannelError, match="not this channel's payee"):
        payee.claim(ev, 12)
    # The best voucher survives a restart of the payee (voucher_dir).
    again = PayeeChannel.from_terms(NET, payee.terms, voucher_dir=tmp_path)
    assert again.earned == 30
    # The payer resumes from its saved state.
    resumed = wallet.PayerChannel.resume(ev, payer.state())
    assert resumed.paid == 30
    with pytest.raises(ChannelError, match="refund is possible from 501"):
        resumed.refund(ev, 499)
    assert resumed.refund(ev, 500).kind == "refund"


def test_anchors(tmp_path):
    f = tmp_path / "reading.json"
    f.write_bytes(b'{"kwh": 12.5}')
    digest = wallet.hash_file(f)
    assert digest == wallet.hash_bytes(f.read_bytes())
    p = Device.generate(network_id=NET).anchor(b"meter", digest)
    tag, anchored = wallet.anchored_digest(p)
    assert (tag, anchored) == (b"meter", digest)
    wallet.verify_file(f, anchored)
    wallet.verify_digest(anchored, digest.hex())
    f.write_bytes(b'{"kwh": 99}')
    with pytest.raises(AnchorError):
        wallet.verify_file(f, anchored)
    with pytest.raises(AnchorError):
        wallet.anchored_digest(Device.generate().pay(Device.generate().address, 1))
    with pytest.raises(BuildError, match="tag is 33 bytes"):
        Device.generate().anchor(b"t" * 33, digest)


def test_proof_verifier_refuses_a_bad_genesis():
    with pytest.raises(ValueError, match="genesis"):
        ProofVerifier("not = [toml")
