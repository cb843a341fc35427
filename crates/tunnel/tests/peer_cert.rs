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
