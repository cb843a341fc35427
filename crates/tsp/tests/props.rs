//! Property tests of the RFC 3161 parsers (issue 15): arbitrary and mutated
//! input gives an error, never a panic; a token only verifies for its own imprint.

use dodvpn_tsp::testing::LocalTsa;
use dodvpn_tsp::{imprint_of, request, token_from_response, verify, TspError};
use proptest::prelude::*;
use std::sync::OnceLock;

/// One real token from openssl, made once for all cases.
fn fixture() -> &'static (LocalTsa, Vec<u8>, [u8; 32]) {
    static F: OnceLock<(LocalTsa, Vec<u8>, [u8; 32])> = OnceLock::new();
    F.get_or_init(|| {
        let tsa = LocalTsa::start().unwrap();
        let imprint = imprint_of(b"dodvpn-audit/props\n7\nAAAA\ntime 7\n");
        let resp = tsa.reply(&request(&imprint, [7; 8]).unwrap()).unwrap();
        let tok = token_from_response(&resp).unwrap();
        (tsa, tok, imprint)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = token_from_response(&b);
        prop_assert!(verify(&b, &[0; 32], &b, None).is_err());
    }

    #[test]
    fn a_token_verifies_only_for_its_own_imprint(other in any::<[u8; 32]>()) {
        let (tsa, tok, imprint) = fixture();
        prop_assert!(verify(tok, imprint, &tsa.ca_der, Some([7; 8])).is_ok());
        if &other != imprint {
            prop_assert_eq!(verify(tok, &other, &tsa.ca_der, None).unwrap_err(), TspError::WrongImprint);
        }
    }

    #[test]
    fn mutated_tokens_never_panic_and_never_change_the_verdict_silently(
        at in any::<prop::sample::Index>(), bit in 0u8..8, cut in any::<prop::sample::Index>()
    ) {
        let (tsa, tok, imprint) = fixture();
        let mut t = tok.clone();
        let i = at.index(t.len());
        t[i] ^= 1 << bit;
        if let Ok(v) = verify(&t, imprint, &tsa.ca_der, None) {
            // Only bytes outside what is signed and checked may change (e.g. unsigned
            // certificate fields are impossible: certificates are signed too), so an
            // accepted mutation must still carry the same genTime and policy.
            let orig = verify(tok, imprint, &tsa.ca_der, None).unwrap();
            prop_assert_eq!(v.gen_time, orig.gen_time);
            prop_assert_eq!(v.policy, orig.policy);
        }
        let n = cut.index(tok.len());
        prop_assert!(verify(&tok[..n], imprint, &tsa.ca_der, None).is_err());
    }

    #[test]
    fn requests_round_trip(imprint in any::<[u8; 32]>(), nonce in any::<[u8; 8]>()) {
        let der = request(&imprint, nonce).unwrap();
        use der::Decode;
        let r = x509_tsp::TimeStampReq::from_der(&der).unwrap();
        prop_assert_eq!(r.message_imprint.hashed_message.as_bytes(), &imprint[..]);
        prop_assert!(r.cert_req);
    }
}
