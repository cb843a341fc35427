//! The IKE peer-certificate validator shared by `dodvpn tunnel` and the agent: what it
//! accepts and what it refuses, with certificates made on the spot.

use std::time::Duration;

use dodvpn_tunnel::peer::{PeerCertValidator, UnixTime, EKU_CLIENT_AUTH, EKU_SERVER_AUTH};
use dodvpn_wire::Identification;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn new_ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = p.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(p, key),
    }
}

/// An end-entity certificate for `dns`, valid in 2025..2030, serial `serial`.
fn leaf(ca: &Ca, dns: &str, serial: u64, eku: &[ExtendedKeyUsagePurpose]) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![dns.to_string()]).unwrap();
    p.serial_number = Some(SerialNumber::from(serial));
    p.not_before = date_time_ymd(2025, 1, 1);
    p.not_after = date_time_ymd(2030, 1, 1);
    p.extended_key_usages = eku.to_vec();
    p.signed_by(&key, &ca.issuer).unwrap().der().to_vec()
}

fn both() -> Vec<ExtendedKeyUsagePurpose> {
    vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ]
}

/// 2027-01-01, inside the leaves' validity.
fn in_2027() -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(1_798_761_600))
}

fn fqdn(s: &str) -> Identification {
    Identification::fqdn(s)
}

#[test]
fn a_certificate_of_the_ca_for_the_identity_is_accepted() {
    let ca = new_ca("test CA");
    let v = PeerCertValidator::from_pem(ca.pem.as_bytes()).unwrap();
    for eku in [vec![], both(), vec![ExtendedKeyUsagePurpose::ServerAuth]] {
        let der = leaf(&ca, "peer.example", 1, &eku);
        v.validate_at(&der, &fqdn("peer.example"), in_2027())
            .unwrap_or_else(|e| panic!("EKU {eku:?}: {e}"));
    }
}

#[test]
fn an_expired_or_not_yet_valid_certificate_is_refused() {
    let ca = new_ca("test CA");
    let v = PeerCertValidator::from_pem(ca.pem.as_bytes()).unwrap();
    let der = leaf(&ca, "peer.example", 1, &both());
    let after = UnixTime::since_unix_epoch(Duration::from_secs(1_900_000_000)); // 2030-03
    let e = v
        .validate_at(&der, &fqdn("peer.example"), after)
        .unwrap_err();
    assert!(e.contains("refused") && e.contains("Expired"), "{e}");
    let before = UnixTime::since_unix_epoch(Duration::from_secs(1_700_000_000)); // 2023-11
    let e = v
        .validate_at(&der, &fqdn("peer.example"), before)
        .unwrap_err();
    assert!(e.contains("NotValidYet"), "{e}");
}

#[test]
fn a_certificate_of_another_ca_is_refused() {
    let ours = new_ca("our CA");
    let theirs = new_ca("their CA");
    let v = PeerCertValidator::from_pem(ours.pem.as_bytes()).unwrap();
    let der = leaf(&theirs, "peer.example", 1, &both());
    let e = v
        .validate_at(&der, &fqdn("peer.example"), in_2027())
        .unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
}

#[test]
fn another_identity_is_refused() {
    let ca = new_ca("test CA");
    let v = PeerCertValidator::from_pem(ca.pem.as_bytes()).unwrap();
    let der = leaf(&ca, "peer.example", 1, &both());
    let e = v
        .validate_at(&der, &fqdn("other.example"), in_2027())
        .unwrap_err();
    assert!(
        e.contains("not issued to identity \"other.example\""),
        "{e}"
    );
    // By default an IP identity is not bound to the certificate; when required it is.
    let ip = Identification::ip("192.0.2.1".parse().unwrap());
    v.validate_at(&der, &ip, in_2027()).unwrap();
    let strict = PeerCertValidator::from_pem(ca.pem.as_bytes())
        .unwrap()
        .requiring_identity();
    let e = strict.validate_at(&der, &ip, in_2027()).unwrap_err();
    assert!(e.contains("not issued to identity"), "{e}");
}

#[test]
fn a_revoked_serial_is_refused() {
    let ca = new_ca("test CA");
    let v = PeerCertValidator::from_pem(ca.pem.as_bytes())
        .unwrap()
        .with_revocation(|serial| serial == [0x01, 0x02]);
    let revoked = leaf(&ca, "peer.example", 0x0102, &both());
    let e = v
        .validate_at(&revoked, &fqdn("peer.example"), in_2027())
        .unwrap_err();
    assert!(e.contains("serial 0102 is revoked"), "{e}");
    let fine = leaf(&ca, "peer.example", 0x0103, &both());
    v.validate_at(&fine, &fqdn("peer.example"), in_2027())
        .unwrap();
}

#[test]
fn required_usages_must_all_be_present() {
    let ca = new_ca("test CA");
    let v = PeerCertValidator::from_pem(ca.pem.as_bytes())
        .unwrap()
        .requiring_usages(&[EKU_CLIENT_AUTH, EKU_SERVER_AUTH]);
    v.validate_at(
        &leaf(&ca, "p.example", 1, &both()),
        &fqdn("p.example"),
        in_2027(),
    )
    .unwrap();
    for eku in [vec![], vec![ExtendedKeyUsagePurpose::ClientAuth]] {
        let der = leaf(&ca, "p.example", 1, &eku);
        let e = v
            .validate_at(&der, &fqdn("p.example"), in_2027())
            .unwrap_err();
        assert!(e.contains("RequiredEkuNotFound"), "EKU {eku:?}: {e}");
    }
}

#[test]
fn the_profile_check_comes_first_and_can_refuse() {
    let ca = new_ca("test CA");
    let v = PeerCertValidator::from_pem(ca.pem.as_bytes())
        .unwrap()
        .with_profile(|_| Err("wrong certificate profile".into()));
    // Even a certificate of another CA gets the profile answer.
    let der = leaf(&new_ca("their CA"), "p.example", 1, &both());
    let e = v
        .validate_at(&der, &fqdn("p.example"), in_2027())
        .unwrap_err();
    assert_eq!(e, "wrong certificate profile");
}

#[test]
fn garbage_and_ca_files_without_certificates_are_clear_errors() {
    let ca = new_ca("test CA");
    let v = PeerCertValidator::from_pem(ca.pem.as_bytes()).unwrap();
    let e = v
        .validate_at(b"\x30\x03\x02\x01", &fqdn("p.example"), in_2027())
        .unwrap_err();
    assert!(e.contains("unreadable"), "{e}");
    let e = PeerCertValidator::from_pem(b"not pem").err().unwrap();
    assert!(e.to_string().contains("no certificate"), "{e}");
    // A CA certificate presented as the peer's is refused.
    let ca_der = rustls_pki_types::CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap();
    let e = v
        .validate_at(&ca_der, &fqdn("p.example"), in_2027())
        .unwrap_err();
    assert!(e.contains("refused"), "{e}");
}

// ---- chains through intermediates (issue 16 point 5) ---------------------------

/// A CA below `parent`; its DER is what a peer sends in a CERT payload.
fn sub_ca(parent: &Ca, name: &str, constraint: BasicConstraints) -> (Ca, Vec<u8>) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.is_ca = IsCa::Ca(constraint);
    p.serial_number = Some(SerialNumber::from(0x77u64));
    p.not_before = date_time_ymd(2025, 1, 1);
    p.not_after = date_time_ymd(2030, 1, 1);
    let cert = p.signed_by(&key, &parent.issuer).unwrap();
    let der = cert.der().to_vec();
    (
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        },
        der,
    )
}

/// A CRL of `ca` listing `serials`.
fn crl(ca: &Ca, serials: &[u64]) -> Vec<u8> {
    let p = rcgen::CertificateRevocationListParams {
        this_update: date_time_ymd(2026, 1, 1),
        next_update: date_time_ymd(2029, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| rcgen::RevokedCertParams {
                serial_number: SerialNumber::from(*s),
                revocation_time: date_time_ymd(2026, 1, 1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    p.signed_by(&ca.issuer).unwrap().der().to_vec()
}

#[test]
fn chains_of_one_and_two_intermediates_are_built_to_the_anchor() {
    let root = new_ca("root");
    let (int1, int1_der) = sub_ca(&root, "int1", BasicConstraints::Unconstrained);
    let (int2, int2_der) = sub_ca(&int1, "int2", BasicConstraints::Unconstrained);
    let v = PeerCertValidator::from_pem(root.pem.as_bytes()).unwrap();
    let id = fqdn("peer.example");
    let one = leaf(&int1, "peer.example", 5, &both());
    v.validate_chain_at(&one, &[&int1_der], &id, in_2027())
        .unwrap();
    let two = leaf(&int2, "peer.example", 6, &both());
    v.validate_chain_at(&two, &[&int2_der, &int1_der], &id, in_2027())
        .unwrap();
    // Any order: the path is searched, not assumed.
    v.validate_chain_at(&two, &[&int1_der, &int2_der], &id, in_2027())
        .unwrap();
    // Without the intermediates the root alone does not reach the leaf.
    let e = v.validate_at(&two, &id, in_2027()).unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
    let e = v
        .validate_chain_at(&two, &[&int2_der], &id, in_2027())
        .unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
    // The trait's entry point is the same check.
    use dodvpn_ike::PeerValidator;
    assert_eq!(v.ca_key_hashes().len(), 1);
    assert_eq!(
        v.ca_key_hashes()[0],
        dodvpn_ike::auth::spki_sha1(&CertificateDer::from_pem_slice(root.pem.as_bytes()).unwrap())
            .unwrap()
    );
}

#[test]
fn path_length_constraint_and_chain_length_are_enforced() {
    let root = new_ca("root");
    // int1 may have no CA below it; int2 below it breaks that.
    let (int1, int1_der) = sub_ca(&root, "int1", BasicConstraints::Constrained(0));
    let (int2, int2_der) = sub_ca(&int1, "int2", BasicConstraints::Unconstrained);
    let v = PeerCertValidator::from_pem(root.pem.as_bytes()).unwrap();
    let id = fqdn("peer.example");
    let two = leaf(&int2, "peer.example", 6, &both());
    let e = v
        .validate_chain_at(&two, &[&int2_der, &int1_der], &id, in_2027())
        .unwrap_err();
    assert!(e.contains("certificate refused"), "{e}");
    let one = leaf(&int1, "peer.example", 7, &both());
    v.validate_chain_at(&one, &[&int1_der], &id, in_2027())
        .unwrap();
    // More than MAX_INTERMEDIATES are not even looked at.
    let many: Vec<&[u8]> = vec![&int1_der; dodvpn_tunnel::peer::MAX_INTERMEDIATES + 1];
    let e = v
        .validate_chain_at(&one, &many, &id, in_2027())
        .unwrap_err();
    assert!(e.contains("intermediate CA certificates sent"), "{e}");
}

#[test]
fn each_element_is_checked_against_its_issuers_crl() {
    let root = new_ca("root");
    let (int1, int1_der) = sub_ca(&root, "int1", BasicConstraints::Unconstrained);
    let id = fqdn("peer.example");
    let good = leaf(&int1, "peer.example", 5, &both());
    let bad = leaf(&int1, "peer.example", 9, &both());
    // The intermediate's CRL revokes serial 9: that leaf is refused, serial 5 passes.
    let v = PeerCertValidator::from_pem(root.pem.as_bytes())
        .unwrap()
        .with_crls(&[crl(&int1, &[9])])
        .unwrap();
    v.validate_chain_at(&good, &[&int1_der], &id, in_2027())
        .unwrap();
    let e = v
        .validate_chain_at(&bad, &[&int1_der], &id, in_2027())
        .unwrap_err();
    assert!(e.contains("Revoked"), "{e}");
    // The root's CRL revokes the intermediate (serial 0x77): everything below it goes.
    let v = PeerCertValidator::from_pem(root.pem.as_bytes())
        .unwrap()
        .with_crls(&[crl(&root, &[0x77])])
        .unwrap();
    let e = v
        .validate_chain_at(&good, &[&int1_der], &id, in_2027())
        .unwrap_err();
    assert!(e.contains("Revoked"), "{e}");
    // A CRL of an unrelated CA (or none for this issuer) leaves the chain alone.
    let other = new_ca("other");
    let v = PeerCertValidator::from_pem(root.pem.as_bytes())
        .unwrap()
        .with_crls(&[crl(&other, &[5, 0x77])])
        .unwrap();
    v.validate_chain_at(&good, &[&int1_der], &id, in_2027())
        .unwrap();
    // Garbage is a clear error at start-up, not a silent pass.
    let e = PeerCertValidator::from_pem(root.pem.as_bytes())
        .unwrap()
        .with_crls(&[b"not a crl".to_vec()])
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("CRL does not parse"), "{e:#}");
}

/// Issue 16 point 7: a refusal is logged at the default level with the certificate's
/// subject and issuer and the reason, as the IKE code calls the validator.
#[test]
fn a_refused_certificate_is_logged_with_subject_issuer_and_reason() {
    use dodvpn_ike::PeerValidator;
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let ours = new_ca("our CA");
    let theirs = new_ca("their CA");
    let v = PeerCertValidator::from_pem(ours.pem.as_bytes()).unwrap();
    let der = leaf(&theirs, "peer.example", 7, &both());
    let good = leaf(&ours, "peer.example", 8, &both());
    tracing::subscriber::with_default(subscriber, || {
        assert!(v.validate(&der, &fqdn("peer.example")).is_err());
        // An accepted certificate leaves no refusal line.
        let _ = v.validate(&good, &fqdn("peer.example"));
    });
    let out = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let refusals: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("peer certificate refused"))
        .collect();
    assert_eq!(refusals.len(), 1, "{out}");
    let l = refusals[0];
    assert!(l.contains("WARN"), "{l}");
    assert!(l.contains("issuer=CN=their CA"), "{l}");
    assert!(l.contains("subject="), "{l}");
    assert!(l.contains("UnknownIssuer"), "{l}");
    assert!(l.contains("peer.example"), "{l}");
}

// ---- property tests of the chain path (issue 16: every parser path gets them) ---------

/// One root, two intermediates below each other and a leaf of the second, made once.
struct Fixture {
    root_pem: String,
    int1: Vec<u8>,
    int2: Vec<u8>,
    leaf: Vec<u8>,
    stranger: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let root = new_ca("root");
        let (int1, int1_der) = sub_ca(&root, "int1", BasicConstraints::Unconstrained);
        let (int2, int2_der) = sub_ca(&int1, "int2", BasicConstraints::Unconstrained);
        let other = new_ca("other root");
        let (_, stranger) = sub_ca(&other, "stranger", BasicConstraints::Unconstrained);
        Fixture {
            root_pem: root.pem,
            int1: int1_der,
            int2: int2_der,
            leaf: leaf(&int2, "peer.example", 9, &both()),
            stranger,
        }
    })
}

mod chain_properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// The path is found whatever the order of the CERT payloads, and an unrelated
        /// CA among them does not spoil it (within the four taken).
        #[test]
        fn any_order_with_a_stranger_is_accepted(order in Just(vec![0usize, 1, 2]).prop_shuffle(), with_stranger in any::<bool>()) {
            let f = fixture();
            let v = PeerCertValidator::from_pem(f.root_pem.as_bytes()).unwrap();
            let all = [&f.int1[..], &f.int2[..], &f.stranger[..]];
            let sent: Vec<&[u8]> = order.iter().filter(|i| with_stranger || **i != 2).map(|i| all[*i]).collect();
            prop_assert!(v.validate_chain_at(&f.leaf, &sent, &fqdn("peer.example"), in_2027()).is_ok());
        }

        /// One byte changed anywhere in the leaf or in an intermediate: refused with a
        /// message, never accepted, never a panic.
        #[test]
        fn a_changed_byte_anywhere_is_refused(which in 0usize..3, pos in any::<prop::sample::Index>(), x in 1u8..=255) {
            let f = fixture();
            let v = PeerCertValidator::from_pem(f.root_pem.as_bytes()).unwrap();
            let (mut leaf, mut int1, mut int2) = (f.leaf.clone(), f.int1.clone(), f.int2.clone());
            let target = match which { 0 => &mut leaf, 1 => &mut int1, _ => &mut int2 };
            let i = pos.index(target.len());
            target[i] ^= x;
            let r = v.validate_chain_at(&leaf, &[&int2, &int1], &fqdn("peer.example"), in_2027());
            prop_assert!(r.is_err(), "accepted with byte {i} of element {which} changed");
            prop_assert!(!r.unwrap_err().is_empty());
        }

        /// Arbitrary bytes as the certificate and as intermediates: an error, no panic.
        #[test]
        fn garbage_chains_are_refused(ee in prop::collection::vec(any::<u8>(), 0..600),
                                      ints in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..6)) {
            let f = fixture();
            let v = PeerCertValidator::from_pem(f.root_pem.as_bytes()).unwrap();
            let ints: Vec<&[u8]> = ints.iter().map(Vec::as_slice).collect();
            prop_assert!(v.validate_chain_at(&ee, &ints, &fqdn("peer.example"), in_2027()).is_err());
            // Garbage intermediates beside the genuine ones never make a good chain fail
            // in a panic, and the real path is still found when they fit in the limit.
            let mut mixed: Vec<&[u8]> = vec![&f.int2, &f.int1];
            mixed.extend(ints.iter().take(2));
            prop_assert!(v.validate_chain_at(&f.leaf, &mixed, &fqdn("peer.example"), in_2027()).is_ok());
        }
    }
}
