//! PKCS#11 key store against a real SoftHSM2 token (R-PKI-3). SOFTHSM2_CONF
//! is process-global, so everything runs in this one test function (this file
//! is its own test binary, so no other test shares the variable).

use std::path::Path;
use std::process::Command;

use dodvpn_pki::*;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

#[test]
fn pkcs11_store_on_softhsm2() {
    assert!(
        Path::new(MODULE).exists(),
        "SoftHSM2 is not installed ({MODULE} missing): run `apt-get install -y softhsm2`"
    );
    let tmp = tempfile::tempdir().unwrap();
    let tokens = tmp.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = tmp.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "dodvpn-test",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util not found: run `apt-get install -y softhsm2`");
    assert!(
        out.status.success(),
        "softhsm2-util failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let certs = tmp.path().join("certs");
    match Pkcs11KeyStore::open(Path::new(MODULE), "no-such-token", "1234", &certs) {
        Err(PkiError::Pkcs11(msg)) => assert!(msg.contains("no-such-token"), "{msg}"),
        other => panic!("expected a missing-token error, got {other:?}"),
    }
    let store = Pkcs11KeyStore::open(Path::new(MODULE), "dodvpn-test", "1234", &certs).unwrap();
    assert!(store.describe().contains("dodvpn-test"));
    assert_eq!(store.public_key(Tier::Device).unwrap(), None);

    // Generated on the token, sensitive and not extractable.
    let spki = store.generate(Tier::Device).unwrap();
    assert!(matches!(
        store.generate(Tier::Device),
        Err(PkiError::KeyExists(Tier::Device))
    ));
    assert_eq!(store.public_key(Tier::Device).unwrap(), Some(spki.clone()));
    assert_eq!(
        store.key_protection(Tier::Device).unwrap(),
        (true, false),
        "(CKA_SENSITIVE, CKA_EXTRACTABLE)"
    );

    // Token signatures are DER ECDSA that ring verifies with the reported key.
    let point = &spki[spki.len() - 65..];
    let sig = store.sign(Tier::Device, b"IKE_AUTH octets").unwrap();
    let verifier =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point);
    verifier.verify(b"IKE_AUTH octets", &sig).unwrap();
    assert!(verifier.verify(b"other octets", &sig).is_err());

    // Enrol: CSR signed on the token, cert issued, stored, validated.
    let (pki, _) = Pki::create(&tmp.path().join("pki"), &["centre.test".to_string()]).unwrap();
    let csr = csr_pem(&store, Tier::Device, "SN-HSM").unwrap();
    let cert = pki
        .issue_device_cert(&csr, "SN-HSM", "HSM-box", "clinic-b", 42, 30)
        .unwrap();
    store.put_cert(Tier::Device, &cert.pem).unwrap();
    assert_eq!(
        store.cert(Tier::Device).unwrap().as_deref(),
        Some(cert.pem.as_str())
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    validate(&cert.der, Tier::Device, pki.device_ca_pem(), now, &|_| {
        false
    })
    .unwrap();

    // Tier 2 is a separate key; its cert is not accepted as tier 1.
    store.generate(Tier::Service).unwrap();
    let csr2 = csr_pem(&store, Tier::Service, "dev-hsm").unwrap();
    let svc = pki
        .issue_service_cert(&csr2, "dev-hsm", "clinic-b", 43, 30)
        .unwrap();
    assert!(matches!(
        store.put_cert(Tier::Device, &svc.pem),
        Err(PkiError::KeyMismatch(Tier::Device))
    ));
    store.put_cert(Tier::Service, &svc.pem).unwrap();

    // Keys persist on the token across sessions; a wrong PIN is refused.
    drop(store);
    match Pkcs11KeyStore::open(Path::new(MODULE), "dodvpn-test", "9999", &certs) {
        Err(PkiError::Pkcs11(msg)) => assert!(msg.contains("PIN"), "{msg}"),
        other => panic!("expected a PIN error, got {other:?}"),
    }
    let store = Pkcs11KeyStore::open(Path::new(MODULE), "dodvpn-test", "1234", &certs).unwrap();
    assert_eq!(store.public_key(Tier::Device).unwrap(), Some(spki.clone()));

    // Rotation destroys the old key on the token and drops the stale cert.
    let rotated = store.replace(Tier::Device).unwrap();
    assert_ne!(rotated, spki);
    assert_eq!(store.cert(Tier::Device).unwrap(), None);
    assert_eq!(store.key_protection(Tier::Device).unwrap(), (true, false));

    // mTLS works with the token key too.
    let csr = csr_pem(&store, Tier::Device, "SN-HSM").unwrap();
    let cert = pki
        .issue_device_cert(&csr, "SN-HSM", "HSM-box", "clinic-b", 44, 30)
        .unwrap();
    store.put_cert(Tier::Device, &cert.pem).unwrap();
    let store: std::sync::Arc<dyn KeyStore> = std::sync::Arc::new(store);
    assert!(client_cert_resolver(store.clone(), Tier::Device)
        .unwrap()
        .has_certs());
}
