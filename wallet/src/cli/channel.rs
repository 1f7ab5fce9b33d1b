//! The `channel` subcommands (pay-per-use channels): their arguments, a dispatcher, and one
//! handler per subcommand.

use clap::Subcommand;
use dag_core::{Address, ChannelId};
use serde_json::json;

use super::output::{emit, with_status};
use super::{check_final, io_err, local, CliError, Ctx, DEVICE};
use crate::channel::{
    FileVoucherStore, PayeeChannel, PayerChannel, PayerChannelState, VoucherError,
};

/// The `channel` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub(super) enum ChannelCommand {
    /// Open a channel to PAYEE locking DEPOSIT (payer side).
    Open {
        /// Payee, `tng1...` or `did:key:...`.
        payee: Address,
        /// Deposit in base units.
        deposit: u64,
        /// Milestones from the node's confirmed one until expiry.
        #[arg(long)]
        expires_in: u32,
        /// Wait until confirmed or conflicting (exit 3 on conflict).
        #[arg(long)]
        wait: bool,
    },
    /// Sign a voucher for AMOUNT more (or a cumulative AMOUNT with --total) and print it as
    /// hex (payer side; works offline).
    Voucher {
        /// Channel id (hex).
        channel: ChannelId,
        /// Amount to add, in base units.
        amount: u64,
        /// AMOUNT is the new cumulative total, not an increment.
        #[arg(long)]
        total: bool,
    },
    /// Verify VOUCHER (hex), keep it if it is the best, and claim the best voucher held
    /// (payee side).
    Claim {
        /// Channel id (hex).
        channel: ChannelId,
        /// Voucher, hex.
        voucher: String,
        /// Wait until confirmed or conflicting (exit 3 on conflict).
        #[arg(long)]
        wait: bool,
    },
    /// Take back the deposit of an expired, unclaimed channel (payer side).
    Refund {
        /// Channel id (hex).
        channel: ChannelId,
        /// Wait until confirmed or conflicting (exit 3 on conflict).
        #[arg(long)]
        wait: bool,
    },
    /// Show a channel as the ledger holds it. Needs no keystore.
    Status {
        /// Channel id (hex).
        channel: ChannelId,
    },
}

impl Ctx {
    /// Runs a `channel` subcommand.
    pub(super) fn channel(&mut self, cmd: ChannelCommand) -> Result<(), CliError> {
        match cmd {
            ChannelCommand::Open {
                payee,
                deposit,
                expires_in,
                wait,
            } => self.channel_open(payee, deposit, expires_in, wait),
            ChannelCommand::Voucher {
                channel,
                amount,
                total,
            } => self.channel_voucher(channel, amount, total),
            ChannelCommand::Claim {
                channel,
                voucher,
                wait,
            } => self.channel_claim(channel, &voucher, wait),
            ChannelCommand::Refund { channel, wait } => self.channel_refund(channel, wait),
            ChannelCommand::Status { channel } => self.channel_status(channel),
        }
    }

    /// Opens a channel to `payee` locking `deposit` (payer side).
    fn channel_open(
        &mut self,
        payee: Address,
        deposit: u64,
        expires_in: u32,
        wait: bool,
    ) -> Result<(), CliError> {
        let json = self.cli.json;
        let mut ks = self.open_keystore()?;
        let info = self.node_for(&ks)?;
        let expires_at = info
            .confirmed_milestone
            .checked_add(expires_in)
            .ok_or_else(|| CliError::Input("--expires-in is too large".into()))?;
        let path = ks.path().to_path_buf();
        let mut channel_id = None;
        let (r, status) = self.issue(
            &mut ks,
            |d| {
                let (payer, open) = PayerChannel::open(d, payee, deposit, expires_at)?;
                local::save_channel(&path, &payer.state())
                    .map_err(io_err("saving the channel state"))?;
                channel_id = Some(payer.id());
                Ok(open)
            },
            wait,
        )?;
        let id = channel_id.expect("set by the builder").to_hex();
        emit(
            json,
            || {
                with_status(
                    format!(
                        "opened channel {id}\n  payee {payee}, deposit {deposit}, expires at \
                     milestone {expires_at}\npayload: {}",
                        r.payload_id
                    ),
                    &status,
                )
            },
            json!({
                "channel_id": id,
                "payload_id": r.payload_id.to_hex(),
                "deposit": deposit,
                "expires_at": expires_at,
            }),
        );
        check_final(&r, &status)
    }

    /// Signs a voucher for `amount` more (a cumulative `amount` with `total`) and prints it
    /// (payer side; works offline).
    fn channel_voucher(
        &mut self,
        channel: ChannelId,
        amount: u64,
        total: bool,
    ) -> Result<(), CliError> {
        let json = self.cli.json;
        let ks = self.open_keystore()?;
        let path = ks.path().to_path_buf();
        let state = local::load_channel(&path, &channel)
            .map_err(io_err("reading the channel state"))?
            .ok_or_else(|| {
                CliError::Input(format!(
                    "channel {channel} was not opened with this keystore"
                ))
            })?;
        let device = ks.device(DEVICE);
        let mut payer = PayerChannel::resume(device.keypair().clone(), ks.network_id(), state)?;
        let v = if total {
            payer.voucher_total(amount)?
        } else {
            payer.voucher(amount)?
        };
        // Record the new cumulative amount before the voucher leaves this process.
        local::save_channel(&path, &payer.state()).map_err(io_err("saving the channel state"))?;
        let hex_voucher = hex::encode(v.to_bytes());
        emit(
            json,
            || hex_voucher.clone(),
            json!({
                "voucher": hex_voucher,
                "channel_id": channel.to_hex(),
                "amount": v.amount,
                "remaining": payer.remaining(),
            }),
        );
        Ok(())
    }

    /// Verifies `voucher`, keeps it if it is the best, and claims the best voucher held
    /// (payee side).
    fn channel_claim(
        &mut self,
        channel: ChannelId,
        voucher: &str,
        wait: bool,
    ) -> Result<(), CliError> {
        let json = self.cli.json;
        let mut ks = self.open_keystore()?;
        let info = self.node_for(&ks)?;
        let ch = self.client()?.channel(&channel)?;
        let me = ks.device(DEVICE).address();
        if ch.payee != me {
            return Err(CliError::Input(format!(
                "channel {channel} pays {}, not this wallet ({me})",
                ch.payee
            )));
        }
        if ch.closed {
            return Err(CliError::Input(format!("channel {channel} is closed")));
        }
        let bytes = hex::decode(voucher.trim())
            .map_err(|e| CliError::Input(format!("voucher is not hex: {e}")))?;
        let dir = local::vouchers_dir(ks.path());
        let store =
            FileVoucherStore::open(&dir).map_err(io_err(format!("opening {}", dir.display())))?;
        let mut payee = PayeeChannel::new(ks.network_id(), ch.terms(), store)?;
        match payee.accept_bytes(&bytes) {
            // An older voucher: the better one already held is claimed.
            Ok(_) | Err(VoucherError::NotIncreasing { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let amount = payee.earned();
        let (r, status) = self.issue(
            &mut ks,
            |d| Ok(payee.claim(d, info.confirmed_milestone)?),
            wait,
        )?;
        emit(
            json,
            || {
                with_status(
                    format!(
                        "claimed {amount} from channel {channel}\npayload: {}",
                        r.payload_id
                    ),
                    &status,
                )
            },
            json!({
                "payload_id": r.payload_id.to_hex(),
                "channel_id": channel.to_hex(),
                "amount": amount,
            }),
        );
        check_final(&r, &status)
    }

    /// Takes back the deposit of an expired, unclaimed channel (payer side).
    fn channel_refund(&mut self, channel: ChannelId, wait: bool) -> Result<(), CliError> {
        let json = self.cli.json;
        let mut ks = self.open_keystore()?;
        let info = self.node_for(&ks)?;
        let ch = self.client()?.channel(&channel)?;
        if ch.closed {
            return Err(CliError::Input(format!("channel {channel} is closed")));
        }
        let device = ks.device(DEVICE);
        let payer = PayerChannel::resume(
            device.keypair().clone(),
            ks.network_id(),
            PayerChannelState {
                terms: ch.terms(),
                paid: 0,
            },
        )?;
        let (r, status) = self.issue(
            &mut ks,
            |d| Ok(payer.refund(d, info.confirmed_milestone)?),
            wait,
        )?;
        emit(
            json,
            || {
                with_status(
                    format!(
                        "refunding {} from channel {channel}\npayload: {}",
                        ch.deposit, r.payload_id
                    ),
                    &status,
                )
            },
            json!({
                "payload_id": r.payload_id.to_hex(),
                "channel_id": channel.to_hex(),
                "amount": ch.deposit,
            }),
        );
        check_final(&r, &status)
    }

    /// Shows a channel as the ledger holds it (no keystore).
    fn channel_status(&mut self, channel: ChannelId) -> Result<(), CliError> {
        let json = self.cli.json;
        let ch = self.client()?.channel(&channel)?;
        let value = serde_json::to_value(&ch)
            .map_err(|e| CliError::Input(format!("cannot render the channel as JSON: {e}")))?;
        emit(
            json,
            || {
                format!(
                    "channel {}\n  payer:      {}\n  payee:      {}\n  deposit:    {}\n  \
                     expires_at: {}\n  closed:     {}\n  claimed:    {}",
                    ch.channel_id,
                    ch.payer,
                    ch.payee,
                    ch.deposit,
                    ch.expires_at,
                    ch.closed,
                    ch.claimed.map_or("-".to_string(), |c| c.to_string())
                )
            },
            value,
        );
        Ok(())
    }
}
