//! Behaviour of the CA side, validation, CRLs, blob signatures, the file key
//! store and the rustls adapter (R-PKI-1..5).

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use dodvpn_pki::*;

fn names() -> Vec<String> {
    vec!["centre.test".to_string(), "127.0.0.1".to_string()]
}

fn new_pki() -> (tempfile::TempDir, Pki, PkiPaths) {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let (pki, paths) = Pki::create(&pki_dir, &names()).unwrap();
    (dir, pki, paths)
}

fn new_store() -> (tempfile::TempDir, FileKeyStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = FileKeyStore::open(&dir.path().join("ks"), b"correct horse").unwrap();
    (dir, store)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn never(_: u64) -> bool {
    false
}

/// A store holding a tier-1 and a tier-2 key, both certified by `pki`.
fn enrolled(pki: &Pki) -> (tempfile::TempDir, FileKeyStore, IssuedCert, IssuedCert) {
    let (dir, store) = new_store();
    store.generate(Tier::Device).unwrap();
    store.generate(Tier::Service).unwrap();
    let csr1 = csr_pem(&store, Tier::Device, "SN-0001").unwrap();
    let dev = pki
        .issue_device_cert(&csr1, "SN-0001", "RTX-1200", "hospital-a", 1001, 365)
        .unwrap();
    store.put_cert(Tier::Device, &dev.pem).unwrap();
    let csr2 = csr_pem(&store, Tier::Service, "dev-42").unwrap();
    let svc = pki
        .issue_service_cert(&csr2, "dev-42", "hospital-a", 2001, 30)
        .unwrap();
    store.put_cert(Tier::Service, &svc.pem).unwrap();
    (dir, store, dev, svc)
}

fn pem_der(pem_text: &str) -> Vec<u8> {
    pem::parse(pem_text).unwrap().into_contents()
}

#[test]
fn create_then_load_round_trips_and_keys_are_0600() {
    let (_tmp, pki, paths) = new_pki();
    for key in [
        &paths.root_key,
        &paths.device_ca_key,
        &paths.service_ca_key,
        &paths.tls_key,
        &paths.signer_key,
    ] {
        let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }
    let dir_mode = std::fs::metadata(&paths.dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);

    let loaded = Pki::load(&paths.dir).unwrap();
    assert_eq!(loaded.root_pem(), pki.root_pem());
    assert_eq!(loaded.device_ca_pem(), pki.device_ca_pem());
    assert_eq!(loaded.service_ca_pem(), pki.service_ca_pem());
    assert_eq!(loaded.signer_cert_pem(), pki.signer_cert_pem());
    assert_eq!(
        loaded.tls_server_cert_chain_der(),
        pki.tls_server_cert_chain_der()
    );
    assert_eq!(loaded.tls_server_key_der(), pki.tls_server_key_der());
    assert_ne!(pki.device_ca_pem(), pki.service_ca_pem());

    // A loaded PKI issues certificates that validate against the original CA.
    let (_d, store) = new_store();
    store.generate(Tier::Device).unwrap();
    let cert = loaded
        .issue_device_cert(
            &csr_pem(&store, Tier::Device, "x").unwrap(),
            "SN-9",
            "m",
            "o",
            9,
            10,
        )
        .unwrap();
    validate(&cert.der, Tier::Device, pki.device_ca_pem(), now(), &never).unwrap();

    // Centre certificates carry their own profiles and chain to the root.
    let tls = inspect(&pki.tls_server_cert_chain_der()[0]).unwrap();
    assert_eq!(tls.profile, Some(Profile::CentreTls));
    assert!(tls.dns_names.contains(&"centre.test".to_string()));
    validate_profile(
        &pki.tls_server_cert_chain_der()[0],
        Profile::CentreTls,
        pki.root_pem(),
        now(),
        &never,
    )
    .unwrap();
    validate_profile(
        &pem_der(pki.signer_cert_pem()),
        Profile::CentreSigning,
        pki.root_pem(),
        now(),
        &never,
    )
    .unwrap();
}

#[test]
fn create_refuses_to_overwrite_and_load_names_bad_files() {
    let (_tmp, _pki, paths) = new_pki();
    assert!(matches!(
        Pki::create(&paths.dir, &names()),
        Err(PkiError::AlreadyExists(_))
    ));

    std::fs::remove_file(&paths.service_ca_key).unwrap();
    match Pki::load(&paths.dir) {
        Err(PkiError::MissingFile(p)) => assert_eq!(p, paths.service_ca_key),
        other => panic!("expected MissingFile, got {other:?}"),
    }

    // A key file that is not a key, and one that belongs to another cert.
    std::fs::copy(&paths.device_ca_key, &paths.service_ca_key).unwrap();
    match Pki::load(&paths.dir) {
        Err(PkiError::BadFile { path, .. }) => assert_eq!(path, paths.service_ca_cert),
        other => panic!("expected BadFile, got {other:?}"),
    }
    std::fs::remove_file(&paths.service_ca_key).unwrap();
    std::fs::write(&paths.service_ca_key, "garbage").unwrap();
    std::fs::set_permissions(
        &paths.service_ca_key,
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    assert!(matches!(
        Pki::load(&paths.dir),
        Err(PkiError::BadFile { .. })
    ));

    // A world-readable key is refused.
    std::fs::set_permissions(&paths.device_ca_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        Pki::load(&paths.dir),
        Err(PkiError::InsecurePermissions { .. })
    ));

    assert!(matches!(
        Pki::create(&paths.dir.join("sub"), &[]),
        Err(PkiError::InvalidInput(_))
    ));
}

#[test]
fn issued_certs_have_the_profile_of_their_tier() {
    let (_tmp, pki, _) = new_pki();
    let (_d, _store, dev, svc) = enrolled(&pki);

    let info = validate(&dev.der, Tier::Device, pki.device_ca_pem(), now(), &never).unwrap();
    assert_eq!(info.tier, Some(Tier::Device));
    assert_eq!(info.serial, 1001);
    assert_eq!(info.subject_cn.as_deref(), Some("SN-0001"));
    assert_eq!(info.san_uri.as_deref(), Some("urn:dodvpn:device:SN-0001"));
    assert_eq!(info.id.as_deref(), Some("SN-0001"));
    assert!(info.subject.contains("hospital-a"));
    assert_eq!(info.fingerprint_sha256_hex, dev.fingerprint_sha256_hex);
    assert_eq!(info.not_after_unix, dev.not_after_unix);
    assert_eq!(dev.serial, 1001);

    let info = validate(&svc.der, Tier::Service, pki.service_ca_pem(), now(), &never).unwrap();
    assert_eq!(info.tier, Some(Tier::Service));
    assert_eq!(info.id.as_deref(), Some("dev-42"));
    assert_eq!(info.dns_names, vec!["dev-42.dodvpn".to_string()]);
    assert_eq!(pem_der(&svc.pem), svc.der);
}

#[test]
fn the_subject_comes_from_the_ca_not_the_csr() {
    let (_tmp, pki, _) = new_pki();
    let (_d, store) = new_store();
    store.generate(Tier::Device).unwrap();
    let csr = csr_pem(&store, Tier::Device, "I am the root CA").unwrap();
    let cert = pki.issue_device_cert(&csr, "SN-7", "m", "o", 7, 1).unwrap();
    let info = inspect(&cert.der).unwrap();
    assert_eq!(info.subject_cn.as_deref(), Some("SN-7"));
    assert!(!info.subject.contains("root"));
}

#[test]
fn validate_refuses_the_wrong_tier_both_ways() {
    let (_tmp, pki, _) = new_pki();
    let (_d, _store, dev, svc) = enrolled(&pki);
    // Even against the CA that did issue it, the profile decides.
    assert!(matches!(
        validate(&dev.der, Tier::Service, pki.service_ca_pem(), now(), &never),
        Err(PkiError::WrongTier { .. })
    ));
    assert!(matches!(
        validate(&dev.der, Tier::Service, pki.device_ca_pem(), now(), &never),
        Err(PkiError::WrongTier { .. })
    ));
    assert!(matches!(
        validate(&svc.der, Tier::Device, pki.device_ca_pem(), now(), &never),
        Err(PkiError::WrongTier { .. })
    ));
    assert!(matches!(
        validate(&svc.der, Tier::Device, pki.service_ca_pem(), now(), &never),
        Err(PkiError::WrongTier { .. })
    ));
    // Centre certificates are no tier certificates, and CA certs no leaves.
    let tls = &pki.tls_server_cert_chain_der()[0];
    assert!(matches!(
        validate(tls, Tier::Device, pki.root_pem(), now(), &never),
        Err(PkiError::WrongTier { .. })
    ));
    let ca = pem_der(pki.device_ca_pem());
    assert!(matches!(
        validate(&ca, Tier::Device, pki.root_pem(), now(), &never),
        Err(PkiError::WrongTier { .. })
    ));
}

#[test]
fn validate_refuses_expired_and_not_yet_valid() {
    let (_tmp, pki, _) = new_pki();
    let (_d, _store, dev, svc) = enrolled(&pki);
    let later = svc.not_after_unix + 1;
    match validate(&svc.der, Tier::Service, pki.service_ca_pem(), later, &never) {
        Err(PkiError::Expired { not_after_unix, .. }) => {
            assert_eq!(not_after_unix, svc.not_after_unix)
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    // Valid on its last second.
    validate(
        &svc.der,
        Tier::Service,
        pki.service_ca_pem(),
        svc.not_after_unix,
        &never,
    )
    .unwrap();
    let earlier = now() - 3600;
    assert!(matches!(
        validate(&dev.der, Tier::Device, pki.device_ca_pem(), earlier, &never),
        Err(PkiError::NotYetValid { .. })
    ));
}

#[test]
fn validate_refuses_revoked_serials() {
    let (_tmp, pki, _) = new_pki();
    let (_d, _store, dev, _svc) = enrolled(&pki);
    let revoked = |s: u64| s == 1001;
    assert!(matches!(
        validate(&dev.der, Tier::Device, pki.device_ca_pem(), now(), &revoked),
        Err(PkiError::Revoked { serial: 1001 })
    ));
    let other = |s: u64| s == 1002;
    validate(&dev.der, Tier::Device, pki.device_ca_pem(), now(), &other).unwrap();
}

#[test]
fn validate_refuses_a_foreign_ca_and_a_bad_signature() {
    let (_tmp, pki, _) = new_pki();
    let (_tmp2, foreign, _) = new_pki();
    let (_d, _store, dev, _svc) = enrolled(&foreign);
    assert!(matches!(
        validate(&dev.der, Tier::Device, pki.device_ca_pem(), now(), &never),
        Err(PkiError::UnknownIssuer { .. })
    ));

    let (_d2, _store2, mine, _) = enrolled(&pki);
    let mut tampered = mine.der.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01; // inside the signature value
    assert!(matches!(
        validate(&tampered, Tier::Device, pki.device_ca_pem(), now(), &never),
        Err(PkiError::BadSignature)
    ));

    assert!(matches!(
        validate(
            b"not a certificate",
            Tier::Device,
            pki.device_ca_pem(),
            now(),
            &never
        ),
        Err(PkiError::Malformed(_))
    ));
}

#[test]
fn issuing_refuses_a_csr_with_a_bad_signature_and_bad_names() {
    let (_tmp, pki, _) = new_pki();
    let (_d, store) = new_store();
    store.generate(Tier::Device).unwrap();
    let csr = csr_pem(&store, Tier::Device, "SN-1").unwrap();
    let mut der = pem_der(&csr);
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let bad = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
    assert!(matches!(
        pki.issue_device_cert(&bad, "SN-1", "m", "o", 1, 1),
        Err(PkiError::BadCsr(_))
    ));
    assert!(matches!(
        pki.issue_device_cert("garbage", "SN-1", "m", "o", 1, 1),
        Err(PkiError::BadCsr(_))
    ));
    assert!(matches!(
        pki.issue_device_cert(&csr, "SN 1/..", "m", "o", 1, 1),
        Err(PkiError::InvalidInput(_))
    ));
    assert!(matches!(
        pki.issue_service_cert(&csr, "dev.42", "o", 1, 1),
        Err(PkiError::InvalidInput(_))
    ));
    assert!(matches!(
        pki.issue_device_cert(&csr, "SN-1", "m", "o", 0, 1),
        Err(PkiError::InvalidInput(_))
    ));
    assert!(matches!(
        pki.issue_device_cert(&csr, "SN-1", "m", "o", 1, 0),
        Err(PkiError::InvalidInput(_))
    ));
    pki.issue_device_cert(&csr, "SN-1", "m", "o", u64::MAX, 1)
        .map(|c| assert_eq!(inspect(&c.der).unwrap().serial, u64::MAX))
        .unwrap();
}

#[test]
fn crl_lists_revoked_serials_and_is_bound_to_its_ca() {
    let (_tmp, pki, _) = new_pki();
    let (_tmp2, foreign, _) = new_pki();
    let t = now();
    let revoked = [
        RevokedEntry {
            serial: 1001,
            revoked_at_unix: t - 60,
        },
        RevokedEntry {
            serial: u64::MAX,
            revoked_at_unix: t,
        },
    ];
    let crl = pki.crl_pem(Tier::Device, &revoked, 7, t, 3600).unwrap();
    assert!(crl.starts_with("-----BEGIN X509 CRL-----"));
    let info = crl_info(&crl, pki.device_ca_pem()).unwrap();
    assert_eq!(info.revoked_serials, vec![1001, u64::MAX]);
    assert_eq!(info.crl_number, Some(7));
    assert_eq!(info.this_update_unix, t);
    assert_eq!(info.next_update_unix, Some(t + 3600));
    assert_eq!(
        crl_revoked_serials(&crl, pki.device_ca_pem()).unwrap(),
        vec![1001, u64::MAX]
    );

    // Signed by the device CA: the service CA and a foreign device CA refuse it.
    assert!(matches!(
        crl_revoked_serials(&crl, pki.service_ca_pem()),
        Err(PkiError::UnknownIssuer { .. })
    ));
    assert!(matches!(
        crl_revoked_serials(&crl, foreign.device_ca_pem()),
        Err(PkiError::UnknownIssuer { .. })
    ));
    let service_crl = pki.crl_pem(Tier::Service, &[], 1, t, 60).unwrap();
    assert!(crl_revoked_serials(&service_crl, pki.service_ca_pem())
        .unwrap()
        .is_empty());

    let mut der = pem_der(&crl);
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let tampered = pem::encode(&pem::Pem::new("X509 CRL", der));
    assert!(matches!(
        crl_revoked_serials(&tampered, pki.device_ca_pem()),
        Err(PkiError::BadSignature)
    ));
    assert!(matches!(
        pki.crl_pem(Tier::Device, &[], 1, t, 0),
        Err(PkiError::InvalidInput(_))
    ));
}

#[test]
fn crl_is_accepted_by_openssl() {
    // An independent RFC 5280 implementation agrees (skipped quietly only if openssl is absent).
    let Ok(status) = std::process::Command::new("openssl")
        .arg("version")
        .output()
    else {
        return;
    };
    assert!(status.status.success());
    let (tmp, pki, _) = new_pki();
    let crl = pki
        .crl_pem(
            Tier::Service,
            &[RevokedEntry {
                serial: 77,
                revoked_at_unix: now(),
            }],
            2,
            now(),
            600,
        )
        .unwrap();
    let crl_path = tmp.path().join("crl.pem");
    let ca_path = tmp.path().join("ca.pem");
    std::fs::write(&crl_path, &crl).unwrap();
    std::fs::write(&ca_path, pki.service_ca_pem()).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["crl", "-noout", "-text", "-in"])
        .arg(&crl_path)
        .arg("-CAfile")
        .arg(&ca_path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("verify OK"), "{text}");
    assert!(text.contains("4D"), "serial 77 = 0x4D missing: {text}");
}

/// `openssl verify` with RFC 5280 policy processing: each leaf is accepted
/// under its own profile OID only.
fn openssl_verify(
    dir: &std::path::Path,
    chain_pems: &[&str],
    leaf_pem: &str,
    purpose: &str,
    policy: Profile,
) -> bool {
    let ca = dir.join("chain.pem");
    let leaf = dir.join("leaf.pem");
    std::fs::write(&ca, chain_pems.concat()).unwrap();
    std::fs::write(&leaf, leaf_pem).unwrap();
    let out = std::process::Command::new("openssl")
        .args([
            "verify",
            "-x509_strict",
            "-explicit_policy",
            "-purpose",
            purpose,
            "-policy",
            &policy.policy_oid_string(),
            "-CAfile",
        ])
        .arg(&ca)
        .arg(&leaf)
        .output()
        .unwrap();
    out.status.success()
}

#[test]
fn openssl_accepts_each_profile_only_as_itself() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        return;
    }
    let (tmp, pki, _) = new_pki();
    let (_d, _store, dev, svc) = enrolled(&pki);
    let d = tmp.path();
    assert!(openssl_verify(
        d,
        &[pki.root_pem(), pki.device_ca_pem()],
        &dev.pem,
        "sslclient",
        Profile::Device
    ));
    assert!(!openssl_verify(
        d,
        &[pki.root_pem(), pki.device_ca_pem()],
        &dev.pem,
        "sslclient",
        Profile::Service
    ));
    assert!(!openssl_verify(
        d,
        &[pki.root_pem(), pki.device_ca_pem()],
        &dev.pem,
        "sslserver",
        Profile::Device
    ));
    assert!(openssl_verify(
        d,
        &[pki.root_pem(), pki.service_ca_pem()],
        &svc.pem,
        "sslserver",
        Profile::Service
    ));
    assert!(openssl_verify(
        d,
        &[pki.root_pem(), pki.service_ca_pem()],
        &svc.pem,
        "sslclient",
        Profile::Service
    ));
    assert!(!openssl_verify(
        d,
        &[pki.root_pem(), pki.service_ca_pem()],
        &svc.pem,
        "sslclient",
        Profile::Device
    ));
    assert!(!openssl_verify(
        d,
        &[pki.root_pem(), pki.device_ca_pem()],
        &svc.pem,
        "sslclient",
        Profile::Service
    ));
}

#[test]
fn sign_blob_verifies_and_tampering_is_refused() {
    let (_tmp, pki, _) = new_pki();
    let data = b"connection info v1: hospital-a <-> lab-b";
    let sig = pki.sign_blob(data).unwrap();
    verify_blob(pki.signer_cert_pem(), data, &sig).unwrap();
    assert!(matches!(
        verify_blob(
            pki.signer_cert_pem(),
            b"connection info v1: hospital-a <-> evil",
            &sig
        ),
        Err(PkiError::BadSignature)
    ));
    let mut bad = sig.clone();
    let n = bad.len() - 1;
    bad[n] ^= 1;
    assert!(matches!(
        verify_blob(pki.signer_cert_pem(), data, &bad),
        Err(PkiError::BadSignature)
    ));
    // Only a centre-signing certificate may vouch for a blob.
    assert!(matches!(
        verify_blob(pki.device_ca_pem(), data, &sig),
        Err(PkiError::WrongTier { .. })
    ));
    let (_tmp2, other, _) = new_pki();
    assert!(matches!(
        verify_blob(other.signer_cert_pem(), data, &sig),
        Err(PkiError::BadSignature)
    ));
}

#[test]
fn file_store_keys_are_encrypted_private_and_per_tier() {
    let dir = tempfile::tempdir().unwrap();
    let ks = dir.path().join("ks");
    let store = FileKeyStore::open(&ks, b"correct horse").unwrap();
    assert_eq!(store.public_key(Tier::Device).unwrap(), None);
    assert!(matches!(
        store.sign(Tier::Device, b"x"),
        Err(PkiError::NoKey(Tier::Device))
    ));
    let spki = store.generate(Tier::Device).unwrap();
    assert!(matches!(
        store.generate(Tier::Device),
        Err(PkiError::KeyExists(Tier::Device))
    ));
    assert_eq!(
        store.public_key(Tier::Service).unwrap(),
        None,
        "tiers are separate"
    );

    assert_eq!(
        std::fs::metadata(&ks).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for entry in std::fs::read_dir(&ks).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            assert_eq!(
                entry.metadata().unwrap().permissions().mode() & 0o777,
                0o600,
                "{:?}",
                entry.path()
            );
        }
    }

    // At rest: neither the PKCS#8 structure nor the public point appear in clear.
    let raw = std::fs::read(ks.join("tier1.key.enc")).unwrap();
    let point = &spki[spki.len() - 65..];
    let pkcs8_ec_header = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    assert!(!raw.windows(point.len()).any(|w| w == point));
    assert!(!raw
        .windows(pkcs8_ec_header.len())
        .any(|w| w == pkcs8_ec_header));

    // The signature verifies with the public key the store reports.
    let sig = store.sign(Tier::Device, b"hello").unwrap();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point)
        .verify(b"hello", &sig)
        .unwrap();

    drop(store);
    match FileKeyStore::open(&ks, b"wrong horse") {
        Err(PkiError::WrongPassphrase(p)) => assert_eq!(p, ks),
        other => panic!("expected WrongPassphrase, got {other:?}"),
    }
    let reopened = FileKeyStore::open(&ks, b"correct horse").unwrap();
    assert_eq!(
        reopened.public_key(Tier::Device).unwrap(),
        Some(spki.clone())
    );

    // Rotation gives a new key and drops the old certificate.
    let new_spki = reopened.replace(Tier::Device).unwrap();
    assert_ne!(new_spki, spki);
    assert!(reopened.describe().contains("file key store"));
}

#[test]
fn file_store_put_cert_checks_the_key_and_files_round_trip() {
    let (_tmp, pki, _) = new_pki();
    let (_d, store, dev, svc) = enrolled(&pki);
    assert_eq!(
        store.cert(Tier::Device).unwrap().as_deref(),
        Some(dev.pem.as_str())
    );
    // A certificate for the tier-2 key is not accepted as the tier-1 cert.
    assert!(matches!(
        store.put_cert(Tier::Device, &svc.pem),
        Err(PkiError::KeyMismatch(Tier::Device))
    ));
    assert!(store.put_cert(Tier::Device, "junk").is_err());
    assert_eq!(
        store.cert(Tier::Device).unwrap().as_deref(),
        Some(dev.pem.as_str()),
        "unchanged after refusals"
    );

    store
        .put_file("ca-bundle.pem", pki.root_pem().as_bytes())
        .unwrap();
    store.put_file("ca-bundle.pem", b"v2").unwrap();
    assert_eq!(
        store.get_file("ca-bundle.pem").unwrap().as_deref(),
        Some(&b"v2"[..])
    );
    assert_eq!(store.get_file("absent").unwrap(), None);
    for bad in ["../escape", "", ".hidden", "a/b"] {
        assert!(
            matches!(store.put_file(bad, b"x"), Err(PkiError::InvalidInput(_))),
            "{bad:?}"
        );
    }

    store.replace(Tier::Service).unwrap();
    assert_eq!(store.cert(Tier::Service).unwrap(), None);
}

// ---- rustls end to end: mTLS with a key that never leaves the store ----

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(pki: &Pki, client_ca_pem: &str) -> Arc<rustls::ServerConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pem_der(client_ca_pem).into()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .unwrap();
    let chain = pki
        .tls_server_cert_chain_der()
        .into_iter()
        .map(Into::into)
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(pki.tls_server_key_der().into());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

fn client_config(
    pki: &Pki,
    resolver: Arc<dyn rustls::client::ResolvesClientCert>,
    version: &'static rustls::SupportedProtocolVersion,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pem_der(pki.root_pem()).into()).unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_cert_resolver(resolver),
    )
}

/// Run a handshake in memory; Ok(peer cert seen by the server).
fn handshake(
    client_cfg: Arc<rustls::ClientConfig>,
    server_cfg: Arc<rustls::ServerConfig>,
) -> Result<Vec<u8>, rustls::Error> {
    use std::io::{Read, Write};
    let mut client = rustls::ClientConnection::new(client_cfg, "centre.test".try_into().unwrap())?;
    let mut server = rustls::ServerConnection::new(server_cfg)?;
    client.writer().write_all(b"ping").unwrap();
    for _ in 0..20 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        server.read_tls(&mut buf.as_slice()).unwrap();
        server.process_new_packets()?;
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        client.read_tls(&mut buf.as_slice()).unwrap();
        client.process_new_packets()?;
        if !client.is_handshaking() && !server.is_handshaking() {
            let mut buf = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut buf).unwrap();
            }
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets()?;
            let mut got = [0u8; 4];
            server.reader().read_exact(&mut got).unwrap();
            assert_eq!(&got, b"ping");
            return Ok(server.peer_certificates().unwrap()[0].to_vec());
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn rustls_mtls_with_a_key_store_key() {
    let (_tmp, pki, _) = new_pki();
    let (_d, store, dev, _svc) = enrolled(&pki);
    let store: Arc<dyn KeyStore> = Arc::new(store);
    let server_device = server_config(&pki, pki.device_ca_pem());
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let resolver = client_cert_resolver(store.clone(), Tier::Device).unwrap();
        let peer = handshake(
            client_config(&pki, resolver, version),
            server_device.clone(),
        )
        .unwrap();
        assert_eq!(peer, dev.der);
    }

    // The tier-2 certificate is not accepted where tier 1 is required.
    let resolver = client_cert_resolver(store.clone(), Tier::Service).unwrap();
    assert!(handshake(
        client_config(&pki, resolver, &rustls::version::TLS13),
        server_device.clone()
    )
    .is_err());

    // A device enrolled with a foreign PKI is refused.
    let (_tmp2, foreign, _) = new_pki();
    let (_d2, foreign_store, _, _) = enrolled(&foreign);
    let resolver = client_cert_resolver(Arc::new(foreign_store), Tier::Device).unwrap();
    assert!(handshake(
        client_config(&pki, resolver, &rustls::version::TLS13),
        server_device
    )
    .is_err());

    // No certificate yet: the resolver cannot be built.
    let (_d3, empty) = new_store();
    empty.generate(Tier::Device).unwrap();
    assert!(client_cert_resolver(Arc::new(empty), Tier::Device).is_err());
}

#[test]
fn certificate_keys_outside_the_accepted_set_are_refused() {
    let (_d, pki, _p) = new_pki();
    let (_k, _store, dev, svc) = enrolled(&pki);
    check_certificate_key(&dev.der).expect("an issued device certificate has an accepted key");
    check_certificate_key(&svc.der).expect("an issued service certificate has an accepted key");
    // An Ed25519 key is not among R-PKI-5's algorithms: refused, by name.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["x.example".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let err = check_certificate_key(cert.der()).unwrap_err().to_string();
    assert!(err.contains("public key algorithm"), "{err}");
    assert!(check_certificate_key(b"not a certificate").is_err());
}
