//! `NodeClient::wait_final` waits on the node's event stream instead of polling, against a
//! scripted node on 127.0.0.1: it reads the status once, then again only when the stream
//! announces a final status for its payload; without a stream it falls back to polling.

#![cfg(feature = "client")]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use dag_core::PayloadId;
use wallet::client::{ClientOptions, NodeClient, PayloadStatus};

const ID: PayloadId = PayloadId([7; 32]);
const OTHER: PayloadId = PayloadId([8; 32]);

fn status_body(confirmed: bool) -> String {
    let state = if confirmed {
        format!(
            r#""status":"confirmed","milestone":5,"transaction_id":"{}""#,
            "ab".repeat(32)
        )
    } else {
        r#""status":"pending""#.to_string()
    };
    format!(
        r#"{{"payload_id":"{}","issuer":"{}","seq":0,"kind":"pay","transactions":[],{state}}}"#,
        ID.to_hex(),
        dag_core::Address([3; 32]).to_bech32()
    )
}

fn respond(conn: &mut TcpStream, status: &str, ctype: &str, body: &str) {
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A node that keeps the payload pending until it has sent the final event, and counts the
/// status reads. With `stream: false` it has no event stream (404) and confirms the payload
/// at the third status read.
fn scripted_node(stream: bool) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let reads = Arc::new(AtomicUsize::new(0));
    let counted = reads.clone();
    // Set once the event went out: from then on the status is final.
    let (sent_tx, sent_rx) = mpsc::channel::<()>();
    let sent_rx = Arc::new(std::sync::Mutex::new(sent_rx));
    let confirmed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (reads, confirmed, sent_tx, sent_rx) = (
                counted.clone(),
                confirmed.clone(),
                sent_tx.clone(),
                sent_rx.clone(),
            );
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    return;
                }
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim_end().is_empty() {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                if path == "/api/v1/events" {
                    if !stream {
                        let body = r#"{"code":"not_found","message":"no stream here"}"#;
                        return respond(&mut conn, "404 Not Found", "application/json", body);
                    }
                    // Headers, then (once the client read the pending status) an event
                    // about another payload, a milestone, then this payload's final status.
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n: hello\n\n"
                    );
                    let _ = conn.flush();
                    let _ = sent_rx.lock().unwrap().recv();
                    let events = [
                        format!(
                            r#"{{"type":"payload","payload_id":"{}","status":"confirmed","milestone":5,"transaction_id":"{}"}}"#,
                            OTHER.to_hex(),
                            "cd".repeat(32)
                        ),
                        r#"{"type":"transaction","transaction_id":"00","payload_id":null}"#
                            .to_string(),
                        format!(
                            r#"{{"type":"payload","payload_id":"{}","status":"confirmed","milestone":5,"transaction_id":"{}"}}"#,
                            ID.to_hex(),
                            "ab".repeat(32)
                        ),
                    ];
                    for (i, e) in events.iter().enumerate() {
                        if i == 2 {
                            confirmed.store(true, Ordering::SeqCst);
                        }
                        let _ = write!(conn, "id: {i}\nevent: message\ndata: {e}\n\n");
                        let _ = conn.flush();
                    }
                    // Held open, as a node's stream is.
                    std::thread::sleep(Duration::from_secs(600));
                    return;
                }
                if path == format!("/api/v1/payloads/{}", ID.to_hex()) {
                    let n = reads.fetch_add(1, Ordering::SeqCst) + 1;
                    let done = if stream {
                        confirmed.load(Ordering::SeqCst)
                    } else {
                        n >= 3
                    };
                    respond(&mut conn, "200 OK", "application/json", &status_body(done));
                    if stream && n == 1 {
                        let _ = sent_tx.send(());
                    }
                    return;
                }
                respond(
                    &mut conn,
                    "404 Not Found",
                    "application/json",
                    r#"{"code":"not_found","message":"?"}"#,
                );
            });
        }
    });
    (url, reads)
}

fn client(url: &str, poll_interval: Duration) -> NodeClient {
    NodeClient::with_options(
        url,
        ClientOptions {
            retries: 0,
            initial_backoff: Duration::from_millis(5),
            max_backoff: poll_interval,
            timeout: Duration::from_secs(120),
            poll_interval,
        },
    )
    .unwrap()
}

#[test]
fn wait_final_reads_the_status_only_when_the_stream_says_it_changed() {
    let (url, reads) = scripted_node(true);
    // A poll interval of an hour: a client that polled would not return in this test's life.
    let c = client(&url, Duration::from_secs(3600));
    let status = c.wait_final(&ID, Duration::from_secs(3000)).unwrap();
    assert!(
        matches!(status, PayloadStatus::Confirmed { milestone: 5, .. }),
        "{status:?}"
    );
    assert_eq!(
        reads.load(Ordering::SeqCst),
        2,
        "once before the events, once for its own final event (not for the other payload's)"
    );
}

#[test]
fn without_a_stream_wait_final_polls() {
    let (url, reads) = scripted_node(false);
    let c = client(&url, Duration::from_millis(5));
    let status = c.wait_final(&ID, Duration::from_secs(3000)).unwrap();
    assert!(
        matches!(status, PayloadStatus::Confirmed { .. }),
        "{status:?}"
    );
    assert_eq!(reads.load(Ordering::SeqCst), 3);
}
