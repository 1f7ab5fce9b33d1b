//! The `tangle-wallet` command line (feature `cli`); the binary calls [`main`].
//!
//! ```text
//! tangle-wallet [--keystore PATH] [--node URL] [--json] [--wait-timeout SECS] <command>
//! ```
//! The keystore password comes from `TANGLE_WALLET_PASSWORD` when set, else from a prompt.
//! `--keystore` defaults to `$TANGLE_WALLET_KEYSTORE`, else `~/.tangle-wallet/keystore.json`;
//! `--node` to `$TANGLE_NODE_URL`, else `http://127.0.0.1:14265`.
//!
//! Human output by default; with `--json` one JSON object (an array for `history`) on
//! stdout. Errors go to stderr as `tangle-wallet: error: ...`.
//!
//! Exit codes: 0 success; 1 error (keystore, node, input, I/O); 2 usage; 3 a payload waited
//! for with `--wait` was conflicting (not applied); 4 a verification failed: `verify-anchor`
//! (the file does not match, or the anchor is not confirmed), `proof`/`verify-proof`, or the
//! proof of confirmation behind a `--wait` (the node said "confirmed" but could not prove it).
//!
//! Trust: `--wait` and `verify-anchor` do not take the node's word for a confirmation. They
//! fetch the payload's proof (`GET /api/v1/payloads/{id}/proof`) and check it against the
//! committee of the network's genesis: `--genesis FILE` (or `TANGLE_GENESIS`), else the copy
//! `init --genesis FILE` pinned next to the keystore. Without either they refuse to run,
//! unless `--trust-node` says to believe the node.
//!
//! Layout: this file holds the arguments, the errors, the context shared by the commands and
//! the commands but `channel`; `channel` the channel subcommands, `output` the human and JSON
//! output, `local` the files kept next to the keystore.

mod channel;
mod local;
mod output;

use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use dag_core::{Address, Genesis, PayloadId, SignedPayload};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::anchor::{anchored_digest, hash_file, AnchorError};
use crate::channel::{ClaimError, PayeeSetupError, PayerError, VoucherError};
use crate::client::{
    ClientError, NodeClient, NodeInfo, PayloadStatus, Receipt, SyncError, DEFAULT_NODE_URL,
};
use crate::device::{BuildError, Device};
use crate::keys::Mnemonic;
use crate::keystore::{KdfParams, Keystore, KeystoreError, KeystoreOptions};
use crate::proof as wallet_proof;
use crate::Proven;
use channel::ChannelCommand;
use local::HistoryEntry;
use output::{emit, with_status};

/// Device key index the CLI signs with.
const DEVICE: u32 = 0;

#[derive(Parser, Debug)]
#[command(
    name = "tangle-wallet",
    version,
    about = "Device wallet for the tangle: keys, payments, pay-per-use channels, data anchors"
)]
struct Cli {
    /// Keystore file [default: ~/.tangle-wallet/keystore.json].
    #[arg(long, global = true, env = "TANGLE_WALLET_KEYSTORE")]
    keystore: Option<PathBuf>,
    /// Node API URL.
    #[arg(long, global = true, env = "TANGLE_NODE_URL", default_value = DEFAULT_NODE_URL)]
    node: String,
    /// Print one JSON object (scripts) instead of human text.
    #[arg(long, global = true)]
    json: bool,
    /// How long `--wait` waits for confirmation, in seconds.
    #[arg(long, global = true, default_value_t = 120)]
    wait_timeout: u64,
    /// The network's genesis file (TOML, as `tangle-node init` writes it): its committee
    /// checks proofs [default: the copy `init --genesis` pinned next to the keystore].
    #[arg(long, global = true, env = "TANGLE_GENESIS")]
    genesis: Option<PathBuf>,
    /// Take the node's word that a payload is confirmed (`--wait`, `verify-anchor`) instead
    /// of checking a proof against the committee.
    #[arg(long, global = true)]
    trust_node: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a keystore with a new key (refuses to overwrite one).
    Init {
        /// Network id to sign for [default: the node's, from /api/v1/info].
        #[arg(long)]
        network_id: Option<u64>,
        /// Restore from a BIP-39 phrase read from stdin (one line) instead of a new one.
        #[arg(long)]
        restore: bool,
        /// Also print the backup phrase in --json output.
        #[arg(long)]
        show_mnemonic: bool,
        /// Argon2id memory cost of the keystore key, KiB (lower it on devices with little
        /// RAM; every unlock needs this much memory).
        #[arg(long, default_value_t = KdfParams::default().m_cost_kib)]
        kdf_memory_kib: u32,
        /// Argon2id iterations.
        #[arg(long, default_value_t = KdfParams::default().t_cost)]
        kdf_iterations: u32,
    },
    /// Print the address (bech32) and its did:key.
    Address,
    /// Print the confirmed balance and next sequence number.
    Balance {
        /// Read them from a proof against the milestone's state root, checked with the
        /// committee's keys (--genesis or the pinned copy), not from the node's word; prints
        /// the milestone. Exit 4 if the proof does not hold.
        #[arg(long)]
        prove: bool,
    },
    /// Pay AMOUNT to TO (bech32 address or did:key).
    Pay {
        /// Recipient, `tng1...` or `did:key:z6Mk...`.
        to: Address,
        /// Amount in base units.
        amount: u64,
        /// Memo (UTF-8, at most 64 bytes).
        #[arg(long, default_value = "")]
        memo: String,
        /// Wait until confirmed or conflicting (exit 3 on conflict).
        #[arg(long)]
        wait: bool,
    },
    /// Pay-per-use channels.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Anchor a file's BLAKE2b-256 digest on the ledger.
    Anchor {
        /// The file.
        file: PathBuf,
        /// Tag (at most 32 bytes).
        #[arg(long, default_value = "")]
        tag: String,
        /// Wait until confirmed or conflicting (exit 3 on conflict).
        #[arg(long)]
        wait: bool,
    },
    /// Check a file against an anchor payload (exit 4 if it does not match or is not
    /// confirmed). Needs no keystore.
    VerifyAnchor {
        /// The file.
        file: PathBuf,
        /// The anchor's payload id.
        payload_id: PayloadId,
    },
    /// Fetch the proof that a payload was confirmed (and applied) and check it against the
    /// committee of the genesis, trusting nothing the node says (exit 4 if it fails or the
    /// payload was not applied). Needs no keystore.
    Proof {
        /// The payload id.
        payload_id: PayloadId,
        /// Also save the proof (JSON) to this file, to check it later offline.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a saved proof offline against the committee of the genesis (exit 4 if it fails
    /// or the payload was not applied).
    VerifyProof {
        /// The proof file (JSON, from `proof --out` or `GET /api/v1/payloads/{id}/proof`).
        file: PathBuf,
    },
    /// Payloads this keystore issued (kept in a local file next to it).
    History {
        /// Ask the node for each payload's current status.
        #[arg(long)]
        status: bool,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// Bad input or state the user can fix.
    #[error("{0}")]
    Input(String),
    /// The password could not be read.
    #[error("{0}")]
    Password(String),
    /// Keystore.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// Node request.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Building a payload.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Payer side of a channel.
    #[error(transparent)]
    Payer(#[from] PayerError),
    /// A voucher was refused.
    #[error("voucher refused: {0}")]
    Voucher(#[from] VoucherError),
    /// A claim could not be built.
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// Payee channel setup.
    #[error(transparent)]
    PayeeSetup(#[from] PayeeSetupError),
    /// Anchor.
    #[error(transparent)]
    Anchor(#[from] AnchorError),
    /// Local file.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        source: io::Error,
    },
    /// A waited-for payload was confirmed but not applied.
    #[error("payload {payload_id} is conflicting: {reason}")]
    Conflicting {
        /// The payload.
        payload_id: PayloadId,
        /// The ledger's reason.
        reason: String,
    },
    /// `verify-anchor` found no valid, confirmed anchor of the file.
    #[error("anchor verification failed: {0}")]
    VerifyFailed(String),
    /// The node said a payload was confirmed but did not prove it.
    #[error("{0}")]
    Unproven(String),
}

impl From<SyncError> for CliError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Client(e) => CliError::Client(e),
            SyncError::Keystore(e) => CliError::Keystore(e),
        }
    }
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Conflicting { .. } => 3,
            CliError::VerifyFailed(_) | CliError::Unproven(_) => 4,
            _ => 1,
        }
    }
}

/// Why a verified proof does not show what the caller needs (payload `expect`, when given,
/// applied), or why it failed to verify; `None` if it shows it.
fn proof_problem(
    result: &Result<Proven, wallet_proof::ProofError>,
    expect: Option<PayloadId>,
) -> Option<String> {
    match result {
        Err(e) => Some(format!("the proof does not hold: {e}")),
        Ok(p) if expect.is_some() && p.payload_id != expect => Some(format!(
            "the proof is about another payload ({:?}) than {}",
            p.payload_id.map(|i| i.to_hex()),
            expect.map(|i| i.to_hex()).unwrap_or_default()
        )),
        Ok(p) if !p.applied => Some(format!(
            "transaction {} was confirmed by milestone {}, but its payload was not applied \
             (conflicting)",
            p.transaction_id, p.milestone
        )),
        Ok(_) => None,
    }
}

/// Reads and parses a genesis file.
fn read_genesis(path: &Path) -> Result<Genesis, CliError> {
    let text =
        std::fs::read_to_string(path).map_err(io_err(format!("reading {}", path.display())))?;
    toml::from_str(&text)
        .map_err(|e| CliError::Input(format!("{} is not a genesis: {e}", path.display())))
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> CliError {
    let what = what.into();
    move |source| CliError::Io { what, source }
}

/// Runs the CLI on the process arguments and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let mut ctx = Ctx { cli, client: None };
    match ctx.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !json || !matches!(e, CliError::VerifyFailed(_)) {
                eprintln!("tangle-wallet: error: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

struct Ctx {
    cli: Cli,
    client: Option<NodeClient>,
}

/// The error for a final conflicting status, if it is one.
fn check_final(receipt: &Receipt, status: &Option<PayloadStatus>) -> Result<(), CliError> {
    match status {
        Some(PayloadStatus::Conflicting { reason, .. }) => Err(CliError::Conflicting {
            payload_id: receipt.payload_id,
            reason: reason.clone(),
        }),
        _ => Ok(()),
    }
}

fn read_password(confirm: bool) -> Result<Zeroizing<String>, CliError> {
    if let Ok(p) = std::env::var("TANGLE_WALLET_PASSWORD") {
        if confirm && p.is_empty() {
            return Err(CliError::Password(
                "TANGLE_WALLET_PASSWORD is empty; a keystore needs a password".into(),
            ));
        }
        return Ok(Zeroizing::new(p));
    }
    let prompt = |text: &str| {
        rpassword::prompt_password(text)
            .map(Zeroizing::new)
            .map_err(|e| {
                CliError::Password(format!(
                    "cannot read the password from the terminal ({e}); set TANGLE_WALLET_PASSWORD"
                ))
            })
    };
    let p = prompt("Keystore password: ")?;
    if confirm {
        if p.is_empty() {
            return Err(CliError::Password("empty password".into()));
        }
        if *prompt("Repeat password: ")? != *p {
            return Err(CliError::Password("passwords do not match".into()));
        }
    }
    Ok(p)
}

impl Ctx {
    fn client(&mut self) -> Result<&NodeClient, CliError> {
        if self.client.is_none() {
            self.client = Some(NodeClient::new(&self.cli.node)?);
        }
        Ok(self.client.as_ref().expect("just set"))
    }

    fn keystore_path(&self) -> Result<PathBuf, CliError> {
        if let Some(p) = &self.cli.keystore {
            return Ok(p.clone());
        }
        match std::env::var_os("HOME") {
            Some(home) if !home.is_empty() => {
                Ok(PathBuf::from(home).join(".tangle-wallet/keystore.json"))
            }
            _ => Err(CliError::Input(
                "no keystore path: pass --keystore or set TANGLE_WALLET_KEYSTORE".into(),
            )),
        }
    }

    fn open_keystore(&self) -> Result<Keystore, CliError> {
        let path = self.keystore_path()?;
        if !path.exists() {
            return Err(CliError::Input(format!(
                "no keystore at {}; create one with `tangle-wallet init`",
                path.display()
            )));
        }
        let password = read_password(false)?;
        Ok(Keystore::open(&path, &password)?)
    }

    /// The node's info, checked to be of the keystore's network.
    fn node_for(&mut self, ks: &Keystore) -> Result<NodeInfo, CliError> {
        let url = self.cli.node.clone();
        let info = self.client()?.info()?;
        if info.network_id != ks.network_id() {
            return Err(CliError::Input(format!(
                "the keystore signs for network {} but the node at {url} runs network {} ({:?})",
                ks.network_id(),
                info.network_id,
                info.network_name
            )));
        }
        Ok(info)
    }

    /// The genesis whose committee checks proofs: `--genesis` (or `TANGLE_GENESIS`), else
    /// the copy pinned next to the keystore by `init --genesis`, else none.
    fn genesis(&self) -> Result<Option<Genesis>, CliError> {
        let path = match &self.cli.genesis {
            Some(p) => p.clone(),
            None => match self.keystore_path() {
                Ok(ks) if local::genesis_path(&ks).exists() => local::genesis_path(&ks),
                _ => return Ok(None),
            },
        };
        read_genesis(&path).map(Some)
    }

    /// [`genesis`](Self::genesis), required by `command`.
    fn required_genesis(&self, command: &str) -> Result<Genesis, CliError> {
        self.genesis()?.ok_or_else(|| {
            CliError::Input(format!(
                "`{command}` checks against the network's committee: pass --genesis FILE (or \
                 set TANGLE_GENESIS), or pin one with `init --genesis FILE`"
            ))
        })
    }

    /// What checks a confirmation before it is reported: the genesis, or `None` with
    /// `--trust-node`. Asked before anything is submitted, so a missing genesis fails early.
    fn verifier(&self, command: &str) -> Result<Option<Genesis>, CliError> {
        if self.cli.trust_node {
            return Ok(None);
        }
        self.genesis()?.map(Some).ok_or_else(|| {
            CliError::Input(format!(
                "`{command}` checks the node's \"confirmed\" against a proof signed by the \
                 committee: pass --genesis FILE (or set TANGLE_GENESIS, or pin one with `init \
                 --genesis FILE`), or --trust-node to take the node's word"
            ))
        })
    }

    /// The committee rotations the node serves (checked from the genesis by the proof
    /// verification, so the node cannot make one up); none from a node that serves none.
    fn rotations(&mut self) -> Result<Vec<dag_core::Rotation>, CliError> {
        Ok(self.client()?.committee_rotations().unwrap_or_default())
    }

    /// Fetches the proof of payload `id`, said to be confirmed, and checks it against the
    /// committee of `genesis`: the node must prove that a milestone applied exactly this
    /// payload ([`CliError::Unproven`] otherwise).
    fn prove_applied(&mut self, genesis: &Genesis, id: &PayloadId) -> Result<Proven, CliError> {
        let proof = match self.client()?.payload_proof(id) {
            Ok(p) => p,
            Err(e) => {
                return Err(CliError::Unproven(format!(
                    "the node says payload {id} is confirmed but serves no proof of it: {e}"
                )))
            }
        };
        let rotations = self.rotations()?;
        let result = crate::verify_proof_with_rotations(&proof, genesis, &rotations);
        match proof_problem(&result, Some(*id)) {
            Some(why) => Err(CliError::Unproven(format!(
                "the node says payload {id} is confirmed, but {why}"
            ))),
            None => result.map_err(|e| CliError::Unproven(e.to_string())),
        }
    }

    /// Syncs the sequence number, builds and signs a payload with `build`, records it
    /// (keystore counter, history), submits it and, with `wait`, waits for its final status;
    /// a confirmation is then checked against a proof signed by the committee (unless
    /// `--trust-node`).
    fn issue(
        &mut self,
        ks: &mut Keystore,
        build: impl FnOnce(&mut Device) -> Result<SignedPayload, CliError>,
        wait: bool,
    ) -> Result<(Receipt, Option<PayloadStatus>), CliError> {
        let path = ks.path().to_path_buf();
        let issued: Vec<(u64, PayloadId)> = local::read_history(&path)
            .map_err(io_err("reading the history"))?
            .into_iter()
            .map(|e| (e.seq, e.payload_id))
            .collect();
        let timeout = Duration::from_secs(self.cli.wait_timeout);
        let verifier = if wait { self.verifier("--wait")? } else { None };
        let client = self.client()?;
        client.sync_seq(ks, DEVICE, &issued)?;
        let mut device = ks.device(DEVICE);
        let payload = build(&mut device)?;
        ks.set_next_seq(DEVICE, device.next_seq())?;
        local::append_history(&path, &HistoryEntry::of(&payload))
            .map_err(io_err("writing the history"))?;
        let receipt = client.submit(&payload)?;
        let status = if wait {
            Some(client.wait_final(&receipt.payload_id, timeout)?)
        } else {
            None
        };
        if let (Some(genesis), Some(PayloadStatus::Confirmed { .. })) = (&verifier, &status) {
            self.prove_applied(genesis, &receipt.payload_id)?;
        }
        Ok((receipt, status))
    }

    fn run(&mut self) -> Result<(), CliError> {
        let json = self.cli.json;
        match &self.cli.command {
            Command::Init {
                network_id,
                restore,
                show_mnemonic,
                kdf_memory_kib,
                kdf_iterations,
            } => {
                let (network_id, restore, show) = (*network_id, *restore, *show_mnemonic);
                let kdf = KdfParams {
                    m_cost_kib: *kdf_memory_kib,
                    t_cost: *kdf_iterations,
                    ..KdfParams::default()
                };
                self.init(network_id, restore, show, kdf)
            }
            Command::Address => {
                let ks = self.open_keystore()?;
                let d = ks.device(DEVICE);
                let (address, did) = (d.address().to_bech32(), d.did());
                emit(
                    json,
                    || format!("address: {address}\ndid:     {did}"),
                    json!({"address": address, "did": did}),
                );
                Ok(())
            }
            Command::Balance { prove: true } => {
                let genesis = self.required_genesis("balance --prove")?;
                let ks = self.open_keystore()?;
                self.node_for(&ks)?;
                let address = ks.device(DEVICE).address();
                let proof = self.client()?.account_proof(&address)?;
                let rotations = self.rotations()?;
                let proven = crate::verify_state_proof_with_rotations(&proof, &genesis, &rotations)
                    .map_err(|e| {
                        CliError::Unproven(format!("the node's account proof does not hold: {e}"))
                    })?;
                let acct = match proven.entry {
                    crate::StateEntry::Account {
                        address: a,
                        account,
                    } if a == address => account.unwrap_or_default(),
                    other => {
                        return Err(CliError::Unproven(format!(
                            "the node proved another entry ({other:?}) than account {address}"
                        )))
                    }
                };
                emit(
                    json,
                    || {
                        format!(
                            "balance:  {}\nnext_seq: {}\nproven:   milestone {} ({})",
                            acct.balance, acct.next_seq, proven.milestone, proven.milestone_id
                        )
                    },
                    json!({"balance": acct.balance, "next_seq": acct.next_seq,
                           "milestone": proven.milestone,
                           "milestone_id": proven.milestone_id.to_string()}),
                );
                Ok(())
            }
            Command::Balance { prove: false } => {
                let ks = self.open_keystore()?;
                self.node_for(&ks)?;
                let acct = self.client()?.account(&ks.device(DEVICE).address())?;
                emit(
                    json,
                    || format!("balance:  {}\nnext_seq: {}", acct.balance, acct.next_seq),
                    json!({"balance": acct.balance, "next_seq": acct.next_seq}),
                );
                Ok(())
            }
            Command::Pay {
                to,
                amount,
                memo,
                wait,
            } => {
                let (to, amount, memo, wait) = (*to, *amount, memo.clone(), *wait);
                let mut ks = self.open_keystore()?;
                self.node_for(&ks)?;
                let (r, status) =
                    self.issue(&mut ks, |d| Ok(d.pay(to, amount, memo.as_bytes())?), wait)?;
                emit(
                    json,
                    || {
                        with_status(
                            format!("paid {amount} to {to}\npayload: {}", r.payload_id),
                            &status,
                        )
                    },
                    json!({"payload_id": r.payload_id.to_hex()}),
                );
                check_final(&r, &status)
            }
            Command::Channel(cmd) => {
                let cmd = cmd.clone();
                self.channel(cmd)
            }
            Command::Anchor { file, tag, wait } => {
                let (file, tag, wait) = (file.clone(), tag.clone(), *wait);
                self.anchor(&file, &tag, wait)
            }
            Command::VerifyAnchor { file, payload_id } => {
                let (file, id) = (file.clone(), *payload_id);
                self.verify_anchor(&file, &id)
            }
            Command::Proof { payload_id, out } => {
                let (id, out) = (*payload_id, out.clone());
                let genesis = self.required_genesis("proof")?;
                let proof = self.client()?.payload_proof(&id)?;
                if let Some(out) = &out {
                    let json = serde_json::to_vec_pretty(&proof)
                        .map_err(|e| CliError::Input(e.to_string()))?;
                    std::fs::write(out, json)
                        .map_err(io_err(format!("writing {}", out.display())))?;
                }
                self.check_proof(&proof, &genesis, Some(id))
            }
            Command::VerifyProof { file } => {
                let file = file.clone();
                let genesis = self.required_genesis("verify-proof")?;
                let text =
                    std::fs::read(&file).map_err(io_err(format!("reading {}", file.display())))?;
                let proof: wallet_proof::TransactionProof =
                    serde_json::from_slice(&text).map_err(|e| {
                        CliError::VerifyFailed(format!("{} is not a proof: {e}", file.display()))
                    })?;
                self.check_proof(&proof, &genesis, None)
            }
            Command::History { status } => {
                let status = *status;
                self.history(status)
            }
        }
    }

    /// Verifies `proof` against the genesis file and reports; the payload must be `expect`
    /// (when given) and applied.
    fn check_proof(
        &mut self,
        proof: &wallet_proof::TransactionProof,
        genesis: &Genesis,
        expect: Option<PayloadId>,
    ) -> Result<(), CliError> {
        let result = crate::verify_proof(proof, genesis);
        let problem = proof_problem(&result, expect);
        let proven = result.ok();
        emit(
            self.cli.json,
            || match (&problem, &proven) {
                (None, Some(p)) => format!(
                    "OK: payload {} applied by milestone {} (transaction {}), signed by the \
                     genesis committee",
                    p.payload_id.map(|i| i.to_hex()).unwrap_or_default(),
                    p.milestone,
                    p.transaction_id
                ),
                (Some(why), _) => format!("FAILED: {why}"),
                (None, None) => "FAILED".into(),
            },
            json!({
                "valid": problem.is_none(),
                "problem": problem,
                "payload_id": proven.as_ref().and_then(|p| p.payload_id).map(|i| i.to_hex()),
                "transaction_id": proven.as_ref().map(|p| p.transaction_id.to_hex()),
                "milestone": proven.as_ref().map(|p| p.milestone),
                "milestone_id": proven.as_ref().map(|p| p.milestone_id.to_hex()),
                "applied": proven.as_ref().map(|p| p.applied),
            }),
        );
        match problem {
            None => Ok(()),
            Some(p) => Err(CliError::VerifyFailed(p)),
        }
    }

    fn init(
        &mut self,
        network_id: Option<u64>,
        restore: bool,
        show_mnemonic: bool,
        kdf: KdfParams,
    ) -> Result<(), CliError> {
        let path = self.keystore_path()?;
        if path.exists() {
            return Err(KeystoreError::AlreadyExists(path).into());
        }
        // `--genesis`: pinned next to the keystore (its committee checks proofs later), and
        // the network id comes from it rather than from a node.
        let pinned = match &self.cli.genesis {
            Some(g) => {
                let text = std::fs::read_to_string(g)
                    .map_err(io_err(format!("reading {}", g.display())))?;
                Some((read_genesis(g)?, text))
            }
            None => None,
        };
        let network_id = match (network_id, &pinned) {
            (Some(n), Some((g, _))) if g.network_id() != n => {
                return Err(CliError::Input(format!(
                    "--network-id {n} is not the network of the genesis ({})",
                    g.network_id()
                )))
            }
            (Some(n), _) => n,
            (None, Some((g, _))) => g.network_id(),
            (None, None) => self.client()?.info()?.network_id,
        };
        let mnemonic = if restore {
            let mut line = Zeroizing::new(String::new());
            io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(io_err("reading the phrase from stdin"))?;
            Mnemonic::parse(line.trim())
                .map_err(|e| CliError::Input(format!("invalid backup phrase: {e}")))?
        } else {
            Mnemonic::generate()
        };
        let password = read_password(true)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let ks = Keystore::create(
            &path,
            &password,
            &mnemonic,
            network_id,
            KeystoreOptions {
                kdf,
                ..KeystoreOptions::default()
            },
        )?;
        if let Some((_, text)) = &pinned {
            let to = local::genesis_path(&path);
            crate::fsutil::write_atomic(&to, text.as_bytes())
                .map_err(io_err(format!("writing {}", to.display())))?;
        }
        let d = ks.device(DEVICE);
        let (address, did) = (d.address().to_bech32(), d.did());
        let phrase = mnemonic.phrase();
        let mut out = json!({
            "keystore": path.display().to_string(),
            "network_id": network_id,
            "address": address,
            "did": did,
        });
        if show_mnemonic {
            out["mnemonic"] = Value::String(phrase.to_string());
        }
        emit(
            self.cli.json,
            || {
                let mut s = format!(
                    "created keystore {} for network {network_id}\naddress: {address}\ndid:     {did}",
                    path.display()
                );
                if !restore {
                    s = format!(
                        "{s}\n\nbackup phrase (write it down and keep it secret; it restores \
                         every key):\n  {}",
                        phrase.as_str()
                    );
                }
                s
            },
            out,
        );
        Ok(())
    }

    fn anchor(&mut self, file: &Path, tag: &str, wait: bool) -> Result<(), CliError> {
        let digest = hash_file(file).map_err(io_err(format!("reading {}", file.display())))?;
        let mut ks = self.open_keystore()?;
        self.node_for(&ks)?;
        let (r, status) = self.issue(&mut ks, |d| Ok(d.anchor(tag.as_bytes(), digest)?), wait)?;
        emit(
            self.cli.json,
            || {
                with_status(
                    format!(
                        "anchored {} (digest {digest})\npayload: {}",
                        file.display(),
                        r.payload_id
                    ),
                    &status,
                )
            },
            json!({
                "payload_id": r.payload_id.to_hex(),
                "digest": digest.to_hex(),
                "tag": tag,
            }),
        );
        check_final(&r, &status)
    }

    /// Checks `file` against anchor `id`. The anchor's payload and its confirmation come
    /// from a proof checked against the committee (the node is trusted for nothing), or
    /// with `--trust-node` from the node's word.
    fn verify_anchor(&mut self, file: &Path, id: &PayloadId) -> Result<(), CliError> {
        let actual = hash_file(file).map_err(io_err(format!("reading {}", file.display())))?;
        let verifier = self.verifier("verify-anchor")?;
        let info = self.client()?.info()?;
        let mut status = self.client()?.payload(id)?.status;
        let payload = match (&verifier, &status) {
            (Some(genesis), PayloadStatus::Confirmed { .. }) => {
                let proven = self.prove_applied(genesis, id)?;
                status = PayloadStatus::Confirmed {
                    milestone: proven.milestone,
                    transaction_id: proven.transaction_id,
                };
                proven.payload.ok_or_else(|| {
                    CliError::VerifyFailed(format!(
                        "the proven transaction carries no payload {id}"
                    ))
                })?
            }
            _ => self.client()?.signed_payload(id)?,
        };
        let (tag, anchored) = match anchored_digest(&payload) {
            Ok((t, d)) => (String::from_utf8_lossy(t).into_owned(), d),
            Err(e) => return Err(CliError::VerifyFailed(e.to_string())),
        };
        let problem = if payload.verify(info.network_id).is_err() {
            Some("the anchor's signature does not verify on this network".to_string())
        } else if anchored != actual {
            Some(format!(
                "the file's digest {actual} differs from the anchored {anchored}"
            ))
        } else if !matches!(status, PayloadStatus::Confirmed { .. }) {
            Some(format!("the anchor is {}, not confirmed", status.as_str()))
        } else {
            None
        };
        let milestone = match &status {
            PayloadStatus::Confirmed { milestone, .. }
            | PayloadStatus::Reattaching { milestone, .. }
            | PayloadStatus::Conflicting { milestone, .. } => Some(*milestone),
            PayloadStatus::Pending => None,
        };
        emit(
            self.cli.json,
            || match &problem {
                None => format!(
                    "OK: {} matches anchor {id}\n  issuer {}, tag {tag:?}, milestone {}",
                    file.display(),
                    payload.issuer,
                    milestone.unwrap_or_default()
                ),
                Some(p) => format!("FAILED: {p}"),
            },
            json!({
                "valid": problem.is_none(),
                "payload_id": id.to_hex(),
                "status": status.as_str(),
                "milestone": milestone,
                "issuer": payload.issuer.to_bech32(),
                "tag": tag,
                "digest": anchored.to_hex(),
                "file_digest": actual.to_hex(),
            }),
        );
        match problem {
            None => Ok(()),
            Some(p) => Err(CliError::VerifyFailed(p)),
        }
    }

    fn history(&mut self, with_status: bool) -> Result<(), CliError> {
        let path = self.keystore_path()?;
        let entries = local::read_history(&path).map_err(io_err("reading the history"))?;
        let mut statuses = Vec::with_capacity(entries.len());
        if with_status {
            let client = self.client()?;
            for e in &entries {
                statuses.push(match client.payload(&e.payload_id) {
                    Ok(p) => p.status.as_str(),
                    Err(ClientError::NotFound(_)) => "unknown",
                    Err(err) => return Err(err.into()),
                });
            }
        }
        if self.cli.json {
            let list: Vec<Value> = entries
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let mut v = json!({
                        "payload_id": e.payload_id.to_hex(),
                        "seq": e.seq,
                        "kind": e.kind,
                        "time_ms": e.time_ms,
                        "details": e.details,
                    });
                    if let Some(s) = statuses.get(i) {
                        v["status"] = Value::String(s.to_string());
                    }
                    v
                })
                .collect();
            println!("{}", Value::Array(list));
        } else if entries.is_empty() {
            println!("no payloads issued from {}", path.display());
        } else {
            for (i, e) in entries.iter().enumerate() {
                let status = statuses.get(i).map_or(String::new(), |s| format!(" [{s}]"));
                println!(
                    "seq {:>4}  {:<6} {}{status}  {}",
                    e.seq, e.kind, e.payload_id, e.details
                );
            }
        }
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_contract_forms() {
        let to = dag_core::Keypair::from_seed(&[5; 32]).address();
        let c = Cli::try_parse_from([
            "tangle-wallet",
            "--keystore",
            "/tmp/k.json",
            "--node",
            "http://127.0.0.1:1",
            "--json",
            "pay",
            &to.to_did_key(),
            "42",
            "--wait",
        ])
        .unwrap();
        assert!(c.json);
        assert_eq!(c.keystore.as_deref(), Some(Path::new("/tmp/k.json")));
        assert!(matches!(c.command, Command::Pay { to: t, amount: 42, wait: true, .. } if t == to));
        // Global flags after the subcommand too.
        let c = Cli::try_parse_from(["tangle-wallet", "balance", "--json"]).unwrap();
        assert!(c.json);
        assert!(Cli::try_parse_from(["tangle-wallet", "pay", "nonsense", "1"]).is_err());
        let ch = "ab".repeat(32);
        let c = Cli::try_parse_from(["tangle-wallet", "channel", "voucher", &ch, "25", "--total"])
            .unwrap();
        assert!(matches!(
            c.command,
            Command::Channel(ChannelCommand::Voucher {
                amount: 25,
                total: true,
                ..
            })
        ));
        assert!(
            Cli::try_parse_from(["tangle-wallet", "channel", "open", &to.to_bech32(), "10"])
                .is_err()
        );
    }
}
