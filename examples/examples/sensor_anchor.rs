//! A sensor gateway anchors its readings on the tangle and later proves them.
//!
//! `cargo run -p examples --example sensor_anchor`
//!
//! Each reading is hashed (BLAKE2b-256) and the digest goes into a signed Anchor payload; the
//! readings themselves stay off-ledger. A day's log file is anchored as a whole, streamed.
//! Later anyone holding a reading or the file can check it against the anchored digest, and
//! an altered reading or file is caught.

use std::io::Write;

use wallet::{
    anchor_file, anchor_reading, anchored_digest, verify_anchored_data, verify_file, Device,
    Mnemonic, DEFAULT_COIN_TYPE,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The gateway's key: device 3 of an owner's mnemonic (a fixed one, so runs repeat).
    let mnemonic = Mnemonic::from_entropy(&[0x5e; 32])?;
    let seed = mnemonic.to_seed("");
    let network_id = 0x7465_7374; // a dev network id
    let mut gateway = Device::new(seed.device_keypair(DEFAULT_COIN_TYPE, 0, 3), network_id, 0);
    println!("gateway address {}", gateway.address());
    println!("gateway did     {}", gateway.did());

    // 1. Anchor individual readings.
    let readings = [
        r#"{"sensor":"t-17","ts":1714557600000,"celsius":21.5}"#,
        r#"{"sensor":"t-17","ts":1714557660000,"celsius":21.6}"#,
        r#"{"sensor":"t-17","ts":1714557720000,"celsius":21.4}"#,
    ];
    let mut anchors = Vec::new();
    for r in readings {
        let p = anchor_reading(&mut gateway, b"t-17", r.as_bytes())?;
        let (_, digest) = anchored_digest(&p)?;
        println!("anchored reading seq {} digest {digest}  <- {r}", p.seq);
        anchors.push(p);
    }

    // 2. Anchor a log file, hashed as a stream.
    let dir = std::env::temp_dir().join(format!("sensor-anchor-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("t-17-2024-05-01.csv");
    let mut f = std::fs::File::create(&log)?;
    for i in 0..1_000 {
        writeln!(
            f,
            "{},{:.1}",
            1_714_557_600_000u64 + i * 60_000,
            20.0 + (i % 30) as f64 / 10.0
        )?;
    }
    f.sync_all()?;
    drop(f);
    let file_anchor = anchor_file(&mut gateway, b"t-17/day", &log)?;
    let (_, file_digest) = anchored_digest(&file_anchor)?;
    println!(
        "anchored file {} seq {} digest {file_digest}",
        log.display(),
        file_anchor.seq
    );

    // 3. Verify: readings and file as they are.
    for (p, r) in anchors.iter().zip(readings) {
        verify_anchored_data(p, network_id, r.as_bytes())?;
        println!("verified reading seq {}: ok", p.seq);
    }
    verify_file(&log, file_digest)?;
    println!("verified file: ok");

    // 4. Tampering is caught.
    let forged = readings[1].replace("21.6", "25.0");
    match verify_anchored_data(&anchors[1], network_id, forged.as_bytes()) {
        Err(e) => println!("altered reading rejected: {e}"),
        Ok(()) => return Err("an altered reading verified".into()),
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)?
        .write_all(b"1714617600000,99.9\n")?;
    match verify_file(&log, file_digest) {
        Err(e) => println!("altered file rejected: {e}"),
        Ok(()) => return Err("an altered file verified".into()),
    }

    std::fs::remove_dir_all(&dir)?;
    println!(
        "done: {} anchors signed, next seq {}",
        anchors.len() + 1,
        gateway.next_seq()
    );
    Ok(())
}
