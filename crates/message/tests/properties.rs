//! Properties: any content goes through for any set of recipients, and no input at all
//! makes the parser panic.
mod common;

use std::sync::OnceLock;

use common::{Party, Pki};
use dodvpn_message::{decrypt, open, seal, verify, Recipient, SealOptions, VerifyOptions};
use proptest::prelude::*;
use rand_core::OsRng;

struct World {
    pki: Pki,
    parties: Vec<Party>,
    sample: Vec<u8>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let pki = Pki::new();
        let parties = vec![
            pki.issue("p256", "p256"),
            pki.issue("p384", "p384"),
            pki.issue("rsa", "rsa"),
        ];
        let sample = dodvpn_message::sign_and_seal(
            b"sample",
            &parties[0].key,
            1_800_000_000,
            &parties
                .iter()
                .map(|p| Recipient {
                    cert: p.cert.clone(),
                })
                .collect::<Vec<_>>(),
            &SealOptions::default(),
            &mut OsRng,
        )
        .unwrap();
        World {
            pki,
            parties,
            sample,
        }
    })
}

fn never(_: &x509_cert::Certificate) -> bool {
    false
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_content_to_any_recipients_round_trips(content in proptest::collection::vec(any::<u8>(), 0..4096), mask in 1u8..8) {
        let w = world();
        let chosen: Vec<&Party> = w.parties.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, p)| p).collect();
        let rs: Vec<Recipient> = chosen.iter().map(|p| Recipient { cert: p.cert.clone() }).collect();
        let msg = seal(&content, &rs, &SealOptions::default(), &mut OsRng).unwrap();
        for (i, p) in w.parties.iter().enumerate() {
            let r = decrypt(&msg, &[&p.key]);
            if mask & (1 << i) != 0 {
                prop_assert_eq!(&*r.unwrap().1, &content[..]);
            } else {
                prop_assert_eq!(r.unwrap_err(), dodvpn_message::Error::NotARecipient);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let w = world();
        let anchors = [w.pki.ca.clone()];
        let opts = VerifyOptions { trust_anchors: &anchors, is_revoked: &never };
        let _ = decrypt(&bytes, &[&w.parties[0].key]);
        let _ = open(&bytes, &[&w.parties[2].key], &opts);
        let _ = verify(&bytes, &opts);
    }

    /// A real message with bytes flipped: never a panic, and never a wrong plaintext.
    #[test]
    fn flipped_bytes_are_refused_or_harmless(at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let w = world();
        let mut m = w.sample.clone();
        let i = at.index(m.len());
        m[i] ^= flip;
        let anchors = [w.pki.ca.clone()];
        let opts = VerifyOptions { trust_anchors: &anchors, is_revoked: &never };
        for p in &w.parties {
            if let Ok(o) = open(&m, &[&p.key], &opts) {
                // Only changes outside what is authenticated can leave it openable (e.g. another
                // recipient's info): the content and the signer must still be the same.
                prop_assert_eq!(&*o.content, b"sample");
                prop_assert_eq!(o.signature.unwrap().signer, w.parties[0].cert.clone());
            }
        }
    }
}
