//! Untrusted bytes never panic the parsers (R-OPS-3).

use dodvpn_pki::*;
use proptest::prelude::*;
use std::sync::OnceLock;

struct Fixture {
    _dir: tempfile::TempDir,
    pki: Pki,
    cert: Vec<u8>,
    crl: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (pki, _) = Pki::create(&dir.path().join("pki"), &["centre.test".to_string()]).unwrap();
        let cert = pki.tls_server_cert_chain_der().remove(0);
        let crl_pem = pki
            .crl_pem(
                Tier::Device,
                &[RevokedEntry {
                    serial: 5,
                    revoked_at_unix: 0,
                }],
                1,
                1_700_000_000,
                60,
            )
            .unwrap();
        let crl = pem::parse(&crl_pem).unwrap().into_contents();
        Fixture {
            _dir: dir,
            pki,
            cert,
            crl,
        }
    })
}

fn mutate(base: &[u8], edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    let mut v = base.to_vec();
    for (i, b) in edits {
        let n = v.len();
        v[i % n] ^= b | 1;
    }
    v.truncate(v.len() - cut % v.len());
    v
}

proptest! {
    #[test]
    fn inspect_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = inspect(&bytes);
    }

    #[test]
    fn mutated_certs_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let f = fixture();
        let bytes = mutate(&f.cert, &edits, cut);
        let _ = inspect(&bytes);
        let _ = validate(&bytes, Tier::Device, f.pki.root_pem(), 0, &|_| false);
        let _ = validate_profile(&bytes, Profile::CentreTls, f.pki.root_pem(), 1_800_000_000, &|_| false);
    }

    #[test]
    fn crl_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048), text in ".{0,200}") {
        let f = fixture();
        let _ = crl_revoked_serials(&text, f.pki.device_ca_pem());
        let wrapped = pem::encode(&pem::Pem::new("X509 CRL", bytes.clone()));
        let _ = crl_revoked_serials(&wrapped, f.pki.device_ca_pem());
        let _ = crl_revoked_serials(f.pki.device_ca_pem(), &text);
        let _ = verify_blob(&text, &bytes, &bytes);
    }

    #[test]
    fn mutated_crls_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let f = fixture();
        let wrapped = pem::encode(&pem::Pem::new("X509 CRL", mutate(&f.crl, &edits, cut)));
        let _ = crl_revoked_serials(&wrapped, f.pki.device_ca_pem());
    }
}
