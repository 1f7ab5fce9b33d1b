//! Topic names and filters, and which messages a node event becomes.

use dag_core::{Address, Body, Payload};

use super::{Broker, Message};
use crate::service::{NodeEvent, NodeService, PayloadState};

/// Longest topic filter a client may subscribe to, bytes.
pub(crate) const MAX_FILTER_LEN: usize = 1024;

/// Whether topic `topic` matches filter `filter` (MQTT 3.1.1 section 4.7: `+` one level,
/// `#` this level and every level below, also the parent: `a/#` matches `a`).
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether `filter` is a valid topic filter: not empty, no NUL, at most
/// [`MAX_FILTER_LEN`] bytes, `+` and `#` alone in their level, `#` only last.
pub(crate) fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_FILTER_LEN || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, l)| match *l {
        "#" => i == levels.len() - 1,
        "+" => true,
        l => !l.contains('+') && !l.contains('#'),
    })
}

/// The `{token}` of a `submit/{token}` topic, if `topic` is one and the token is valid
/// (1 to 64 of `A-Z a-z 0-9 _ -`).
pub(crate) fn submit_token(topic: &str) -> Option<&str> {
    let token = topic.strip_prefix("submit/")?;
    let ok = !token.is_empty()
        && token.len() <= 64
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then_some(token)
}

/// The messages (and whether each is retained) that `event` becomes. Account messages are
/// made only when a client subscribes to a matching filter (they need a store read each).
pub(crate) fn event_messages<S: NodeService>(
    event: &NodeEvent,
    service: &S,
    broker: &Broker,
) -> Vec<(Message, bool)> {
    // Serialising these plain structs cannot fail.
    let json: bytes::Bytes = match serde_json::to_vec(event) {
        Ok(j) => j.into(),
        Err(_) => return Vec::new(),
    };
    match event {
        NodeEvent::Transaction { .. } => vec![(Message::new("transactions", json), false)],
        NodeEvent::Milestone(_) => vec![
            (Message::new("milestones/latest", json.clone()), true),
            (Message::new("milestones/confirmed", json), true),
        ],
        NodeEvent::Reattached { payload_id, .. } => {
            vec![(Message::new(&format!("payloads/{payload_id}"), json), false)]
        }
        NodeEvent::Payload { payload_id, state } => {
            let mut out = vec![(Message::new(&format!("payloads/{payload_id}"), json), false)];
            if let PayloadState::Confirmed { transaction_id, .. } = state {
                if any_account_filter(broker) {
                    for address in touched_accounts(service, transaction_id) {
                        let topic = format!("accounts/{address}");
                        if !broker.wanted(&topic) {
                            continue;
                        }
                        if let Ok(view) = service.account(&address) {
                            if let Ok(j) = serde_json::to_vec(&view) {
                                out.push((Message::new(&topic, j), false));
                            }
                        }
                    }
                }
            }
            out
        }
    }
}

/// Whether some client subscribed to a filter that can match an `accounts/...` topic.
fn any_account_filter(broker: &Broker) -> bool {
    broker.lock_clients().values().any(|c| {
        c.filters
            .iter()
            .any(|f| f.starts_with("accounts/") || f.starts_with('+') || f.starts_with('#'))
    })
}

/// The accounts whose balance the applied payload of transaction `tx` changed.
fn touched_accounts<S: NodeService>(service: &S, tx: &dag_core::TxId) -> Vec<Address> {
    let Ok(Some(bytes)) = service.transaction(tx) else {
        return Vec::new();
    };
    let Ok(tx) = dag_core::codec::decode(&bytes) else {
        return Vec::new();
    };
    let Payload::Signed(p) = tx.payload else {
        return Vec::new();
    };
    let mut out = vec![p.issuer];
    match &p.body {
        Body::Pay { to, .. } => out.push(*to),
        Body::Open { payee, .. } => out.push(*payee),
        Body::Claim { channel, .. } | Body::Refund { channel } => {
            if let Ok(Some(c)) = service.channel(channel) {
                out.push(c.payer);
                out.push(c.payee);
            }
        }
        Body::Anchor { .. } => {}
    }
    out.sort_unstable_by_key(|a| a.to_string());
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_the_specification_says() {
        for (filter, topic, expect) in [
            ("transactions", "transactions", true),
            ("transactions", "transactions/x", false),
            ("milestones/+", "milestones/latest", true),
            ("milestones/+", "milestones", false),
            ("milestones/#", "milestones", true),
            ("#", "payloads/ab", true),
            ("payloads/+", "payloads/ab", true),
            ("payloads/+", "payloads/ab/c", false),
            ("+/+", "payloads/ab", true),
            ("accounts/tng1x", "accounts/tng1y", false),
            ("submit/+/verdict", "submit/dev-1/verdict", true),
        ] {
            assert_eq!(filter_matches(filter, topic), expect, "{filter} {topic}");
        }
    }

    #[test]
    fn filters_and_tokens_are_checked() {
        for ok in ["a", "#", "a/#", "+/b", "a/+/c", "/"] {
            assert!(valid_filter(ok), "{ok}");
        }
        let long = "a".repeat(MAX_FILTER_LEN + 1);
        for bad in ["", "a#", "#/a", "a/b+", "a/\0", long.as_str()] {
            assert!(!valid_filter(bad), "{bad:?}");
        }
        assert_eq!(submit_token("submit/dev-1_2"), Some("dev-1_2"));
        let long = format!("submit/{}", "a".repeat(65));
        for bad in [
            "submit/",
            "submit/a/b",
            "submit/a b",
            "other/a",
            long.as_str(),
        ] {
            assert_eq!(submit_token(bad), None, "{bad}");
        }
    }
}
