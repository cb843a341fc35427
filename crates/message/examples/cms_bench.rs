//! The CMS layer's speed (bench/messages.sh drives it): small messages per second
//! (sign + encrypt, decrypt + verify) and MB/s for one large file (streamed, file to
//! file, any size), with the same keys
//! and file that `openssl cms` is timed on.
//!
//! cms_bench SENDER.key SENDER.crt RECIP.key RECIP.crt FILE SMALL_COUNT
//! Prints one JSON object.
use std::time::Instant;

use dodvpn_message::{
    digest_reader, open, open_stream, seal_stream, sign_and_seal, Recipient, SealOptions, SoftKey,
    VerifyOptions,
};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 7 {
        eprintln!("usage: cms_bench SENDER.key SENDER.crt RECIP.key RECIP.crt FILE SMALL_COUNT");
        std::process::exit(2);
    }
    let rd = |p: &str| std::fs::read_to_string(p).expect("read key/cert");
    let sender = SoftKey::from_pem(&rd(&a[1]), &rd(&a[2])).expect("sender key");
    let recip = SoftKey::from_pem(&rd(&a[3]), &rd(&a[4])).expect("recipient key");
    let rcert = dodvpn_message::RecipientKey::certificate(&recip).clone();
    let scert = dodvpn_message::MessageSigner::certificate(&sender).clone();
    let small_n: usize = a[6].parse().expect("count");
    let recipients = [Recipient { cert: rcert }];
    let anchors = [scert];
    let never = |_: &dodvpn_message::x509_cert::Certificate| false;
    let opts = VerifyOptions {
        trust_anchors: &anchors,
        is_revoked: &never,
    };
    let mut rng = dodvpn_message::rand_core::OsRng;
    let keys: [&dyn dodvpn_message::RecipientKey; 1] = [&recip];

    // Small: 1 KiB letters, 5 batches, median rate.
    let letter = vec![b'x'; 1024];
    let (mut seal_rates, mut open_rates) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        let mut last = Vec::new();
        for _ in 0..small_n {
            last = sign_and_seal(
                &letter,
                &sender,
                0,
                &recipients,
                &SealOptions::default(),
                &mut rng,
            )
            .unwrap();
        }
        seal_rates.push(small_n as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        for _ in 0..small_n {
            let o = open(&last, &keys, &opts).unwrap();
            assert_eq!(o.content.len(), 1024);
        }
        open_rates.push(small_n as f64 / t.elapsed().as_secs_f64());
    }

    // Large: file to file, streamed (as the CLI does: digest pass, then encrypt as it
    // reads; decrypt into a file, kept once tag and signature check), as `openssl cms`
    // goes file to file. 3 runs, median MB/s (10^6 bytes).
    let path = std::path::Path::new(&a[5]);
    let len = std::fs::metadata(path).expect("file").len();
    let mb = len as f64 / 1e6;
    let cms_path = path.with_extension("stream.cms");
    let out_path = path.with_extension("stream.out");
    let (mut seal_mbs, mut open_mbs) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t = Instant::now();
        let rd = || std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path).unwrap());
        let (digest, n) =
            digest_reader(dodvpn_message::MessageSigner::digest_alg(&sender), rd()).unwrap();
        let mut s = seal_stream(
            &digest,
            n,
            rd(),
            &sender,
            0,
            &recipients,
            &SealOptions::default(),
            &mut rng,
        )
        .unwrap();
        let mut w =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&cms_path).unwrap());
        std::io::copy(&mut s, &mut w).unwrap();
        drop(w);
        seal_mbs.push(mb / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut w =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&out_path).unwrap());
        let o = open_stream(
            std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&cms_path).unwrap()),
            &keys,
            &opts,
            &mut w,
        )
        .unwrap();
        std::io::Write::flush(&mut w).unwrap();
        drop(w);
        open_mbs.push(mb / t.elapsed().as_secs_f64());
        assert_eq!(o.content_len, len);
    }
    let _ = std::fs::remove_file(&cms_path);
    let _ = std::fs::remove_file(&out_path);
    println!(
        "{}",
        serde_json_like(&[
            ("small_bytes", 1024.0),
            ("small_sign_seal_per_s", median(seal_rates)),
            ("small_open_verify_per_s", median(open_rates)),
            ("large_bytes", len as f64),
            ("large_sign_seal_mb_s", median(seal_mbs)),
            ("large_open_verify_mb_s", median(open_mbs)),
        ])
    );
}

/// A flat JSON object of numbers, without a JSON dependency.
fn serde_json_like(kv: &[(&str, f64)]) -> String {
    let body: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\": {v:.1}")).collect();
    format!("{{{}}}", body.join(", "))
}
