//! Machine-to-machine workloads that produce real `dag-core` payloads: plain payments,
//! smart meters, EV charging through payment channels, sensor anchors; plus the accounts the
//! attacks use. Devices follow a simple wallet rule: one payload in flight at a time, and
//! after a conflict they re-read their `seq` from the ledger.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use dag_core::crypto::{self, channel_id, voucher_signing_message};
use dag_core::{
    Address, Allocation, Body, ChannelId, ConflictReason, Digest, Genesis, Keypair, Ledger,
    NetworkId, PayloadOutcome, Signature, SignedPayload,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::scenario::{to_ticks, AttackConfig, Scenario};

/// What an account is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Payer,
    Meter,
    Ev,
    Charger,
    Sensor,
    Utility,
    Spammer,
    Attacker,
    Merchant,
    Accomplice,
}

/// One account and its wallet state.
#[derive(Debug)]
pub(crate) struct Device {
    pub(crate) addr: Address,
    pub(crate) role: Role,
    /// The seq its next payload carries.
    pub(crate) next_seq: u64,
    /// A payload is in flight (issued, not yet confirmed, conflicting or orphaned).
    pub(crate) busy: bool,
    /// Meters: tick of the last payment.
    pub(crate) last_paid: u64,
    /// Sensors: readings anchored so far.
    pub(crate) readings: u64,
}

/// Workload chosen for one honest arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WorkloadKind {
    Payment,
    Meter,
    Ev,
    Sensor,
    Empty,
}

/// State of an EV's charging session.
#[derive(Clone, Copy, Debug)]
enum EvState {
    Idle,
    /// Open issued; `kwh` will be charged once it applies.
    Opening {
        open_seq: u64,
        kwh: u64,
    },
    /// Channel open, charging until the session ends, then claimable.
    Charging {
        channel: ChannelId,
        amount: u64,
    },
    /// Claim issued by the charger.
    Claiming {
        channel: ChannelId,
        amount: u64,
    },
}

/// Counters of what the workloads did, reported in the summary.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkloadReport {
    /// Plain payments issued.
    pub payments: u64,
    /// Smart-meter payments issued.
    pub meter_payments: u64,
    /// Sensor anchors issued.
    pub anchors: u64,
    /// Channel opens issued.
    pub channel_opens: u64,
    /// Channel claims issued.
    pub channel_claims: u64,
    /// Channels claimed successfully (confirmed and applied).
    pub sessions_settled: u64,
    /// kWh paid through settled channels.
    pub kwh_settled: u64,
    /// Vouchers signed off-ledger (one per kWh).
    pub vouchers: u64,
    /// Vouchers verified by chargers (with `sign`).
    pub vouchers_verified: u64,
    /// Arrivals that found no idle device of their workload and carried no payload.
    pub no_idle_device: u64,
    /// Payload signatures verified on delivery (with `sign`).
    pub signatures_verified: u64,
    /// Payload signatures that failed verification (never expected).
    pub signature_failures: u64,
}

/// All accounts and the workload generators.
#[derive(Debug)]
pub(crate) struct Workloads {
    pub(crate) devices: Vec<Device>,
    /// Keys by device (kept apart so the hot device table stays small).
    keys: Vec<Option<Keypair>>,
    pub(crate) network_id: NetworkId,
    pub(crate) genesis: Genesis,
    sign: bool,
    weights: [f64; 5],
    idle_payers: Vec<u32>,
    idle_meters: Vec<u32>,
    idle_evs: Vec<u32>,
    idle_sensors: Vec<u32>,
    payers: Vec<u32>,
    utility: u32,
    /// EV i's charger is `charger_of[i]`; EV device ids are `evs[i]`.
    evs: Vec<u32>,
    charger_of: Vec<u32>,
    ev_state: Vec<EvState>,
    /// (claimable at tick, EV slot).
    ready: BinaryHeap<Reverse<(u64, u32)>>,
    pub(crate) spammer: u32,
    pub(crate) attackers: Vec<u32>,
    pub(crate) merchant: u32,
    pub(crate) accomplice: u32,
    max_payment: u64,
    price_per_kwh: u64,
    max_kwh: u64,
    session_ticks: u64,
    channel_milestones: u32,
    /// Amount each double-spend attacker owns and spends twice.
    pub(crate) ds_amount: u64,
    pub(crate) report: WorkloadReport,
}

/// Signature used when `sign` is off: the ledger does not re-verify payload signatures
/// (stage 1 does), so a constant is enough and saves the Ed25519 cost.
const DUMMY_SIGNATURE: Signature = Signature([0u8; 64]);

impl Workloads {
    /// Creates every account (keys from `rng`) and the genesis that funds them.
    pub(crate) fn new(sc: &Scenario, rng: &mut ChaCha8Rng) -> Workloads {
        let w = &sc.workload;
        let mut devices = Vec::new();
        let mut keys = Vec::new();
        let mut add = |role: Role, need_key: bool, rng: &mut ChaCha8Rng| -> u32 {
            let (addr, key) = if sc.sign || need_key {
                let mut seed = [0u8; 32];
                rng.fill(&mut seed);
                let k = Keypair::from_seed(&seed);
                (k.address(), Some(k))
            } else {
                let mut a = [0u8; 32];
                rng.fill(&mut a);
                (Address(a), None)
            };
            keys.push(key);
            devices.push(Device {
                addr,
                role,
                next_seq: 0,
                busy: false,
                last_paid: 0,
                readings: 0,
            });
            (devices.len() - 1) as u32
        };
        let payers: Vec<u32> = if w.payments > 0.0 {
            (0..w.devices)
                .map(|_| add(Role::Payer, false, rng))
                .collect()
        } else {
            Vec::new()
        };
        let meters: Vec<u32> = if w.meters > 0.0 {
            (0..w.meter_count)
                .map(|_| add(Role::Meter, false, rng))
                .collect()
        } else {
            Vec::new()
        };
        let utility = add(Role::Utility, false, rng);
        let (evs, charger_of): (Vec<u32>, Vec<u32>) = if w.ev > 0.0 {
            (0..w.ev_count)
                .map(|_| (add(Role::Ev, true, rng), add(Role::Charger, false, rng)))
                .unzip()
        } else {
            (Vec::new(), Vec::new())
        };
        let sensors: Vec<u32> = if w.sensors > 0.0 {
            (0..w.sensor_count)
                .map(|_| add(Role::Sensor, false, rng))
                .collect()
        } else {
            Vec::new()
        };
        let spammer = add(Role::Spammer, false, rng);
        let merchant = add(Role::Merchant, false, rng);
        let accomplice = add(Role::Accomplice, false, rng);
        let attempts = match sc.attack {
            Some(AttackConfig::DoubleSpend { attempts, .. }) => attempts,
            _ => 0,
        };
        let attackers: Vec<u32> = (0..attempts)
            .map(|_| add(Role::Attacker, false, rng))
            .collect();
        let ds_amount = 100;
        let committee_key = {
            let mut seed = [0u8; 32];
            rng.fill(&mut seed);
            Keypair::from_seed(&seed).address()
        };
        let allocations = devices
            .iter()
            .filter_map(|d| {
                let amount = match d.role {
                    Role::Payer | Role::Meter | Role::Ev => w.initial_balance,
                    Role::Attacker => ds_amount,
                    _ => 0,
                };
                (amount > 0).then_some(Allocation {
                    address: d.addr,
                    amount,
                })
            })
            .collect();
        let genesis = Genesis {
            network_name: format!("tangle-sim-{}", sc.seed),
            timestamp: 0,
            pow_difficulty: 0,
            timestamp_window_ms: 600_000,
            committee: vec![committee_key],
            threshold: 1,
            allocations,
        };
        let network_id = genesis.network_id();
        let weights = [w.payments, w.meters, w.ev, w.sensors, w.empty];
        let n_evs = evs.len();
        Workloads {
            devices,
            keys,
            network_id,
            genesis,
            sign: sc.sign,
            weights,
            idle_payers: payers.clone(),
            idle_meters: meters,
            idle_evs: evs.clone(),
            idle_sensors: sensors,
            payers,
            utility,
            evs,
            charger_of,
            ev_state: vec![EvState::Idle; n_evs],
            ready: BinaryHeap::new(),
            spammer,
            attackers,
            merchant,
            accomplice,
            max_payment: w.max_payment,
            price_per_kwh: w.price_per_kwh,
            max_kwh: w.max_kwh,
            session_ticks: to_ticks(w.session_duration),
            channel_milestones: w.channel_milestones.max(1),
            ds_amount,
            report: WorkloadReport::default(),
        }
    }

    /// The genesis ledger.
    pub(crate) fn ledger(&self) -> Ledger {
        Ledger::from_genesis(&self.genesis).expect("the simulator builds a valid genesis")
    }

    /// Picks the workload of an honest arrival by weight.
    pub(crate) fn pick_kind(&self, rng: &mut ChaCha8Rng) -> WorkloadKind {
        let total: f64 = self.weights.iter().sum();
        let mut u = rng.gen::<f64>() * total;
        const KINDS: [WorkloadKind; 5] = [
            WorkloadKind::Payment,
            WorkloadKind::Meter,
            WorkloadKind::Ev,
            WorkloadKind::Sensor,
            WorkloadKind::Empty,
        ];
        for (k, w) in KINDS.iter().zip(self.weights) {
            if u < w {
                return *k;
            }
            u -= w;
        }
        WorkloadKind::Empty
    }

    /// Builds a payload for `device` with its next seq (signed for real with `sign`).
    pub(crate) fn payload(&self, device: u32, seq: u64, body: Body) -> Box<SignedPayload> {
        let d = &self.devices[device as usize];
        match (&self.keys[device as usize], self.sign) {
            (Some(k), true) => Box::new(SignedPayload::sign(k, self.network_id, seq, body)),
            _ => Box::new(SignedPayload {
                issuer: d.addr,
                seq,
                body,
                signature: DUMMY_SIGNATURE,
            }),
        }
    }

    fn take_idle(list: &mut Vec<u32>, rng: &mut ChaCha8Rng) -> Option<u32> {
        if list.is_empty() {
            return None;
        }
        let i = rng.gen_range(0..list.len());
        Some(list.swap_remove(i))
    }

    /// The payload of an honest arrival of workload `kind`, and its issuer, if a device of
    /// that workload is idle. `cmi` is the wallet's view of the confirmed milestone.
    pub(crate) fn generate(
        &mut self,
        kind: WorkloadKind,
        now: u64,
        cmi: u32,
        rng: &mut ChaCha8Rng,
    ) -> Option<(u32, Box<SignedPayload>)> {
        let (dev, body) = match kind {
            WorkloadKind::Empty => return None,
            WorkloadKind::Payment => {
                let Some(dev) = Self::take_idle(&mut self.idle_payers, rng) else {
                    self.report.no_idle_device += 1;
                    return None;
                };
                let mut to = self.payers[rng.gen_range(0..self.payers.len())];
                if to == dev {
                    to = self.payers[(self.payers.iter().position(|&p| p == dev).unwrap_or(0) + 1)
                        % self.payers.len()];
                }
                self.report.payments += 1;
                let body = Body::Pay {
                    to: self.devices[to as usize].addr,
                    amount: rng.gen_range(1..=self.max_payment),
                    memo: Vec::new(),
                };
                (dev, body)
            }
            WorkloadKind::Meter => {
                let Some(dev) = Self::take_idle(&mut self.idle_meters, rng) else {
                    self.report.no_idle_device += 1;
                    return None;
                };
                let d = &mut self.devices[dev as usize];
                // Consumption since the last payment: about 1 unit per time unit, at least 1.
                let elapsed = now.saturating_sub(d.last_paid);
                let amount = (elapsed / to_ticks(1.0).max(1)).max(1);
                d.last_paid = now;
                self.report.meter_payments += 1;
                let body = Body::Pay {
                    to: self.devices[self.utility as usize].addr,
                    amount,
                    memo: b"meter".to_vec(),
                };
                (dev, body)
            }
            WorkloadKind::Sensor => {
                let Some(dev) = Self::take_idle(&mut self.idle_sensors, rng) else {
                    self.report.no_idle_device += 1;
                    return None;
                };
                let d = &mut self.devices[dev as usize];
                d.readings += 1;
                let reading: u64 = rng.gen();
                let digest = crypto::blake2b256_parts(&[
                    &d.addr.0,
                    &d.readings.to_le_bytes(),
                    &reading.to_le_bytes(),
                ]);
                self.report.anchors += 1;
                let body = Body::Anchor {
                    tag: b"temp".to_vec(),
                    digest: Digest(digest),
                };
                (dev, body)
            }
            WorkloadKind::Ev => return self.generate_ev(now, cmi, rng),
        };
        let d = &mut self.devices[dev as usize];
        d.busy = true;
        let seq = d.next_seq;
        Some((dev, self.payload(dev, seq, body)))
    }

    /// EV workload: claim a finished session if one is ready, else open a new one.
    fn generate_ev(
        &mut self,
        now: u64,
        cmi: u32,
        rng: &mut ChaCha8Rng,
    ) -> Option<(u32, Box<SignedPayload>)> {
        if let Some(&Reverse((at, slot))) = self.ready.peek() {
            if at <= now {
                self.ready.pop();
                let slot = slot as usize;
                let EvState::Charging { channel, amount } = self.ev_state[slot] else {
                    return None;
                };
                let ev = self.evs[slot];
                let charger = self.charger_of[slot];
                let key = self.keys[ev as usize]
                    .clone()
                    .expect("EVs always have keys");
                // Off-ledger: one voucher per kWh, each for the cumulative amount. The charger
                // keeps only the last; with `sign` every voucher is signed and verified.
                let kwh = amount / self.price_per_kwh;
                self.report.vouchers += kwh;
                let voucher = if self.sign {
                    let mut last = DUMMY_SIGNATURE;
                    for unit in 1..=kwh {
                        let msg = voucher_signing_message(
                            self.network_id,
                            &channel,
                            unit * self.price_per_kwh,
                        );
                        last = key.sign(&msg);
                        if crypto::verify(&self.devices[ev as usize].addr, &msg, &last).is_ok() {
                            self.report.vouchers_verified += 1;
                        }
                    }
                    last
                } else {
                    key.sign(&voucher_signing_message(self.network_id, &channel, amount))
                };
                self.ev_state[slot] = EvState::Claiming { channel, amount };
                let c = &mut self.devices[charger as usize];
                c.busy = true;
                let seq = c.next_seq;
                self.report.channel_claims += 1;
                let body = Body::Claim {
                    channel,
                    amount,
                    voucher,
                };
                return Some((charger, self.payload(charger, seq, body)));
            }
        }
        let Some(ev) = Self::take_idle(&mut self.idle_evs, rng) else {
            self.report.no_idle_device += 1;
            return None;
        };
        let slot = self.evs.iter().position(|&e| e == ev).unwrap_or(0);
        let kwh = rng.gen_range(1..=self.max_kwh);
        let d = &mut self.devices[ev as usize];
        d.busy = true;
        let seq = d.next_seq;
        self.ev_state[slot] = EvState::Opening { open_seq: seq, kwh };
        self.report.channel_opens += 1;
        let body = Body::Open {
            payee: self.devices[self.charger_of[slot] as usize].addr,
            deposit: self.max_kwh * self.price_per_kwh,
            expires_at: cmi.saturating_add(self.channel_milestones),
        };
        Some((ev, self.payload(ev, seq, body)))
    }

    /// Slot of an EV (device id) or of an EV's charger.
    fn ev_slot(&self, device: u32) -> Option<usize> {
        match self.devices[device as usize].role {
            Role::Ev => self.evs.iter().position(|&e| e == device),
            Role::Charger => self.charger_of.iter().position(|&c| c == device),
            _ => None,
        }
    }

    /// Makes a device idle again (back into its pool).
    fn release(&mut self, device: u32) {
        let d = &mut self.devices[device as usize];
        if !d.busy {
            return;
        }
        d.busy = false;
        match d.role {
            Role::Payer => self.idle_payers.push(device),
            Role::Meter => self.idle_meters.push(device),
            Role::Sensor => self.idle_sensors.push(device),
            Role::Ev => self.idle_evs.push(device),
            _ => {}
        }
    }

    /// The observer node confirmed `payload` of `device` with `outcome`.
    pub(crate) fn on_outcome(
        &mut self,
        device: u32,
        payload: &SignedPayload,
        outcome: PayloadOutcome,
        now: u64,
        ledger: &Ledger,
    ) {
        let role = self.devices[device as usize].role;
        match outcome {
            PayloadOutcome::Applied => {
                let d = &mut self.devices[device as usize];
                d.next_seq = d.next_seq.max(payload.seq + 1);
            }
            PayloadOutcome::Conflicting(reason) => {
                let d = &mut self.devices[device as usize];
                if matches!(
                    reason,
                    ConflictReason::SeqAlreadyUsed | ConflictReason::SeqGap
                ) && role != Role::Spammer
                {
                    d.next_seq = ledger.next_seq(&d.addr);
                }
            }
        }
        let slot = self.ev_slot(device);
        match (role, slot, &payload.body) {
            (Role::Ev, Some(slot), Body::Open { .. }) => {
                if let EvState::Opening { open_seq, kwh } = self.ev_state[slot] {
                    if outcome.is_applied() && open_seq == payload.seq {
                        let channel = channel_id(&payload.issuer, open_seq);
                        self.ev_state[slot] = EvState::Charging {
                            channel,
                            amount: kwh * self.price_per_kwh,
                        };
                        self.ready
                            .push(Reverse((now + self.session_ticks, slot as u32)));
                        // The EV stays busy until its session is claimed.
                        self.devices[device as usize].busy = true;
                        return;
                    }
                    self.ev_state[slot] = EvState::Idle;
                }
                self.release(device);
            }
            (Role::Charger, Some(slot), Body::Claim { .. }) => {
                if let EvState::Claiming { amount, .. } = self.ev_state[slot] {
                    if outcome.is_applied() {
                        self.report.sessions_settled += 1;
                        self.report.kwh_settled += amount / self.price_per_kwh;
                    }
                }
                self.ev_state[slot] = EvState::Idle;
                self.devices[device as usize].busy = false;
                let ev = self.evs[slot];
                self.release(ev);
            }
            _ => self.release(device),
        }
    }

    /// A payload of `device` was never confirmed before it settled (orphaned): the wallet
    /// gives up on it and reuses its seq.
    pub(crate) fn on_orphan(&mut self, device: u32, payload: &SignedPayload, now: u64) {
        let role = self.devices[device as usize].role;
        let slot = self.ev_slot(device);
        match (role, slot, &payload.body) {
            (Role::Ev, Some(slot), Body::Open { .. }) => {
                self.ev_state[slot] = EvState::Idle;
                self.release(device);
            }
            (Role::Charger, Some(slot), Body::Claim { .. }) => {
                // Try the claim again with the next EV arrival.
                if let EvState::Claiming { channel, amount } = self.ev_state[slot] {
                    self.ev_state[slot] = EvState::Charging { channel, amount };
                    self.ready.push(Reverse((now, slot as u32)));
                }
                self.devices[device as usize].busy = false;
            }
            _ => self.release(device),
        }
    }
}
