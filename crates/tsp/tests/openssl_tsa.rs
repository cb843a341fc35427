//! Tokens from a real `openssl ts -reply` TSA, verified and attacked
//! (issue 15, R-AUD-4). Needs openssl (`scripts/setup.sh --check openssl`).

use dodvpn_tsp::testing::LocalTsa;
use dodvpn_tsp::{imprint_of, request, token_from_response, verify, TspError};

const BODY: &[u8] = b"dodvpn-audit/0123456789abcdef\n42\nq0jZ0nK3AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\ntime 1764680000000\n";

fn token_for(tsa: &LocalTsa, body: &[u8], nonce: [u8; 8]) -> Vec<u8> {
    let req = request(&imprint_of(body), nonce).unwrap();
    token_from_response(&tsa.reply(&req).unwrap()).unwrap()
}

#[test]
fn openssl_token_verifies_with_eku_chain_and_imprint() {
    let tsa = LocalTsa::start().unwrap();
    let nonce = [9, 8, 7, 6, 5, 4, 3, 2];
    let tok = token_for(&tsa, BODY, nonce);
    let v = verify(&tok, &imprint_of(BODY), &tsa.ca_der, Some(nonce)).unwrap();
    assert_eq!(v.policy, "1.3.6.1.4.1.99999.1");
    assert!(
        v.tsa_subject.contains("dodvpn test tsa"),
        "{}",
        v.tsa_subject
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        v.gen_time.abs_diff(now) < 120,
        "genTime {} vs now {now}",
        v.gen_time
    );
}

#[test]
fn token_for_another_imprint_is_detected() {
    let tsa = LocalTsa::start().unwrap();
    let other = b"dodvpn-audit/0123456789abcdef\n41\nAAAA\ntime 1\n";
    let tok = token_for(&tsa, other, [1; 8]);
    // A genuine token, but for another checkpoint.
    assert!(verify(&tok, &imprint_of(other), &tsa.ca_der, None).is_ok());
    assert_eq!(
        verify(&tok, &imprint_of(BODY), &tsa.ca_der, None).unwrap_err(),
        TspError::WrongImprint
    );
}

#[test]
fn tsa_cert_without_timestamping_eku_is_refused() {
    let tsa = LocalTsa::start().unwrap();
    let tok = token_for(&tsa, BODY, [2; 8]);
    let forged = tsa.resign_without_eku(&tok).unwrap();
    // Same TSTInfo, a valid CMS signature by a certificate of the same CA: only the EKU differs.
    assert_eq!(
        verify(&forged, &imprint_of(BODY), &tsa.ca_der, None).unwrap_err(),
        TspError::NoTimestampingEku
    );
}

#[test]
fn another_ca_or_a_changed_byte_is_refused() {
    let tsa = LocalTsa::start().unwrap();
    let other_ca = LocalTsa::start().unwrap();
    let tok = token_for(&tsa, BODY, [3; 8]);
    let e = verify(&tok, &imprint_of(BODY), &other_ca.ca_der, None).unwrap_err();
    assert_eq!(e.code(), "timestamp_untrusted", "{e}");
    // The wrong nonce.
    assert_eq!(
        verify(&tok, &imprint_of(BODY), &tsa.ca_der, Some([4; 8])).unwrap_err(),
        TspError::NonceMismatch
    );
    // The last bytes are the signature: any change there must fail, never panic.
    let mut bad = tok.clone();
    let n = bad.len();
    bad[n - 5] ^= 0x01;
    assert!(verify(&bad, &imprint_of(BODY), &tsa.ca_der, None).is_err());
    // Every single-byte change anywhere is an error or (if it hit unsigned
    // metadata) still the same verdict; never a panic.
    for i in (0..tok.len()).step_by(7) {
        let mut t = tok.clone();
        t[i] ^= 0x80;
        let _ = verify(&t, &imprint_of(BODY), &tsa.ca_der, None);
    }
}

#[test]
fn the_http_responder_answers_a_posted_request() {
    let tsa = LocalTsa::start().unwrap();
    let req = request(&imprint_of(BODY), [5; 8]).unwrap();
    // Plain HTTP/1.1 over loopback, as the centre's client does.
    use std::io::{Read, Write};
    let addr = tsa
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/tsa");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /tsa HTTP/1.1\r\nHost: x\r\nContent-Type: application/timestamp-query\r\nContent-Length: {}\r\n\r\n",
        req.len()
    )
    .unwrap();
    s.write_all(&req).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let at = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(resp.starts_with(b"HTTP/1.1 200"));
    let tok = token_from_response(&resp[at..]).unwrap();
    verify(&tok, &imprint_of(BODY), &tsa.ca_der, Some([5; 8])).unwrap();
}
