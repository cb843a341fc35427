//! The console in-process (`tower::ServiceExt::oneshot`, no socket or TLS), on SQLite
//! and on PostgreSQL: first administrator from the setup code, password + TOTP login,
//! replayed codes, lockout, CSRF, expiry, bad input, and an organisation's user who
//! cannot see or change another organisation's devices, sessions or audit records.
//! The real-browser tests (Chromium) are in tests/browser.rs.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use dodvpn_console::totp;
use serde_json::{json, Value};
use sqlx::Row;
use tower::ServiceExt;

#[derive(Clone, Copy, Debug)]
enum Db {
    Sqlite,
    Postgres,
}

struct Lab {
    app: axum::Router,
    center: Arc<dodvpn_center::Center>,
    admin_token: String,
    dir: std::path::PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh PostgreSQL database on the server `DODVPN_TEST_PG_URL` names; no server is
/// a failure with a clear message, never a silent skip.
fn fresh_pg() -> String {
    let base = std::env::var("DODVPN_TEST_PG_URL").expect(
        "DODVPN_TEST_PG_URL is not set: start PostgreSQL with scripts/pg.sh (scripts/test.sh does)",
    );
    let name = format!(
        "console_{}_{}",
        std::process::id(),
        dodvpn_center::new_id("x").replace('-', "_")
    );
    let out = std::process::Command::new("psql")
        .arg(&base)
        .args([
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .output()
        .expect("psql (postgresql-client) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{name}")
}

async fn lab(db: Db) -> Lab {
    let dir = std::env::temp_dir().join(dodvpn_center::new_id("console-test"));
    let cfg = dodvpn_center::CenterConfig {
        data_dir: dir.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: match db {
            Db::Sqlite => None,
            Db::Postgres => Some(fresh_pg()),
        },
        tls_names: vec![],
    };
    let (center, _) = dodvpn_center::init::open(&cfg).await.unwrap();
    let admin_token = std::fs::read_to_string(dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let app =
        dodvpn_center::api::router(center.clone()).merge(dodvpn_console::router(center.clone()));
    Lab {
        app,
        center,
        admin_token,
        dir,
    }
}

impl Lab {
    async fn api(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri).header(
            header::AUTHORIZATION,
            format!("Bearer {}", self.admin_token),
        );
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let resp = self
            .app
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn audit_actions(&self) -> Vec<(String, Value)> {
        let rows = sqlx::query("SELECT action, details FROM audit ORDER BY seq")
            .fetch_all(&self.center.db.pool)
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                (
                    r.get::<String, _>(0),
                    serde_json::from_str(&r.get::<String, _>(1)).unwrap(),
                )
            })
            .collect()
    }

    async fn count(&self, action: &str) -> usize {
        self.audit_actions()
            .await
            .iter()
            .filter(|(a, _)| a == action)
            .count()
    }

    fn browser(&self) -> Browser {
        Browser {
            app: self.app.clone(),
            cookies: HashMap::new(),
            lang: "en",
        }
    }

    /// Create a user through an invitation; returns (browser logged in, TOTP secret).
    async fn user_from_invite(&self, code: &str, username: &str) -> (Browser, Vec<u8>) {
        let mut b = self.browser();
        let secret = b.setup(code, username, PASSWORD).await;
        b.login(username, PASSWORD, &secret).await;
        (b, secret)
    }

    async fn first_admin(&self) -> (Browser, Vec<u8>) {
        let path = dodvpn_console::bootstrap(&self.center, &self.dir)
            .await
            .unwrap()
            .expect("a setup code on first start");
        let code = std::fs::read_to_string(path).unwrap();
        self.user_from_invite(code.trim(), "provider-root").await
    }
}

const PASSWORD: &str = "a long enough pass phrase";

struct Resp {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

struct Browser {
    app: axum::Router,
    cookies: HashMap<String, String>,
    lang: &'static str,
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(&s[i..j])
}

fn now_secs() -> u64 {
    (dodvpn_center::db::now_ms() / 1000) as u64
}

impl Browser {
    async fn send(&mut self, req: axum::http::request::Builder, body: Body) -> Resp {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut req = req.header(header::ACCEPT_LANGUAGE, self.lang);
        if !cookie.is_empty() {
            req = req.header(header::COOKIE, cookie);
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        for sc in resp.headers().get_all(header::SET_COOKIE) {
            let sc = sc.to_str().unwrap();
            assert!(
                sc.contains("Secure") && sc.contains("SameSite=Strict"),
                "cookie without Secure/SameSite=Strict: {sc}"
            );
            if sc.starts_with("__Host-") {
                assert!(sc.contains("HttpOnly") && sc.contains("Path=/;"), "{sc}");
            }
            let (kv, _) = sc.split_once(';').unwrap();
            let (k, v) = kv.split_once('=').unwrap();
            if v.is_empty() || sc.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.into(), v.into());
            }
        }
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string());
        if resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.to_str().unwrap().starts_with("text/html"))
        {
            let csp = resp
                .headers()
                .get("content-security-policy")
                .expect("CSP on every page");
            assert!(!csp.to_str().unwrap().contains("unsafe-inline"));
        }
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .unwrap();
        Resp {
            status,
            location,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&mut self, path: &str) -> Resp {
        self.send(Request::builder().uri(path), Body::empty()).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let body = serde_urlencoded::to_string(fields).unwrap();
        self.send(
            Request::builder()
                .method("POST")
                .uri(path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
            Body::from(body),
        )
        .await
    }

    /// The CSRF token of the page at `path`.
    async fn csrf(&mut self, path: &str) -> String {
        let r = self.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        between(&r.body, "name=\"csrf\" value=\"", "\"")
            .expect("a csrf field")
            .to_string()
    }

    async fn setup(&mut self, code: &str, username: &str, pw: &str) -> Vec<u8> {
        let csrf = self.csrf("/console/setup").await;
        let r = self
            .post(
                "/console/setup",
                &[
                    ("csrf", &csrf),
                    ("code", code),
                    ("username", username),
                    ("password", pw),
                    ("password2", pw),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let secret = between(&r.body, "id=\"totp-secret\">", "<").expect("TOTP secret shown");
        assert_eq!(
            r.body.matches("<li><code>").count(),
            10,
            "ten recovery codes"
        );
        totp::base32_decode(secret).unwrap()
    }

    async fn password_step(&mut self, username: &str, pw: &str) -> Resp {
        let csrf = self.csrf("/console/login").await;
        self.post(
            "/console/login",
            &[("csrf", &csrf), ("username", username), ("password", pw)],
        )
        .await
    }

    async fn code_step(&mut self, code: &str) -> Resp {
        let csrf = self.csrf("/console/login/2fa").await;
        self.post("/console/login/2fa", &[("csrf", &csrf), ("code", code)])
            .await
    }

    /// Log in with a fresh TOTP code (waits for the next step if this one was used).
    async fn login(&mut self, username: &str, pw: &str, secret: &[u8]) {
        let r = self.password_step(username, pw).await;
        assert_eq!(
            r.location.as_deref(),
            Some("/console/login/2fa"),
            "{}",
            r.body
        );
        let code = totp::code_at_step(secret, totp::step_of(now_secs()));
        let r = self.code_step(&code).await;
        if r.status == StatusCode::UNAUTHORIZED && r.body.contains("already been used") {
            // This step's code was used by an earlier login of the same user.
            tokio::time::sleep(std::time::Duration::from_secs(31 - now_secs() % 30)).await;
            let code = totp::code_at_step(secret, totp::step_of(now_secs()));
            let r = self.code_step(&code).await;
            assert_eq!(r.location.as_deref(), Some("/console/"), "{}", r.body);
            return;
        }
        assert_eq!(r.location.as_deref(), Some("/console/"), "{}", r.body);
    }
}

async fn login_two_factors_and_replay(db: Db) {
    let lab = lab(db).await;
    let (mut admin, secret) = lab.first_admin().await;
    let r = admin.get("/console/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("provider-root"), "{}", r.body);
    // The setup code works once.
    let again = dodvpn_console::bootstrap(&lab.center, &lab.dir)
        .await
        .unwrap();
    assert!(
        again.is_none(),
        "no new setup code once a provider admin exists"
    );

    // Same user, same 30 s step: the code just used is refused as a replay.
    let mut second = lab.browser();
    let r = second.password_step("provider-root", PASSWORD).await;
    assert_eq!(r.location.as_deref(), Some("/console/login/2fa"));
    let step = sqlx::query_scalar::<_, i64>(
        "SELECT totp_last_step FROM console_users WHERE username = 'provider-root'",
    )
    .fetch_one(&lab.center.db.pool)
    .await
    .unwrap();
    let used = totp::code_at_step(&secret, step as u64);
    let r = second.code_step(&used).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(r.body.contains("already been used"));
    assert_eq!(lab.count("console.login.totp_replayed").await, 1);
    assert_eq!(second.get("/console/").await.status, StatusCode::SEE_OTHER);

    // Logout ends the session on the server.
    let csrf = admin.csrf("/console/").await;
    let stale = admin.cookies.clone();
    admin.post("/console/logout", &[("csrf", &csrf)]).await;
    assert_eq!(lab.count("console.logout").await, 1);
    admin.cookies = stale;
    assert_eq!(admin.get("/console/").await.status, StatusCode::SEE_OTHER);

    let actions = lab.audit_actions().await;
    let names: Vec<&str> = actions.iter().map(|(a, _)| a.as_str()).collect();
    for want in [
        "console.user.invited",
        "console.user.created",
        "console.login",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    // No secret in the log: not the password, the TOTP secret or a session id.
    let log = format!("{actions:?}");
    assert!(!log.contains(PASSWORD));
    assert!(!log.contains(&totp::base32_encode(&secret)));
    for v in admin.cookies.values() {
        assert!(!log.contains(v.as_str()));
    }
}

#[tokio::test]
async fn login_two_factors_and_replay_sqlite() {
    login_two_factors_and_replay(Db::Sqlite).await;
}

#[tokio::test]
async fn login_two_factors_and_replay_postgres() {
    login_two_factors_and_replay(Db::Postgres).await;
}

async fn lockout_backoff(db: Db) {
    let lab = lab(db).await;
    let (_, secret) = lab.first_admin().await;
    let mut b = lab.browser();
    for i in 0..5 {
        let r = b
            .password_step("provider-root", "wrong password, long enough")
            .await;
        assert_eq!(r.status, StatusCode::OK);
        if i < 4 {
            assert!(r.body.contains("Wrong user name or password"), "{}", r.body);
        } else {
            assert!(r.body.contains("locked"), "{}", r.body);
        }
    }
    assert_eq!(lab.count("console.login.failed").await, 5);
    assert_eq!(lab.count("console.login.locked").await, 1);
    // Locked: even the right password does not get to the second factor.
    let r = b.password_step("provider-root", PASSWORD).await;
    assert!(
        r.location.is_none() && r.body.contains("locked"),
        "{}",
        r.body
    );
    let sessions: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM console_sessions WHERE stage = 'password'")
            .fetch_one(&lab.center.db.pool)
            .await
            .unwrap();
    assert_eq!(sessions, 0, "no half-open session while locked");
    // The lock ends; the failures are forgotten only after a full login.
    // (and the code of this 30 s step, used by the first login, is forgotten: a replay
    // would count as one more failure, as it should)
    sqlx::query("UPDATE console_users SET locked_until_ms = 0, totp_last_step = 0")
        .execute(&lab.center.db.pool)
        .await
        .unwrap();
    b.login("provider-root", PASSWORD, &secret).await;
    let failed: i64 = sqlx::query_scalar("SELECT failed_logins FROM console_users")
        .fetch_one(&lab.center.db.pool)
        .await
        .unwrap();
    assert_eq!(failed, 0);
    // Unknown user names get the same answer and an aggregated refusal record.
    let r = b.password_step("nobody-here", PASSWORD).await;
    assert!(r.body.contains("Wrong user name or password"));
}

#[tokio::test]
async fn lockout_backoff_sqlite() {
    lockout_backoff(Db::Sqlite).await;
}

#[tokio::test]
async fn lockout_backoff_postgres() {
    lockout_backoff(Db::Postgres).await;
}

#[tokio::test]
async fn csrf_bad_input_and_expiry() {
    let lab = lab(Db::Sqlite).await;
    let (mut admin, _) = lab.first_admin().await;
    let before = lab.audit_actions().await.len();
    // No token, a wrong token: 403 and nothing changes.
    let r = admin
        .post("/console/users/invite", &[("role", "auditor"), ("org", "")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("security token"));
    let r = admin
        .post(
            "/console/users/invite",
            &[("csrf", &"0".repeat(64)), ("role", "auditor")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let invites: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM console_invites")
        .fetch_one(&lab.center.db.pool)
        .await
        .unwrap();
    assert_eq!(invites, 1, "only the setup invitation");
    // The refusal is audited (first of its kind at once).
    let after: Vec<String> = lab.audit_actions().await[before..]
        .iter()
        .map(|(a, _)| a.clone())
        .collect();
    assert!(after.iter().any(|a| a.starts_with("refused.")), "{after:?}");

    // Garbage fields: a clear 400, nothing created.
    let csrf = admin.csrf("/console/orgs").await;
    let r = admin
        .post(
            "/console/users/invite",
            &[("csrf", &csrf), ("role", "emperor")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = admin
        .post(
            "/console/users/invite",
            &[("csrf", &csrf), ("role", "org_admin"), ("org", "")],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "org_admin needs an organisation"
    );
    // Oversized body: 413 before anything is parsed.
    let big = "x".repeat(64 * 1024);
    let r = admin
        .post("/console/users/invite", &[("csrf", &csrf), ("junk", &big)])
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Not a form.
    let r = admin
        .send(
            Request::builder()
                .method("POST")
                .uri("/console/users/invite")
                .header("x-csrf-token", csrf.as_str())
                .header(header::CONTENT_TYPE, "application/json"),
            Body::from("{}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let invites: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM console_invites")
        .fetch_one(&lab.center.db.pool)
        .await
        .unwrap();
    assert_eq!(invites, 1);
    // Setup: a short password and a wrong code are refused.
    let mut anon = lab.browser();
    let c = anon.csrf("/console/setup").await;
    let r = anon
        .post(
            "/console/setup",
            &[
                ("csrf", &c),
                ("code", "dodvpn-invite.00"),
                ("username", "eve"),
                ("password", "short"),
                ("password2", "short"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("too short"));
    let r = anon
        .post(
            "/console/setup",
            &[
                ("csrf", &c),
                ("code", "dodvpn-invite.00"),
                ("username", "eve"),
                ("password", PASSWORD),
                ("password2", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("unknown, used or expired"));

    // Japanese.
    admin.lang = "ja";
    let r = admin.get("/console/").await;
    assert!(
        r.body.contains("lang=\"ja\"") && r.body.contains("概要"),
        "{}",
        r.body
    );
    admin.lang = "en";

    // 31 minutes idle: the session ends, audited, and the browser goes to the login.
    sqlx::query("UPDATE console_sessions SET last_ms = last_ms - 31 * 60 * 1000")
        .execute(&lab.center.db.pool)
        .await
        .unwrap();
    let r = admin.get("/console/devices").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/console/login?expired=1"));
    assert_eq!(lab.count("console.session.expired").await, 1);
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM console_sessions")
        .fetch_one(&lab.center.db.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

/// A clinic's administrator sees only the clinic: the hospital's device, its
/// certificates, sessions and audit records are 404 or absent, and a revoke of the
/// hospital's device by id changes nothing.
async fn organisations_are_isolated(db: Db) {
    let lab = lab(db).await;
    let (mut root, _) = lab.first_admin().await;
    let (_, h) = lab
        .api(
            "POST",
            "/api/v1/orgs",
            Some(json!({"name": "Central Hospital", "kind": "hospital"})),
        )
        .await;
    let (_, c) = lab
        .api(
            "POST",
            "/api/v1/orgs",
            Some(json!({"name": "Clinic", "kind": "clinic"})),
        )
        .await;
    let (h, c) = (
        h["id"].as_str().unwrap().to_string(),
        c["id"].as_str().unwrap().to_string(),
    );
    let (st, hd) = lab
        .api(
            "POST",
            "/api/v1/devices",
            Some(json!({"serial": "H-1", "model": "DV", "owner_org": h})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{hd}");
    let (_, cd) = lab
        .api(
            "POST",
            "/api/v1/devices",
            Some(json!({"serial": "C-1", "model": "DV", "owner_org": c})),
        )
        .await;
    let hd = hd["id"].as_str().unwrap().to_string();
    let cd = cd["id"].as_str().unwrap().to_string();

    // The provider admin invites the clinic's administrator.
    let csrf = root.csrf("/console/orgs").await;
    let r = root
        .post(
            "/console/users/invite",
            &[("csrf", &csrf), ("role", "org_admin"), ("org", &c)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let code = between(&r.body, "id=\"invite-code\">", "<")
        .unwrap()
        .to_string();
    let (mut clinic, _) = lab.user_from_invite(&code, "clinic-admin").await;

    let r = clinic.get("/console/devices").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains(&cd) && !r.body.contains(&hd), "{}", r.body);
    assert_eq!(
        clinic.get(&format!("/console/devices/{hd}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        clinic.get(&format!("/console/devices/{cd}")).await.status,
        StatusCode::OK
    );
    let csrf = clinic.csrf("/console/devices").await;
    let r = clinic
        .post(
            &format!("/console/devices/{hd}/revoke"),
            &[("csrf", &csrf), ("reason", "x"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let (_, dev) = lab.api("GET", &format!("/api/v1/devices/{hd}"), None).await;
    assert_eq!(dev["status"], "registered", "nothing changed");
    // Another organisation's session id, made up: 404, not a server error.
    let r = clinic
        .post(
            "/console/sessions/0000000000000001-0000000000000002/cut",
            &[("csrf", &csrf), ("reason", "x")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Users: only the clinic's; disabling the provider's user by id is 404.
    let r = clinic.get("/console/orgs").await;
    assert!(
        r.body.contains("clinic-admin") && !r.body.contains("provider-root"),
        "{}",
        r.body
    );
    let root_id: String =
        sqlx::query_scalar("SELECT id FROM console_users WHERE username = 'provider-root'")
            .fetch_one(&lab.center.db.pool)
            .await
            .unwrap();
    let r = clinic
        .post(
            &format!("/console/users/{root_id}/disable"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // An org admin cannot hand out provider roles, nor roles in another organisation.
    let r = clinic
        .post(
            "/console/users/invite",
            &[("csrf", &csrf), ("role", "org_admin"), ("org", &h)],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = clinic
        .post(
            "/console/users/invite",
            &[("csrf", &csrf), ("role", "provider_admin"), ("org", "")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Audit: the hospital's device registration is not among the clinic's records.
    let r = clinic.get("/console/audit").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains(&cd) && !r.body.contains(&hd), "{}", r.body);
    let r = clinic.get(&format!("/console/audit?device={hd}")).await;
    assert!(!r.body.contains(&format!("<td>{hd}</td>")));
    let r = clinic.get("/console/audit/export").await;
    assert!(r.body.contains(&cd) && !r.body.contains(&hd));
    // The provider admin revokes with confirmation; without the box ticked nothing happens.
    let csrf = root.csrf(&format!("/console/devices/{hd}")).await;
    let r = root
        .post(
            &format!("/console/devices/{hd}/revoke"),
            &[("csrf", &csrf), ("reason", "stolen")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = root
        .post(
            &format!("/console/devices/{hd}/revoke"),
            &[("csrf", &csrf), ("reason", "stolen"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let (_, dev) = lab.api("GET", &format!("/api/v1/devices/{hd}"), None).await;
    assert_eq!(dev["status"], "revoked");
    let actions = lab.audit_actions().await;
    let rec = actions.iter().find(|(a, _)| a == "device.revoked").unwrap();
    assert_eq!(rec.1["reason"], "stolen");
    // A device's witness alert (issue 15; the device route is tested in
    // cli/centre_witness) is shown to the provider on the audit page, not to an
    // organisation's administrator.
    let r = root.get("/console/audit").await;
    assert!(!r.body.contains("witness-alerts"), "no alert yet");
    sqlx::query(
        "INSERT INTO audit_alerts (id, device_id, kept_size, kept_root, new_size, new_root, problem, message, kept_note, reports, first_ms, last_ms) \
         VALUES (1, $1, 21, 'aa', 24, 'bb', 'checkpoint_inconsistent', 'the tree does not extend', 'note', 2, 1, 2)",
    )
    .bind(&cd)
    .execute(&lab.center.db.pool)
    .await
    .unwrap();
    let r = root.get("/console/audit").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains("witness-alerts")
            && r.body.contains("checkpoint_inconsistent")
            && r.body.contains(&format!("<td>{cd}</td>")),
        "{}",
        r.body
    );
    let r = clinic.get("/console/audit").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.body.contains("witness-alerts"), "{}", r.body);
}

#[tokio::test]
async fn organisations_are_isolated_sqlite() {
    organisations_are_isolated(Db::Sqlite).await;
}

#[tokio::test]
async fn organisations_are_isolated_postgres() {
    organisations_are_isolated(Db::Postgres).await;
}

/// Passkey ceremonies: no relying party unless the page was reached under one of the
/// centre's DNS names; a flood of starts keeps only the newest few challenges; a
/// ceremony id that is no ceremony, or garbage, is refused and creates no session.
async fn passkey_ceremonies_are_bounded(db: Db) {
    let lab = lab(db).await;
    let (mut admin, _) = lab.first_admin().await;
    let token = admin.csrf("/console/account").await;
    let begin = |host: &'static str| {
        Request::builder()
            .method("POST")
            .uri("/console/account/passkeys/begin")
            .header(header::HOST, host)
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-csrf-token", token.clone())
    };
    for host in ["127.0.0.1:8443", "evil.example:8443"] {
        let r = admin.send(begin(host), Body::from("{}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{host}: {}", r.body);
        assert!(r.body.contains("passkey.wrong_host"), "{}", r.body);
    }
    for _ in 0..8 {
        let r = admin.send(begin("localhost:8443"), Body::from("{}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(r.body.contains("\"challenge\""), "{}", r.body);
    }
    let live: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM console_ceremonies WHERE kind = 'register'")
            .fetch_one(&lab.center.db.pool)
            .await
            .unwrap();
    assert_eq!(live, dodvpn_console::passkey::LIVE_CEREMONIES);
    // Finishing with a made-up ceremony, or with garbage, stores nothing.
    let finish = |body: &str| {
        (
            Request::builder()
                .method("POST")
                .uri("/console/account/passkeys/finish")
                .header(header::HOST, "localhost:8443")
                .header(header::CONTENT_TYPE, "application/json")
                .header("x-csrf-token", token.clone()),
            Body::from(body.to_string()),
        )
    };
    for body in [
        r#"{"ceremony": "00", "name": "x", "credential": {}}"#,
        "not json",
        &format!(
            r#"{{"ceremony": "{}", "name": "x", "credential": {{"id": "AA", "rawId": "AA", "type": "public-key", "response": {{"attestationObject": "AA", "clientDataJSON": "AA"}}}}}}"#,
            "0".repeat(64)
        ),
    ] {
        let (req, b) = finish(body);
        let r = admin.send(req, b).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
    }
    let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM console_passkeys")
        .fetch_one(&lab.center.db.pool)
        .await
        .unwrap();
    assert_eq!(keys, 0);
    assert_eq!(lab.count("console.factor.passkey_added").await, 0);
}

#[tokio::test]
async fn passkey_ceremonies_are_bounded_sqlite() {
    passkey_ceremonies_are_bounded(Db::Sqlite).await
}

#[tokio::test]
async fn passkey_ceremonies_are_bounded_postgres() {
    passkey_ceremonies_are_bounded(Db::Postgres).await
}
