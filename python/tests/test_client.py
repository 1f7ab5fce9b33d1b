"""tangle.client against a real `tangle-node dev`: the EV pay-per-kWh flow from Python, the
proof of the claim checked against the genesis committee, error codes as exceptions, the
event stream."""

from __future__ import annotations

import re

import pytest

from tangle import client as tc
from tangle import wallet
from tangle.wallet import Device, PayeeChannel, ProofVerifier

PHRASE = " ".join(["legal", "winner", "thank", "year", "wave", "sausage", "worth", "useful",
                   "legal", "winner", "thank", "yellow"])
EV_FUNDS = 10_000
PRICE_PER_KWH = 25
SESSION_KWH = 50
DEPOSIT = 1_500


@pytest.fixture(scope="module")
def node(dev_node):
    return dev_node


@pytest.fixture(scope="module")
def client(node):
    return tc.NodeClient(node.url)


def test_ev_pays_a_charger_per_kwh_through_a_channel(node, client):
    info = client.info()
    net = info["network_id"]
    assert net == node.network_id and info["faucet"]
    ev = Device.from_mnemonic(PHRASE, account=0, index=0, network_id=net)
    charger = Device.from_mnemonic(PHRASE, account=0, index=1, network_id=net)

    funded = client.faucet(ev.address, EV_FUNDS)
    assert client.wait_final(funded["payload_id"])["status"] == "confirmed"
    assert client.account(ev.address)["balance"] == EV_FUNDS
    ev.resync(client.account(ev.address)["next_seq"])

    # The EV opens a channel on the ledger.
    expires_at = client.info()["confirmed_milestone"] + 10_000
    payer, open_ = ev.open_channel(charger.address, DEPOSIT, expires_at)
    opened = client.submit_and_wait(open_)
    assert opened["status"] == "confirmed" and opened["payload_id"] == open_.id
    on_ledger = client.channel(payer.id)
    assert (on_ledger["payer"], on_ledger["payee"]) == (ev.address, charger.address)
    assert on_ledger["deposit"] == DEPOSIT and not on_ledger["closed"]

    # The charger reads the Open from the node and sets up its end.
    fetched = client.signed_payload(open_.id)
    assert fetched == open_
    payee = PayeeChannel(net, fetched, charger.address)

    # Off the ledger: one voucher per kWh, delivered as bytes.
    for _ in range(SESSION_KWH):
        assert payee.accept(payer.voucher(PRICE_PER_KWH)) == PRICE_PER_KWH
    owed = PRICE_PER_KWH * SESSION_KWH
    assert payee.earned == owed

    # On the ledger again: one claim for the total.
    claim = payee.claim(charger, client.info()["confirmed_milestone"])
    claimed = client.submit_and_wait(claim)
    assert claimed["status"] == "confirmed"
    assert client.account(charger.address)["balance"] == owed
    assert client.account(ev.address)["balance"] == EV_FUNDS - owed
    closed = client.channel(payer.id)
    assert closed["closed"] and closed["claimed"] == owed

    # The charger keeps a proof of the claim, checked against the genesis committee only.
    proof = client.payload_proof(claim.id)
    verifier = ProofVerifier.from_file(node.genesis)
    proven = verifier.verify(proof)
    assert proven["applied"] and proven["payload_id"] == claim.id
    assert proven["payload"] == claim
    assert proven["milestone"] == claimed["milestone"]
    # A proof with one byte changed, or checked against another committee, does not hold.
    tx = proof["transaction"]
    i = len(tx) // 2
    tampered = dict(proof, transaction=tx[:i] + ("1" if tx[i] != "1" else "2") + tx[i + 1 :])
    with pytest.raises(wallet.ProofError):
        verifier.verify(tampered)
    text = node.genesis.read_text()
    committee = re.search(r'committee = \["(tng1[0-9a-z]+)"\]', text)
    assert committee is not None, text
    other = text.replace(committee.group(1), Device.generate().address)
    with pytest.raises(wallet.ProofError):
        ProofVerifier(other).verify(proof)


def test_api_errors_map_to_exceptions(node, client):
    with pytest.raises(tc.NotFound, match="not found"):
        client.channel("00" * 32)
    with pytest.raises(tc.NotFound):
        client.payload("11" * 32)
    d = Device.generate(network_id=node.network_id + 1)
    with pytest.raises(tc.Invalid):
        client.submit(d.pay(Device.generate().address, 1))
    # A second payload with a sequence number the ledger applied already.
    payer = Device.generate(network_id=node.network_id)
    first = client.faucet(payer.address, 100)
    client.wait_final(first["payload_id"])
    client.submit_and_wait(payer.pay(Device.generate().address, 1))
    stale = payer
    stale.resync(0)
    with pytest.raises(tc.Conflict):
        client.submit(stale.pay(Device.generate().address, 2))
    assert issubclass(tc.Conflict, tc.ClientError)
    with pytest.raises(ValueError, match="invalid node URL"):
        tc.NodeClient("ftp://nowhere")
    with pytest.raises(ValueError, match="payload id"):
        client.payload("xyz")
    # Port 1: nothing listens there, and no other test can take it.
    with pytest.raises(tc.Unreachable):
        tc.NodeClient("http://127.0.0.1:1", retries=0).info()


def test_event_stream_delivers_a_payloads_final_status(node, client):
    events = client.events(timeout=30)
    receipt = client.faucet(Device.generate().address, 5)
    last_id = None
    with events:
        for _, ev in zip(range(100_000), events):
            data = ev["data"]
            last_id = ev["id"]
            if data.get("type") == "payload" and data.get("payload_id") == receipt["payload_id"]:
                assert data["status"] == "confirmed"
                break
        else:
            pytest.fail("the stream ended without the payload's event")
    assert isinstance(last_id, int)
    # Resuming after an id replays from the next one.
    with client.events(last_event_id=last_id - 1, timeout=30) as again:
        assert next(again)["id"] == last_id
