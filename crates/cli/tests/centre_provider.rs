//! The device provider (TR D.6 c–f, issue 9 point 1) against a real centre through the
//! CLI: a role the provider grants explicitly, limited to the owners it is contracted
//! to serve, and the owner's confirmation before a device it registered is certified.
//! On SQLite and on PostgreSQL.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn sqlite() {
    device_provider_is_a_granted_contracted_role(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres() {
    device_provider_is_a_granted_contracted_role(Backend::Postgres).await
}

fn credential(c: &Centre, org: &str, label: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    c.admin_ok(&[
        "org",
        "admin",
        org,
        "--label",
        label,
        "--out",
        f.path().to_str().unwrap(),
    ]);
    f
}

fn register_as(c: &Centre, cred: &Path, owner: &str, serial: &str) -> Result<Value, String> {
    c.admin_as(
        cred,
        &[
            "device",
            "register",
            "--serial",
            serial,
            "--model",
            "DV-100",
            "--owner",
            owner,
            "--subnet",
            "10.1.0.0/24",
        ],
    )
}

/// `dodvpn device provision` (steps d + e) with CRED into a fresh key store.
fn provision(c: &Centre, cred: &Path, dev: &str) -> (bool, String) {
    let ks = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["device", "provision", "--center", &c.url])
        .arg("--ca")
        .arg(c.ca_path())
        .arg("--credential-file")
        .arg(cred)
        .arg("--keystore")
        .arg(ks.path().join("ks"))
        .args(["--device", dev])
        .env("DODVPN_KEYSTORE_PASSPHRASE", PASSPHRASE)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn refused(r: Result<Value, String>, code: &str, what: &str) {
    match r {
        Ok(v) => panic!("{what}: succeeded but must be refused with {code}: {v}"),
        Err(e) => assert!(
            e.contains(code),
            "{what}: refused, but not with {code}: {e}"
        ),
    }
}

fn status(c: &Centre, dev: &str) -> Value {
    c.admin_ok(&["device", "show", dev])
}

async fn device_provider_is_a_granted_contracted_role(b: Backend) {
    let c = Centre::start(b);
    let hosp = c.org("Central Hospital", "hospital");
    let clinic = c.org("North Clinic", "clinic");
    let vendor = c.org("Imaging Vendor", "vendor");
    let vendor_cred = credential(&c, &vendor, "device provider");
    let hosp_cred = credential(&c, &hosp, "hospital admin");
    let vc = vendor_cred.path();

    // The kind `vendor` alone is no role.
    refused(
        register_as(&c, vc, &hosp, "SN-P-1"),
        "not_device_provider",
        "vendor without the role registers",
    );
    // Nor can the provider contract an organisation without the role.
    refused(
        c.admin(&["org", "provider-contract", "add", &vendor, &hosp]),
        "not_a_device_provider",
        "contract for an organisation without the role",
    );

    // The role, but no contract for the hospital.
    let role = c.admin_ok(&["org", "device-provider", "grant", &vendor]);
    assert_eq!(role["device_provider"], json!(true));
    refused(
        register_as(&c, vc, &hosp, "SN-P-1"),
        "no_provider_contract",
        "device provider without a contract",
    );
    // An organisation admin cannot grant the role or contracts itself.
    refused(
        c.admin_as(vc, &["org", "provider-contract", "add", &vendor, &hosp]),
        "provider_only",
        "self-contract",
    );
    refused(
        c.admin_as(
            hosp_cred.path(),
            &["org", "device-provider", "grant", &hosp],
        ),
        "provider_only",
        "self-grant",
    );

    // With a contract it registers; the device waits for the owner's confirmation.
    c.admin_ok(&["org", "provider-contract", "add", &vendor, &hosp]);
    let contracts = c.admin_ok(&["org", "provider-contract", "list"]);
    assert_eq!(contracts.as_array().unwrap().len(), 1, "{contracts}");
    assert_eq!(contracts[0]["provider_org"], json!(vendor));
    assert_eq!(contracts[0]["owner_org"], json!(hosp));
    let d = register_as(&c, vc, &hosp, "SN-P-1").unwrap();
    let dev = d["id"].as_str().unwrap().to_string();
    assert_eq!(d["registered_by"], json!(vendor));
    assert_eq!(d["confirmed"], json!(false));
    // The device provider sees the device it serves; the owner sees it too.
    let seen = c.admin_as(vc, &["device", "show", &dev]).unwrap();
    assert_eq!(seen["owner_org"], json!(hosp));
    let owner_view = c
        .admin_as(hosp_cred.path(), &["device", "show", &dev])
        .unwrap();
    assert_eq!(owner_view["confirmed"], json!(false));
    assert_eq!(owner_view["registered_by"], json!(vendor));

    // Not certified before the owner confirms, and the device provider cannot confirm for it.
    let (ok, out) = provision(&c, vc, &dev);
    assert!(!ok, "certified before confirmation: {out}");
    assert!(out.contains("unconfirmed"), "the refusal says why: {out}");
    assert_eq!(status(&c, &dev)["status"], json!("registered"));
    refused(
        c.admin_as(vc, &["device", "confirm", &dev]),
        "other_organisation",
        "device provider confirms its own",
    );
    let conf = c
        .admin_as(hosp_cred.path(), &["device", "confirm", &dev])
        .unwrap();
    assert_eq!(conf["confirmed"], json!(true));
    // Confirming again is harmless.
    assert_eq!(
        c.admin_as(hosp_cred.path(), &["device", "confirm", &dev])
            .unwrap()["confirmed"],
        json!(true)
    );
    let (ok, out) = provision(&c, vc, &dev);
    assert!(ok, "provision after confirmation: {out}");
    c.admin_as(vc, &["device", "deliver", &dev]).unwrap();
    assert_eq!(status(&c, &dev)["status"], json!("delivered"));

    // A device of an owner it has no contract with: not registered, not seen, not touched.
    refused(
        register_as(&c, vc, &clinic, "SN-P-2"),
        "no_provider_contract",
        "register for an uncontracted owner",
    );
    let other = register(&c, &clinic, "SN-P-3", "10.2.0.0/24");
    assert_eq!(
        status(&c, &other)["confirmed"],
        json!(true),
        "the provider's own registration needs no confirmation"
    );
    refused(
        c.admin_as(vc, &["device", "show", &other]),
        "not_found",
        "show an uncontracted owner's device",
    );
    let (ok, out) = provision(&c, vc, &other);
    assert!(
        !ok && out.contains("not_found"),
        "certify an uncontracted owner's device: {out}"
    );
    assert_eq!(status(&c, &other)["status"], json!("registered"));
    refused(
        c.admin_as(vc, &["device", "deliver", &other]),
        "not_found",
        "deliver an uncontracted owner's device",
    );
    refused(
        c.admin_as(vc, &["device", "confirm", &other]),
        "not_found",
        "confirm an uncontracted owner's device",
    );
    // Nor does the role reach the owner's side of the steps.
    refused(
        c.admin_as(vc, &["service", "apply", &dev]),
        "other_organisation",
        "device provider applies for service",
    );

    // Ending the contract ends the reach; revoking the role ends registration.
    c.admin_ok(&["org", "provider-contract", "remove", &vendor, &hosp]);
    refused(
        c.admin_as(vc, &["device", "show", &dev]),
        "not_found",
        "show after the contract ended",
    );
    refused(
        register_as(&c, vc, &hosp, "SN-P-4"),
        "no_provider_contract",
        "register after the contract ended",
    );
    c.admin_ok(&["org", "device-provider", "revoke", &vendor]);
    refused(
        register_as(&c, vc, &hosp, "SN-P-4"),
        "not_device_provider",
        "register after the role was revoked",
    );
    assert_eq!(c.admin_ok(&["org", "provider-contract", "list"]), json!([]));

    // Every grant, contract and confirmation is audited, and so are the refusals.
    let actions: Vec<String> = audit_actions(&c).into_iter().map(|(a, _)| a).collect();
    for a in [
        "org.device_provider_granted",
        "provider_contract.added",
        "device.confirmed",
        "provider_contract.removed",
        "org.device_provider_revoked",
        "refused.not_device_provider",
        "refused.no_provider_contract",
    ] {
        assert!(actions.iter().any(|x| x == a), "audit has {a}: {actions:?}");
    }
    let recs = c.admin_ok(&["audit", "list", "--limit", "10000"]);
    let confirmed = recs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == json!("device.confirmed"))
        .unwrap();
    assert!(
        confirmed["actor"]
            .as_str()
            .unwrap()
            .ends_with(&format!("@{hosp}")),
        "the owner confirmed: {confirmed}"
    );
    assert!(c.admin_ok(&["audit", "verify"])["ok"].as_bool().unwrap());
}
