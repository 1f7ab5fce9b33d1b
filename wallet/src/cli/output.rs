//! Output: one JSON object (with `--json`) or human text, and the status line of a payload
//! that was waited for.

use serde_json::Value;

use crate::client::PayloadStatus;

/// Prints `json` (with --json) or `human`.
pub(super) fn emit(json_mode: bool, human: impl FnOnce() -> String, json: Value) {
    if json_mode {
        println!("{json}");
    } else {
        println!("{}", human());
    }
}

/// `text`, followed by the payload's status line when it was waited for.
pub(super) fn with_status(text: String, status: &Option<PayloadStatus>) -> String {
    match status {
        Some(st) => format!("{text}\n{}", status_line(st)),
        None => text,
    }
}

/// The human line for a payload status.
fn status_line(status: &PayloadStatus) -> String {
    match status {
        PayloadStatus::Pending => "status: pending".into(),
        PayloadStatus::Reattaching {
            milestone, reason, ..
        } => format!("status: reattaching (milestone {milestone}: {reason})"),
        PayloadStatus::Confirmed { milestone, .. } => {
            format!("status: confirmed in milestone {milestone}")
        }
        PayloadStatus::Conflicting {
            milestone, reason, ..
        } => format!("status: conflicting in milestone {milestone} ({reason})"),
    }
}
