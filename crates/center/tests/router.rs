//! The router in-process, without a socket or TLS (`tower::ServiceExt::oneshot`): the
//! end-to-end tests in crates/cli/tests start a real centre; these check the API's
//! answers and the storage constraints directly.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

struct Lab {
    router: axum::Router,
    center: Arc<dodvpn_center::Center>,
    token: String,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn lab() -> Lab {
    let dir = std::env::temp_dir().join(dodvpn_center::new_id("router-test"));
    let cfg = dodvpn_center::CenterConfig {
        data_dir: dir.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: None,
        tls_names: vec![],
    };
    let (center, _) = dodvpn_center::init::open(&cfg).await.unwrap();
    let token = std::fs::read_to_string(dir.join("admin.token")).unwrap();
    Lab {
        router: dodvpn_center::api::router(center.clone()),
        center,
        token: token.trim().to_string(),
        _dir: TempDir(dir),
    }
}

impl Lab {
    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn device(&self) -> String {
        let (s, org) = self
            .call(
                "POST",
                "/api/v1/orgs",
                Some(json!({"name": "Hospital", "kind": "hospital"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{org}");
        let (s, dev) = self
            .call(
                "POST",
                "/api/v1/devices",
                Some(json!({"serial": "SN-1", "model": "m", "owner_org": org["id"]})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{dev}");
        assert_eq!(dev["status"], "registered");
        dev["id"].as_str().unwrap().to_string()
    }
}

#[tokio::test]
async fn no_credential_is_401_and_health_needs_none() {
    let lab = lab().await;
    let resp = lab
        .router
        .clone()
        .oneshot(Request::get("/api/v1/devices").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = lab
        .router
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// A step out of D.6 order is a 409 naming the state and what was expected, and
/// changes nothing.
#[tokio::test]
async fn out_of_order_step_is_refused_and_changes_nothing() {
    let lab = lab().await;
    let id = lab.device().await;
    for (step, expected) in [
        ("deliver", "installed"),
        ("service/apply", "delivered"),
        ("service/approve", "service_applied"),
        ("service/start", "service_installed, suspended"),
        ("service/stop", "in_service"),
    ] {
        let (s, e) = lab
            .call("POST", &format!("/api/v1/devices/{id}/{step}"), None)
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{step}: {e}");
        assert_eq!(e["error"], "wrong_state");
        let msg = e["message"].as_str().unwrap();
        assert!(
            msg.contains("is 'registered'") && msg.contains(expected),
            "{step}: {msg}"
        );
    }
    let (s, d) = lab
        .call("GET", &format!("/api/v1/devices/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d["status"], "registered");
}

/// The OpenAPI description lists the device states as an enum.
#[tokio::test]
async fn openapi_declares_the_device_states() {
    let lab = lab().await;
    let (s, api) = lab.call("GET", "/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    let states = &api["components"]["schemas"]["DeviceState"]["enum"];
    let names: Vec<&str> = states
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 11, "{states}");
    assert!(names.contains(&"service_installed") && names.contains(&"revoked"));
}

/// The CHECK constraint of migration 0004: storage refuses a state outside the set.
#[tokio::test]
async fn storage_refuses_an_unknown_state() {
    let lab = lab().await;
    let id = lab.device().await;
    let err = sqlx::query("UPDATE devices SET status = 'in-service' WHERE id = $1")
        .bind(&id)
        .execute(&lab.center.db.pool)
        .await
        .expect_err("CHECK constraint");
    assert!(err.to_string().to_lowercase().contains("check"), "{err}");
    sqlx::query("UPDATE devices SET status = 'in_service' WHERE id = $1")
        .bind(&id)
        .execute(&lab.center.db.pool)
        .await
        .unwrap();
}

/// Every operation says who may call it and which errors it can answer (issue 9 point 6;
/// crates/cli/tests/api_schema.rs checks the server against it).
#[tokio::test]
async fn openapi_declares_credentials_and_errors_on_every_operation() {
    let lab = lab().await;
    let (_, api) = lab.call("GET", "/openapi.json", None).await;
    let schemes = &api["components"]["securitySchemes"];
    assert_eq!(schemes["admin_bearer"]["scheme"], "bearer", "{schemes}");
    assert_eq!(schemes["device_mtls"]["type"], "mutualTLS", "{schemes}");
    let mut checked = 0;
    for (path, item) in api["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let security = op["security"]
                .as_array()
                .expect("security on every operation");
            let codes: Vec<&str> = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert!(codes.contains(&"400"), "{method} {path}: {codes:?}");
            if path.starts_with("/pki/") {
                assert_eq!(security[0], serde_json::json!({}), "{path} is public");
            } else {
                let want = if path.starts_with("/api/v1/device/") {
                    "device_mtls"
                } else {
                    "admin_bearer"
                };
                assert!(
                    security[0].get(want).is_some(),
                    "{method} {path}: {security:?}"
                );
                assert!(
                    codes.contains(&"401") && codes.contains(&"403"),
                    "{method} {path}: {codes:?}"
                );
            }
            if op.get("requestBody").is_some() {
                for c in ["413", "415", "422"] {
                    assert!(codes.contains(&c), "{method} {path}: {codes:?}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "{checked} operations");
    let events = &api["paths"]["/api/v1/device/events"]["get"]["responses"]["200"]["content"];
    assert!(events.get("text/event-stream").is_some(), "{events}");
    let minutes = &api["components"]["schemas"]["NewApproval"]["properties"]["minutes"];
    assert_eq!(
        (minutes["minimum"].as_i64(), minutes["maximum"].as_i64()),
        (Some(1), Some(1440)),
        "{minutes}"
    );
    let kinds = &api["components"]["schemas"]["OrgKind"]["enum"];
    assert_eq!(kinds.as_array().map(Vec::len), Some(6), "{kinds}");
}

/// axum's own rejections (a path that does not parse, an unknown method) answer the
/// same JSON error body as the handlers.
#[tokio::test]
async fn extractor_rejections_answer_the_json_error_body() {
    let lab = lab().await;
    let (s, body) = lab
        .call(
            "POST",
            "/api/v1/certs/not-a-number/revoke",
            Some(serde_json::json!({"reason": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "bad_request", "{body}");
    let (s, body) = lab.call("PATCH", "/api/v1/orgs", None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"], "method_not_allowed", "{body}");
    let (s, body) = lab.call("GET", "/api/v1/no-such-route", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found", "{body}");
}
