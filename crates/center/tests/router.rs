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
