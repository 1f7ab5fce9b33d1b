//! Retries and error mapping of the node client against a scripted HTTP server on
//! 127.0.0.1 (no node needed): 503 and 429 are retried (honouring `Retry-After`), other
//! errors are not, and the node's `{code, message}` lands in the right variant.

#![cfg(feature = "client")]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wallet::client::{ClientError, ClientOptions, NodeClient};

const INFO: &str = r#"{"version":"0.1.0","network_name":"t","network_id":42,"pow_difficulty":4,
"latest_milestone":3,"confirmed_milestone":3,"tips":1,"ledger_digest":"00","transactions":1,
"milestone_issuer":true,"faucet":true,"halted":null}"#;

/// Serves `responses` in order (status line, extra headers, body), one per connection, then
/// stops. Returns the base URL and the count of requests served.
fn script(
    responses: Vec<(&'static str, &'static str, &'static str)>,
) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for (status, headers, body) in responses {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            // Counted before the answer goes out: once the client has its answer, the count
            // includes it (counting after the write raced the client's assertion).
            count.fetch_add(1, Ordering::SeqCst);
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n{headers}\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    (url, served)
}

fn client(url: &str, retries: u32) -> NodeClient {
    NodeClient::with_options(
        url,
        ClientOptions {
            retries,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            // Per-request timeout: a hang guard. A timeout would be retried and consume the
            // next scripted answer, so it must never fire while the script thread merely
            // waits for a CPU on a loaded machine.
            timeout: Duration::from_secs(120),
            poll_interval: Duration::from_millis(5),
        },
    )
    .unwrap()
}

#[test]
fn unavailable_and_rate_limited_are_retried() {
    let (url, served) = script(vec![
        (
            "503 Service Unavailable",
            "",
            r#"{"code":"unavailable","message":"queue full"}"#,
        ),
        (
            "429 Too Many Requests",
            "Retry-After: 0\r\n",
            r#"{"code":"rate_limited","message":"slow down"}"#,
        ),
        ("200 OK", "", INFO),
    ]);
    let info = client(&url, 3).info().unwrap();
    assert_eq!((info.network_id, info.confirmed_milestone), (42, 3));
    assert_eq!(served.load(Ordering::SeqCst), 3);
}

#[test]
fn retries_run_out() {
    let body = r#"{"code":"rate_limited","message":"slow down"}"#;
    let (url, served) = script(vec![("429 Too Many Requests", "", body); 3]);
    match client(&url, 2).info() {
        Err(ClientError::RateLimited(m)) => assert_eq!(m, "slow down"),
        other => panic!("{other:?}"),
    }
    assert_eq!(served.load(Ordering::SeqCst), 3);
}

#[test]
fn client_errors_are_not_retried_and_map_codes() {
    let (url, served) = script(vec![
        (
            "422 Unprocessable Entity",
            "",
            r#"{"code":"invalid","message":"bad signature"}"#,
        ),
        (
            "404 Not Found",
            "",
            r#"{"code":"not_enabled","message":"faucet is off"}"#,
        ),
        ("500 Internal Server Error", "", "oops, not json"),
        ("200 OK", "", "{not json"),
    ]);
    let c = client(&url, 3);
    assert!(matches!(c.info(), Err(ClientError::Invalid(m)) if m == "bad signature"));
    assert!(matches!(c.info(), Err(ClientError::NotEnabled(_))));
    match c.info() {
        Err(ClientError::Api {
            status: 500,
            code,
            message,
        }) => {
            assert_eq!(code, "unknown");
            assert_eq!(message, "oops, not json");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(c.info(), Err(ClientError::BadResponse { .. })));
    assert_eq!(served.load(Ordering::SeqCst), 4);
}
