//! The console's pages and actions. Reads and writes go through the centre's API
//! in-process (`Console::api`) as the user's organisation, so an organisation's user
//! sees and changes only what its API credential could; a 403 or 404 from the API is
//! shown as 404, so another organisation's ids reveal nothing.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::i18n::Lang;
use crate::roles::{self, may, Can, Role};
use crate::store::{self, Attempt, SecondFactor, User};
use crate::web::{
    self, cookie, html_response, lang_of, page, set_cookie, when, Authed, Form, Nav, PageError,
    PageResult, PRE_COOKIE, SESSION_COOKIE,
};
use crate::{assets, password, totp, Console};

mod account;
mod approvals;
mod gateway;
mod grants;
mod ledger_edit;
mod policy;

pub fn routes(c: Arc<Console>) -> Router {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(overview))
        .route("/console/assets/{name}", get(assets::serve))
        .route("/console/lang", get(lang_switch))
        .route("/console/login", get(login_form).post(login_password))
        .route(
            "/console/login/2fa",
            get(second_factor_form).post(login_second),
        )
        .route("/console/logout", post(logout))
        .route("/console/setup", get(setup_form).post(setup))
        .route("/console/orgs", get(orgs_page))
        .route("/console/users/invite", post(invite))
        .route("/console/users/{id}/disable", post(disable_user))
        .route("/console/account", get(account::account_page))
        .route("/console/account/recovery", post(new_recovery_codes))
        .route(
            "/console/account/passkeys/begin",
            post(account::register_begin),
        )
        .route(
            "/console/account/passkeys/finish",
            post(account::register_finish),
        )
        .route(
            "/console/account/passkeys/{id}/remove",
            post(account::remove),
        )
        .route("/console/login/passkey/begin", post(account::login_begin))
        .route("/console/login/passkey/finish", post(account::login_finish))
        .route("/console/devices", get(devices_page))
        .route("/console/devices/{id}", get(device_page))
        .route("/console/devices/{id}/revoke", post(revoke_device))
        .route("/console/sessions", get(sessions_page))
        .route("/console/sessions/events", get(sessions_events))
        .route("/console/sessions/{id}/cut", post(cut_session))
        .route(
            "/console/approvals",
            get(approvals::inbox).post(approvals::open),
        )
        .route("/console/approvals/{id}/close", post(approvals::close))
        .route("/console/grants", get(grants::list))
        .route("/console/grants/{id}", get(grants::detail))
        .route("/console/grants/{id}/withdraw", post(grants::withdraw))
        .route("/console/gateway", get(gateway::index))
        .route("/console/gateway/{org}", get(gateway::org_page))
        .route("/console/gateway/{org}/applications", post(gateway::submit))
        .route(
            "/console/gateway/{org}/applications/{app}/decision",
            post(gateway::decide),
        )
        .route(
            "/console/gateway/{org}/applications/{app}/withdraw",
            post(gateway::withdraw),
        )
        .route("/console/policy", get(policy::index))
        .route(
            "/console/policy/{org}",
            get(policy::editor).post(policy::submit),
        )
        .route("/console/audit", get(audit_page))
        .route("/console/audit/export", get(audit_export))
        .route("/console/ledger", get(ledger_index))
        .route("/console/ledger/{org}", get(ledger_page))
        .route("/console/ledger/{org}/diagram.svg", get(ledger_diagram))
        .route("/console/ledger/{org}/report.pdf", get(ledger_report))
        .route(
            "/console/ledger/{org}/sheets/{sheet}",
            get(ledger_edit::sheet_form).post(ledger_edit::submit_sheet),
        )
        .route("/console/ledger/{org}/{table}", post(ledger_edit::save_row))
        .route(
            "/console/ledger/{org}/{table}/{row}",
            get(ledger_edit::row_form),
        )
        .route(
            "/console/ledger/{org}/{table}/{row}/delete",
            post(ledger_edit::delete_row),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            c.clone(),
            web::csrf_guard,
        ))
        .layer(axum::middleware::from_fn(web::security_headers))
        .with_state(c)
}

async fn not_found(headers: HeaderMap) -> PageError {
    PageError::not_found(lang_of(&headers))
}

/// What the API answered, for the console.
pub(crate) struct ApiAnswer {
    pub(crate) status: StatusCode,
    pub(crate) body: Vec<u8>,
}

impl Console {
    /// Call the centre's API as `user`.
    pub(crate) async fn call(
        &self,
        user: &User,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> Result<ApiAnswer, String> {
        let mut req = Request::builder().method(method).uri(uri);
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let mut req = req.body(body).map_err(|e| e.to_string())?;
        req.extensions_mut()
            .insert(roles::caller(&user.id, user.org_id.as_deref()));
        let resp = self
            .api
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 256 * 1024 * 1024)
            .await
            .map_err(|e| e.to_string())?;
        Ok(ApiAnswer {
            status,
            body: body.to_vec(),
        })
    }

    /// Call the API as the page's user and take its JSON answer; another
    /// organisation's object (403/404) is a 404 page.
    async fn json(
        &self,
        a: &Authed,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> Result<Value, PageError> {
        let ans = self
            .call(&a.user, method, uri, body)
            .await
            .map_err(|e| PageError::internal(a.lang, e))?;
        json_or_page(a.lang, ans)
    }

    pub(crate) async fn get_json(&self, a: &Authed, uri: &str) -> Result<Value, PageError> {
        self.json(a, Method::GET, uri, None).await
    }

    pub(crate) async fn put_json(
        &self,
        a: &Authed,
        uri: &str,
        body: Value,
    ) -> Result<Value, PageError> {
        self.json(a, Method::PUT, uri, Some(body)).await
    }

    pub(crate) async fn post_json(
        &self,
        a: &Authed,
        uri: &str,
        body: Value,
    ) -> Result<Value, PageError> {
        self.json(a, Method::POST, uri, Some(body)).await
    }
}

fn json_or_page(lang: Lang, ans: ApiAnswer) -> Result<Value, PageError> {
    let v: Value = serde_json::from_slice(&ans.body).unwrap_or(Value::Null);
    match ans.status {
        s if s.is_success() => Ok(v),
        StatusCode::NOT_FOUND | StatusCode::FORBIDDEN => Err(PageError::not_found(lang)),
        s if s.is_client_error() => Err(PageError::new(s, lang, "err.refused")
            .with(v["message"].as_str().unwrap_or("").to_string())),
        s => Err(PageError::new(s, lang, "err.internal")),
    }
}

pub(crate) fn nav(a: &Authed) -> Option<Nav<'_>> {
    Some(Nav {
        user: &a.user,
        csrf: &a.session.csrf,
    })
}

pub(crate) fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

// ---------- language, assets, errors ----------

#[derive(Deserialize)]
struct LangQ {
    to: Option<String>,
    back: Option<String>,
}

/// Set the language cookie and go back (only to a console page: never an open redirect).
async fn lang_switch(Query(q): Query<LangQ>) -> Response {
    let lang = q.to.as_deref().and_then(Lang::parse).unwrap_or(Lang::En);
    let back = q
        .back
        .filter(|b| b.starts_with("/console/") && !b.contains("//") && !b.contains('\\'))
        .unwrap_or_else(|| "/console/".into());
    (
        [(
            header::SET_COOKIE,
            format!(
                "{}={}; Path=/console; Secure; SameSite=Strict; Max-Age=31536000",
                web::LANG_COOKIE,
                lang.code()
            ),
        )],
        Redirect::to(&back),
    )
        .into_response()
}

// ---------- login ----------

#[derive(Deserialize)]
struct LoginQ {
    expired: Option<String>,
}

fn pre_token(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, PRE_COOKIE).filter(|v| v.len() == 64) {
        Some(v) => (v, false),
        None => (store::random_hex(32), true),
    }
}

fn with_pre(token: &str, fresh: bool, m: Markup) -> Response {
    let mut r = html_response(m);
    if fresh {
        let (k, v) = set_cookie(PRE_COOKIE, token);
        if let Ok(v) = v.parse() {
            r.headers_mut().append(k, v);
        }
    }
    r
}

fn login_markup(l: Lang, token: &str, notice: Option<&'static str>, err: Option<String>) -> Markup {
    page(
        l,
        None,
        l.t("login.title"),
        "/console/login",
        html! {
            @if let Some(n) = notice { p role="status" class="notice" { (l.t(n)) } }
            @if let Some(e) = err { p role="alert" class="error" { (e) } }
            form method="post" action="/console/login" {
                input type="hidden" name="csrf" value=(token);
                p { label for="username" { (l.t("login.username")) }
                    input id="username" name="username" type="text" autocomplete="username" required maxlength="64"; }
                p { label for="password" { (l.t("login.password")) }
                    input id="password" name="password" type="password" autocomplete="current-password" required maxlength="1024"; }
                p { button type="submit" { (l.t("login.submit")) } }
            }
            h2 { (l.t("passkey.login_title")) }
            form id="passkey-login" data-csrf=(token) data-failed=(l.t("passkey.failed")) {
                p { label for="passkey-username" { (l.t("passkey.username")) }
                    input id="passkey-username" name="username" type="text" autocomplete="username webauthn" required maxlength="64"; }
                p { button type="submit" { (l.t("passkey.login")) } }
                p id="passkey-login-status" role="status" {}
            }
            p { a href="/console/setup" { (l.t("setup.link")) } }
        },
    )
}

async fn login_form(headers: HeaderMap, Query(q): Query<LoginQ>) -> Response {
    let l = lang_of(&headers);
    let (token, fresh) = pre_token(&headers);
    let notice = q.expired.map(|_| "login.expired");
    with_pre(&token, fresh, login_markup(l, &token, notice, None))
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

pub(crate) async fn refused(
    c: &Console,
    code: &'static str,
    source: String,
    remote: Option<&str>,
    msg: &str,
) {
    let remote_ip = remote.and_then(|r| r.parse().ok());
    let r = dodvpn_center::refusals::Refusal {
        code,
        source,
        subject: "POST /console/login".into(),
        remote: remote_ip,
        message: msg.to_string(),
        cert_serial: None,
    };
    c.center.refusals.note(&c.center.db, r).await
}

pub(crate) fn locked_message(l: Lang, until_ms: i64) -> String {
    let secs = ((until_ms - dodvpn_center::db::now_ms()) / 1000).max(1);
    format!("{} ({} {})", l.t("login.locked"), secs, l.t("unit.seconds"))
}

async fn login_password(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    web::Remote(remote): web::Remote,
    Form(f): Form<LoginForm>,
) -> PageResult {
    let l = lang_of(&headers);
    let (token, _) = pre_token(&headers);
    let wrong =
        |msg: String| Ok(html_response(login_markup(l, &token, None, Some(msg))).into_response());
    if f.username.is_empty() || f.username.len() > 64 || f.password.len() > 1024 {
        return Ok((
            StatusCode::BAD_REQUEST,
            html_response(login_markup(
                l,
                &token,
                None,
                Some(l.t("login.wrong").into()),
            )),
        )
            .into_response());
    }
    let user = store::user_by_name(&c.center, &f.username)
        .await
        .map_err(|e| PageError::from((l, e)))?;
    let Some(user) = user else {
        // As slow as a real check, and recorded (aggregated: unknown names cannot flood the log).
        let _ = password::verify(&f.password, password::dummy_hash());
        refused(
            &c,
            "console_login_unknown_user",
            format!("ip:{}", remote.as_deref().unwrap_or("?")),
            remote.as_deref(),
            "login with an unknown user name",
        )
        .await;
        return wrong(l.t("login.wrong").into());
    };
    let now = dodvpn_center::db::now_ms();
    if user.locked_until_ms > now {
        refused(
            &c,
            "console_login_locked",
            user.actor(),
            remote.as_deref(),
            "login attempt while locked",
        )
        .await;
        return wrong(locked_message(l, user.locked_until_ms));
    }
    if !password::verify(&f.password, &user.password_hash) {
        let out = store::record_failure(&c.center, &user, "password", "wrong", remote.as_deref())
            .await
            .map_err(|e| PageError::from((l, e)))?;
        return match out {
            Attempt::Locked(until) => wrong(locked_message(l, until)),
            _ => wrong(l.t("login.wrong").into()),
        };
    }
    let mut tx = c
        .center
        .db
        .begin_write()
        .await
        .map_err(|e| PageError::from((l, e)))?;
    let (sid, _) = store::create_session(&mut tx, &user.id, false)
        .await
        .map_err(|e| PageError::from((l, e)))?;
    tx.commit().await.map_err(|e| PageError::from((l, e)))?;
    Ok((
        [set_cookie(SESSION_COOKIE, &sid)],
        Redirect::to("/console/login/2fa"),
    )
        .into_response())
}

fn second_markup(l: Lang, csrf: &str, err: Option<String>) -> Markup {
    page(
        l,
        None,
        l.t("login2.title"),
        "/console/login/2fa",
        html! {
            @if let Some(e) = err { p role="alert" class="error" { (e) } }
            form method="post" action="/console/login/2fa" {
                input type="hidden" name="csrf" value=(csrf);
                p { label for="code" { (l.t("login2.code")) }
                    input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required maxlength="32"; }
                p class="hint" { (l.t("login2.hint")) }
                p { button type="submit" { (l.t("login2.submit")) } }
            }
        },
    )
}

async fn second_factor_form(State(c): State<Arc<Console>>, headers: HeaderMap) -> PageResult {
    let l = lang_of(&headers);
    match web::session_of(&c, &headers).await {
        Ok(Some((s, _))) if !s.full => Ok(html_response(second_markup(l, &s.csrf, None))),
        Ok(Some(_)) => Ok(Redirect::to("/console/").into_response()),
        Ok(None) => Ok(Redirect::to("/console/login").into_response()),
        Err(_) => Ok(Redirect::to("/console/login?expired=1").into_response()),
    }
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    code: String,
}

async fn login_second(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    web::Remote(remote): web::Remote,
    Form(f): Form<CodeForm>,
) -> PageResult {
    let l = lang_of(&headers);
    let remote = remote.unwrap_or_default();
    let (s, user) = match web::session_of(&c, &headers).await {
        Ok(Some((s, u))) if !s.full => (s, u),
        Ok(_) => return Ok(Redirect::to("/console/login").into_response()),
        Err(_) => return Ok(Redirect::to("/console/login?expired=1").into_response()),
    };
    let now = dodvpn_center::db::now_ms();
    if user.locked_until_ms > now {
        store::end_session(&c.center, &s, Some(&user), "", "")
            .await
            .map_err(|e| PageError::from((l, e)))?;
        refused(
            &c,
            "console_login_locked",
            user.actor(),
            Some(&remote),
            "second factor while locked",
        )
        .await;
        return Ok(html_response(login_markup(
            l,
            &pre_token(&headers).0,
            None,
            Some(locked_message(l, user.locked_until_ms)),
        )));
    }
    let code = f.code.trim();
    if code.len() > 32 {
        return Err(PageError::new(StatusCode::BAD_REQUEST, l, "err.bad_form"));
    }
    let factor = if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        let secret = totp::base32_decode(&user.totp_secret).unwrap_or_default();
        let unix = (now / 1000).max(0) as u64;
        match totp::matching_step(&secret, code, unix) {
            Some(step) if (step as i64) <= user.totp_last_step => Err("replayed"),
            Some(step) => Ok(SecondFactor::Totp(step)),
            None => Err("wrong"),
        }
    } else if store::use_recovery_code(&c.center, &user, code)
        .await
        .map_err(|e| PageError::from((l, e)))?
    {
        Ok(SecondFactor::Recovery)
    } else {
        Err("wrong")
    };
    match factor {
        Ok(f) => {
            let (sid, _) = store::complete_login(&c.center, Some(&s), &user, f, Some(&remote))
                .await
                .map_err(|e| PageError::from((l, e)))?;
            Ok((
                [set_cookie(SESSION_COOKIE, &sid)],
                Redirect::to("/console/"),
            )
                .into_response())
        }
        Err(why) => {
            let out = store::record_failure(&c.center, &user, "totp", why, Some(&remote))
                .await
                .map_err(|e| PageError::from((l, e)))?;
            let msg = match out {
                Attempt::Locked(until) => {
                    store::end_session(&c.center, &s, Some(&user), "", "")
                        .await
                        .map_err(|e| PageError::from((l, e)))?;
                    return Ok(html_response(login_markup(
                        l,
                        &pre_token(&headers).0,
                        None,
                        Some(locked_message(l, until)),
                    )));
                }
                Attempt::Replayed => l.t("login2.replayed").to_string(),
                _ => l.t("login2.wrong").to_string(),
            };
            Ok((
                StatusCode::UNAUTHORIZED,
                html_response(second_markup(l, &s.csrf, Some(msg))),
            )
                .into_response())
        }
    }
}

async fn logout(State(c): State<Arc<Console>>, headers: HeaderMap) -> PageResult {
    let l = lang_of(&headers);
    if let Ok(Some((s, u))) = web::session_of(&c, &headers).await {
        store::end_session(&c.center, &s, Some(&u), "console.logout", "logout")
            .await
            .map_err(|e| PageError::from((l, e)))?;
    }
    Ok((
        [web::clear_cookie(SESSION_COOKIE)],
        Redirect::to("/console/login"),
    )
        .into_response())
}

// ---------- setup (invitation) ----------

fn setup_markup(l: Lang, token: &str, err: Option<String>) -> Markup {
    page(
        l,
        None,
        l.t("setup.title"),
        "/console/setup",
        html! {
            @if let Some(e) = err { p role="alert" class="error" { (e) } }
            p { (l.t("setup.intro")) }
            form method="post" action="/console/setup" {
                input type="hidden" name="csrf" value=(token);
                p { label for="code" { (l.t("setup.code")) }
                    input id="code" name="code" type="text" required maxlength="128" autocomplete="off"; }
                p { label for="username" { (l.t("login.username")) }
                    input id="username" name="username" type="text" required maxlength="64" autocomplete="username"; }
                p { label for="password" { (l.t("login.password")) " (" (l.t("setup.min")) " " (password::MIN_LEN) ")" }
                    input id="password" name="password" type="password" required minlength=(password::MIN_LEN) maxlength="256" autocomplete="new-password"; }
                p { label for="password2" { (l.t("setup.again")) }
                    input id="password2" name="password2" type="password" required maxlength="256" autocomplete="new-password"; }
                p { button type="submit" { (l.t("setup.submit")) } }
            }
        },
    )
}

async fn setup_form(headers: HeaderMap) -> Response {
    let l = lang_of(&headers);
    let (token, fresh) = pre_token(&headers);
    with_pre(&token, fresh, setup_markup(l, &token, None))
}

#[derive(Deserialize)]
struct SetupForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password2: String,
}

pub fn valid_username(u: &str) -> bool {
    (3..=64).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

async fn setup(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    web::Remote(remote): web::Remote,
    Form(f): Form<SetupForm>,
) -> PageResult {
    let l = lang_of(&headers);
    let (token, _) = pre_token(&headers);
    let bad = |key: &'static str| {
        Ok((
            StatusCode::BAD_REQUEST,
            html_response(setup_markup(l, &token, Some(l.t(key).into()))),
        )
            .into_response())
    };
    if !valid_username(&f.username) {
        return bad("setup.bad_username");
    }
    match password::check_strength(&f.password) {
        Err(password::Weak::TooShort) => return bad("setup.too_short"),
        Err(password::Weak::TooLong) => return bad("setup.too_long"),
        Ok(()) => {}
    }
    if f.password != f.password2 {
        return bad("setup.mismatch");
    }
    if f.code.len() > 128 {
        return bad("setup.bad_code");
    }
    let hash = password::hash(&f.password).map_err(|e| PageError::internal(l, e))?;
    let made = match store::accept_invite(&c.center, f.code.trim(), &f.username, &hash).await {
        Ok(m) => m,
        Err(store::SetupError::BadInvite) => {
            refused(
                &c,
                "console_bad_invite",
                format!("ip:{}", remote.as_deref().unwrap_or("?")),
                remote.as_deref(),
                "an unknown, used or expired invitation code",
            )
            .await;
            return bad("setup.bad_code");
        }
        Err(store::SetupError::NameTaken) => return bad("setup.taken"),
        Err(store::SetupError::Api(e)) => return Err(PageError::from((l, e))),
    };
    let uri = totp::otpauth_uri("dodvpn", &made.user.username, &made.totp_secret_b32);
    Ok(html_response(page(
        l,
        None,
        l.t("factors.title"),
        "/console/setup",
        html! {
            p role="status" { (l.t("factors.intro")) }
            h2 { (l.t("factors.totp")) }
            p { (l.t("factors.secret")) " " code id="totp-secret" { (made.totp_secret_b32) } }
            p { (l.t("factors.uri")) " " code id="totp-uri" { (uri) } }
            h2 { (l.t("factors.recovery")) }
            ul id="recovery-codes" { @for rc in &made.recovery_codes { li { code { (rc) } } } }
            p { a href="/console/login" { (l.t("factors.to_login")) } }
        },
    )))
}

// ---------- overview ----------

/// Items listed under each overview alert; the count says how many there are in all.
const OVERVIEW_ITEMS: usize = 20;

fn more_items(l: Lang, n: usize) -> Markup {
    html! {
        @if n > OVERVIEW_ITEMS {
            p { a href="/console/devices" { (l.t("ov.more")) " (" (n - OVERVIEW_ITEMS) ")" } }
        }
    }
}

async fn overview(State(c): State<Arc<Console>>, a: Authed) -> PageResult {
    a.require(Can::ViewOverview)?;
    let l = a.lang;
    let now = dodvpn_center::db::now_ms();
    let mut expiring = Vec::new();
    let mut offline = Vec::new();
    let mut pending = Vec::new();
    if may(a.user.role, Can::ViewDevices) {
        let devices = c.get_json(&a, "/api/v1/devices").await?;
        for d in devices.as_array().into_iter().flatten() {
            let id = s(&d["id"]);
            let st = s(&d["status"]);
            if st == "in_service" && !c.center.hub.is_connected(&id) {
                offline.push(id.clone());
            }
            if st == "service_applied" || (!d["confirmed"].as_bool().unwrap_or(true)) {
                pending.push((id.clone(), st.clone()));
            }
        }
        let certs = c.get_json(&a, "/api/v1/certs").await?;
        for cert in certs.as_array().into_iter().flatten() {
            let na = cert["not_after"].as_i64().unwrap_or(0) * 1000;
            if cert["revoked_ms"].is_null() && na < now + 30 * 86400 * 1000 {
                expiring.push((s(&cert["device_id"]), s(&cert["serial"]), na));
            }
        }
    }
    let mut windows = Vec::new();
    if may(a.user.role, Can::ViewApprovals) {
        let aps = c.get_json(&a, "/api/v1/approvals").await?;
        for ap in aps.as_array().into_iter().flatten() {
            let nb = ap["not_before"].as_i64().unwrap_or(0) * 1000;
            let na = ap["not_after"].as_i64().unwrap_or(0) * 1000;
            if ap["closed_ms"].is_null() && nb <= now && now < na {
                windows.push((s(&ap["id"]), s(&ap["applicant_org"]), na));
            }
        }
    }
    let body = html! {
        section aria-labelledby="a-certs" {
            h2 id="a-certs" { (l.t("ov.expiring")) " (" (expiring.len()) ")" }
            @if expiring.is_empty() { p { (l.t("ov.none")) } } @else {
                ul { @for (d, serial, na) in expiring.iter().take(OVERVIEW_ITEMS) { li { a href={"/console/devices/" (d)} { (d) } " #" (serial) " — " (when(*na)) } } }
                (more_items(l, expiring.len()))
            }
        }
        section aria-labelledby="a-offline" {
            h2 id="a-offline" { (l.t("ov.offline")) " (" (offline.len()) ")" }
            @if offline.is_empty() { p { (l.t("ov.none")) } } @else {
                ul { @for d in offline.iter().take(OVERVIEW_ITEMS) { li { a href={"/console/devices/" (d)} { (d) } } } }
                (more_items(l, offline.len()))
            }
        }
        section aria-labelledby="a-pending" {
            h2 id="a-pending" { (l.t("ov.pending")) " (" (pending.len()) ")" }
            @if pending.is_empty() { p { (l.t("ov.none")) } } @else {
                ul { @for (d, st) in pending.iter().take(OVERVIEW_ITEMS) { li { a href={"/console/devices/" (d)} { (d) } " — " (st) } } }
                (more_items(l, pending.len()))
            }
        }
        section aria-labelledby="a-windows" {
            h2 id="a-windows" { (l.t("ov.windows")) " (" (windows.len()) ")" }
            @if windows.is_empty() { p { (l.t("ov.none")) } } @else {
                ul { @for (id, org, na) in &windows { li { (id) " — " (org) " → " (when(*na)) } } }
            }
        }
    };
    Ok(html_response(page(
        l,
        nav(&a),
        l.t("nav.overview"),
        "/console/",
        body,
    )))
}

// ---------- organisations and users ----------

async fn orgs_page(State(c): State<Arc<Console>>, a: Authed) -> PageResult {
    a.require(Can::ViewOrgs)?;
    let l = a.lang;
    let orgs = c.get_json(&a, "/api/v1/orgs").await?;
    let users = store::list_users(&c.center, a.user.org_id.as_deref())
        .await
        .map_err(|e| PageError::from((l, e)))?;
    let manage = may(a.user.role, Can::ManageUsers);
    let body = html! {
        h2 { (l.t("orgs.orgs")) }
        table {
            caption class="sr" { (l.t("orgs.orgs")) }
            thead { tr { th scope="col" { (l.t("col.id")) } th scope="col" { (l.t("col.name")) } th scope="col" { (l.t("col.kind")) } th scope="col" { (l.t("col.created")) } } }
            tbody { @for o in orgs.as_array().into_iter().flatten() {
                tr { td { (s(&o["id"])) } td { (s(&o["name"])) } td { (s(&o["kind"])) } td { (when(o["created_ms"].as_i64().unwrap_or(0))) } }
            } }
        }
        h2 { (l.t("orgs.users")) }
        table {
            caption class="sr" { (l.t("orgs.users")) }
            thead { tr { th scope="col" { (l.t("login.username")) } th scope="col" { (l.t("col.role")) } th scope="col" { (l.t("col.org")) } th scope="col" { (l.t("col.state")) } @if manage { th scope="col" { (l.t("col.action")) } } } }
            tbody { @for u in &users {
                tr { td { (u.username) } td { (l.t(web::role_key(u.role))) } td { (u.org_id.clone().unwrap_or_else(|| l.t("orgs.provider").into())) }
                     td { @if u.disabled_ms.is_some() { (l.t("orgs.disabled")) } @else { (l.t("orgs.enabled")) } }
                     @if manage { td { @if u.disabled_ms.is_none() && u.id != a.user.id {
                        form method="post" action={"/console/users/" (u.id) "/disable"} data-confirm=(l.t("orgs.disable_confirm")) {
                            input type="hidden" name="csrf" value=(a.session.csrf);
                            button type="submit" { (l.t("orgs.disable")) " " span class="sr" { (u.username) } }
                        } } } }
                }
            } }
        }
        @if manage {
            h2 { (l.t("orgs.invite")) }
            form method="post" action="/console/users/invite" {
                input type="hidden" name="csrf" value=(a.session.csrf);
                p { label for="role" { (l.t("col.role")) }
                    select id="role" name="role" { @for r in roles::ALL { @if roles::may_invite(a.user.role, a.user.org_id.as_deref(), r, a.user.org_id.as_deref()) || (a.user.org_id.is_none() && a.user.role == Role::ProviderAdmin) { option value=(r.as_str()) { (l.t(web::role_key(r))) } } } } }
                p { label for="org" { (l.t("col.org")) }
                    input id="org" name="org" type="text" maxlength="64" value=(a.user.org_id.clone().unwrap_or_default()); }
                p { button type="submit" { (l.t("orgs.invite_submit")) } }
            }
        }
    };
    Ok(html_response(page(
        l,
        nav(&a),
        l.t("nav.orgs"),
        "/console/orgs",
        body,
    )))
}

#[derive(Deserialize)]
struct InviteForm {
    #[serde(default)]
    role: String,
    #[serde(default)]
    org: String,
}

async fn invite(State(c): State<Arc<Console>>, a: Authed, Form(f): Form<InviteForm>) -> PageResult {
    a.require(Can::ManageUsers)?;
    let l = a.lang;
    let role = Role::parse(&f.role)
        .ok_or_else(|| PageError::new(StatusCode::BAD_REQUEST, l, "err.bad_form").with("role"))?;
    let org = f.org.trim();
    let org = (!org.is_empty()).then_some(org);
    if org.is_some_and(|o| o.len() > 64) {
        return Err(PageError::new(StatusCode::BAD_REQUEST, l, "err.bad_form").with("org"));
    }
    if !roles::may_invite(a.user.role, a.user.org_id.as_deref(), role, org) {
        return Err(PageError::new(StatusCode::BAD_REQUEST, l, "orgs.bad_scope"));
    }
    if let Some(o) = org {
        // The organisation must exist and be visible to the inviter.
        c.get_json(&a, &format!("/api/v1/orgs/{o}")).await?;
    }
    let code = store::create_invite(&c.center, &a.user.actor(), role, org, store::INVITE_TTL_MS)
        .await
        .map_err(|e| PageError::from((l, e)))?;
    Ok(html_response(page(
        l,
        nav(&a),
        l.t("orgs.invite"),
        "/console/orgs",
        html! {
            p role="status" { (l.t("orgs.invite_done")) }
            p { code id="invite-code" { (code) } }
            p { a href="/console/orgs" { (l.t("nav.orgs")) } }
        },
    )))
}

async fn disable_user(
    State(c): State<Arc<Console>>,
    a: Authed,
    Path(id): Path<String>,
) -> PageResult {
    a.require(Can::ManageUsers)?;
    let l = a.lang;
    let target = store::user_by_id(&c.center, &id)
        .await
        .map_err(|e| PageError::from((l, e)))?;
    let Some(target) = target.filter(|t| a.user.org_id.is_none() || t.org_id == a.user.org_id)
    else {
        return Err(PageError::not_found(l));
    };
    store::disable_user(&c.center, &a.user.actor(), &target)
        .await
        .map_err(|e| PageError::from((l, e)))?;
    Ok(Redirect::to("/console/orgs").into_response())
}

async fn new_recovery_codes(State(c): State<Arc<Console>>, a: Authed) -> PageResult {
    let l = a.lang;
    let codes = store::regenerate_recovery(&c.center, &a.user)
        .await
        .map_err(|e| PageError::from((l, e)))?;
    Ok(html_response(page(
        l,
        nav(&a),
        l.t("factors.recovery"),
        "/console/orgs",
        html! {
            p role="status" { (l.t("account.recovery_done")) }
            ul id="recovery-codes" { @for rc in &codes { li { code { (rc) } } } }
        },
    )))
}

// ---------- devices ----------

#[derive(Deserialize, Default)]
struct PageQ {
    #[serde(default)]
    page: usize,
}

/// Devices shown per page (10,000 devices in one table help nobody and cost seconds).
const DEVICES_PER_PAGE: usize = 100;

/// The earliest expiry of each device's live certificates, in one pass.
fn cert_expiries(certs: &Value) -> std::collections::HashMap<String, i64> {
    let mut out = std::collections::HashMap::new();
    for x in certs.as_array().into_iter().flatten() {
        if let (Some(d), Some(na), true) = (
            x["device_id"].as_str(),
            x["not_after"].as_i64(),
            x["revoked_ms"].is_null(),
        ) {
            out.entry(d.to_string())
                .and_modify(|v: &mut i64| *v = (*v).min(na))
                .or_insert(na);
        }
    }
    out
}

async fn devices_page(
    State(c): State<Arc<Console>>,
    a: Authed,
    Query(q): Query<PageQ>,
) -> PageResult {
    a.require(Can::ViewDevices)?;
    let l = a.lang;
    let offset = q.page.min(100_000) * DEVICES_PER_PAGE;
    let devices = c
        .get_json(
            &a,
            &format!(
                "/api/v1/devices?limit={}&offset={offset}",
                DEVICES_PER_PAGE + 1
            ),
        )
        .await?;
    let list = devices.as_array().map_or(&[][..], Vec::as_slice);
    let more = list.len() > DEVICES_PER_PAGE;
    let certs = c.get_json(&a, "/api/v1/certs").await?;
    let expiry = cert_expiries(&certs);
    let body = html! {
        table {
            caption class="sr" { (l.t("nav.devices")) }
            thead { tr {
                th scope="col" { (l.t("col.id")) } th scope="col" { (l.t("col.serial")) } th scope="col" { (l.t("col.org")) }
                th scope="col" { (l.t("col.state")) } th scope="col" { (l.t("col.online")) } th scope="col" { (l.t("col.cert_expiry")) }
            } }
            tbody { @for d in list.iter().take(DEVICES_PER_PAGE) {
                @let id = s(&d["id"]);
                tr {
                    td { a href={"/console/devices/" (id)} { (id) } }
                    td { (s(&d["serial"])) } td { (s(&d["owner_org"])) } td { (s(&d["status"])) }
                    td { @if c.center.hub.is_connected(&id) { (l.t("dev.online")) } @else { (l.t("dev.offline")) } }
                    td { @if let Some(na) = expiry.get(&id) { (when(na * 1000)) } @else { "—" } }
                }
            } }
        }
        nav aria-label=(l.t("dev.pages")) class="pager" {
            @if q.page > 0 { a href={"/console/devices?page=" (q.page - 1)} rel="prev" { (l.t("dev.prev")) } " " }
            span { (l.t("dev.page")) " " (q.page + 1) }
            @if more { " " a href={"/console/devices?page=" (q.page + 1)} rel="next" { (l.t("dev.next")) } }
        }
    };
    Ok(html_response(page(
        l,
        nav(&a),
        l.t("nav.devices"),
        "/console/devices",
        body,
    )))
}

pub(crate) fn safe_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 80 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

async fn device_page(
    State(c): State<Arc<Console>>,
    a: Authed,
    Path(id): Path<String>,
) -> PageResult {
    a.require(Can::ViewDevices)?;
    let l = a.lang;
    if !safe_id(&id) {
        return Err(PageError::not_found(l));
    }
    let d = c.get_json(&a, &format!("/api/v1/devices/{id}")).await?;
    let certs = c
        .get_json(&a, &format!("/api/v1/certs?device={id}"))
        .await?;
    let last_seen: Option<i64> =
        sqlx::query_scalar("SELECT MAX(received_ms) FROM session_reports WHERE reporter = $1")
            .bind(&id)
            .fetch_one(&c.center.db.pool)
            .await
            .ok()
            .flatten();
    // What the agent reported it runs (PUT /api/v1/device/software at its start).
    let software: Option<Value> =
        sqlx::query_scalar::<_, Option<String>>("SELECT software FROM devices WHERE id = $1")
            .bind(&id)
            .fetch_optional(&c.center.db.pool)
            .await
            .ok()
            .flatten()
            .flatten()
            .and_then(|t| serde_json::from_str(&t).ok());
    let body = html! {
        dl {
            dt { (l.t("col.serial")) } dd { (s(&d["serial"])) }
            dt { (l.t("col.model")) } dd { (s(&d["model"])) }
            dt { (l.t("col.org")) } dd { (s(&d["owner_org"])) }
            dt { (l.t("col.state")) } dd id="device-state" { (s(&d["status"])) }
            dt { (l.t("col.online")) } dd { @if c.center.hub.is_connected(&id) { (l.t("dev.online")) } @else { (l.t("dev.offline")) } }
            dt { (l.t("col.last_seen")) } dd { @if let Some(t) = last_seen { (when(t)) } @else { "—" } }
            dt { (l.t("col.agent")) } dd id="device-agent" { @if let Some(sw) = &software { (s(&sw["version"])) " (" (s(&sw["os"])) ")" } @else { "—" } }
            dt { (l.t("col.groups")) } dd { (d["groups"].as_array().map(|g| g.iter().map(s).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
        }
        h2 { (l.t("dev.certs")) }
        table {
            caption class="sr" { (l.t("dev.certs")) }
            thead { tr { th scope="col" { (l.t("col.serial")) } th scope="col" { (l.t("col.tier")) } th scope="col" { (l.t("col.cert_expiry")) } th scope="col" { (l.t("col.state")) } } }
            tbody { @for x in certs.as_array().into_iter().flatten() {
                tr { td { (s(&x["serial"])) } td { (s(&x["tier"])) } td { (when(x["not_after"].as_i64().unwrap_or(0) * 1000)) }
                     td { @if x["revoked_ms"].is_null() { (l.t("dev.valid")) } @else { (l.t("dev.revoked")) } } }
            } }
        }
        @if may(a.user.role, Can::RevokeDevice) && s(&d["status"]) != "revoked" {
            h2 { (l.t("dev.revoke")) }
            form method="post" action={"/console/devices/" (id) "/revoke"} data-confirm=(l.t("dev.revoke_confirm")) {
                input type="hidden" name="csrf" value=(a.session.csrf);
                p { label for="reason" { (l.t("col.reason")) } input id="reason" name="reason" type="text" required maxlength="256"; }
                p { input id="confirm" name="confirm" type="checkbox" value="yes" required; label for="confirm" { (l.t("dev.revoke_check")) } }
                p { button type="submit" class="danger" { (l.t("dev.revoke")) } }
            }
        }
    };
    Ok(html_response(page(
        l,
        nav(&a),
        &format!("{} {}", l.t("dev.title"), id),
        "/console/devices",
        body,
    )))
}

#[derive(Deserialize)]
pub(crate) struct ReasonForm {
    #[serde(default)]
    pub(crate) reason: String,
    #[serde(default)]
    pub(crate) confirm: String,
}

pub(crate) fn check_reason(l: Lang, r: &str) -> Result<String, PageError> {
    let r = r.trim();
    if r.is_empty() || r.chars().count() > 256 || r.chars().any(|c| c.is_control()) {
        return Err(PageError::new(StatusCode::BAD_REQUEST, l, "err.reason"));
    }
    Ok(r.to_string())
}

async fn revoke_device(
    State(c): State<Arc<Console>>,
    a: Authed,
    Path(id): Path<String>,
    Form(f): Form<ReasonForm>,
) -> PageResult {
    a.require(Can::RevokeDevice)?;
    let l = a.lang;
    if !safe_id(&id) {
        return Err(PageError::not_found(l));
    }
    if f.confirm != "yes" {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            l,
            "dev.revoke_unconfirmed",
        ));
    }
    let reason = check_reason(l, &f.reason)?;
    c.post_json(
        &a,
        &format!("/api/v1/devices/{id}/revoke"),
        json!({"reason": reason}),
    )
    .await?;
    Ok(Redirect::to(&format!("/console/devices/{id}")).into_response())
}

// ---------- live sessions ----------

/// The visible live sessions with both ends' latest counters, as the page and the
/// SSE stream show them.
async fn live_sessions(c: &Console, a: &Authed) -> Result<Vec<Value>, PageError> {
    let list = c.get_json(a, "/api/v1/sessions").await?;
    // Each end's newest counters of every live session, in one query (a page or an
    // open tab's refresh must not cost a query per session).
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT session_id, reporter, bytes_in, bytes_out FROM ( \
           SELECT r.session_id, r.reporter, r.bytes_in, r.bytes_out, \
                  ROW_NUMBER() OVER (PARTITION BY r.session_id, r.reporter ORDER BY r.at DESC, r.received_ms DESC) AS n \
           FROM session_reports r JOIN sessions s ON s.id = r.session_id WHERE s.status = 'up') latest \
         WHERE n = 1",
    )
    .fetch_all(&c.center.db.pool)
    .await
    .map_err(|e| PageError::internal(a.lang, e))?;
    let latest: std::collections::HashMap<(String, String), (i64, i64)> = rows
        .into_iter()
        .map(|(sid, rep, i, o)| ((sid, rep), (i, o)))
        .collect();
    let mut out = Vec::new();
    for x in list.as_array().into_iter().flatten() {
        let id = s(&x["id"]);
        let last = |dev: &str| {
            latest
                .get(&(id.clone(), dev.to_string()))
                .copied()
                .unwrap_or((0, 0))
        };
        let (ai, ao) = last(&s(&x["device_a"]));
        let (bi, bo) = last(&s(&x["device_b"]));
        out.push(json!({
            "id": id, "device_a": x["device_a"], "device_b": x["device_b"],
            "first_ms": x["first_ms"], "a_in": ai, "a_out": ao, "b_in": bi, "b_out": bo,
            "relay": x["relay"],
        }));
    }
    Ok(out)
}

async fn sessions_page(State(c): State<Arc<Console>>, a: Authed) -> PageResult {
    a.require(Can::ViewSessions)?;
    let l = a.lang;
    let live = live_sessions(&c, &a).await?;
    let cut = may(a.user.role, Can::CutSession);
    let body = html! {
        p id="live-status" role="status" aria-live="polite" data-live=(l.t("ses.live")) data-lost=(l.t("ses.lost")) { }
        table id="sessions" data-stream="/console/sessions/events" data-direct=(l.t("ses.direct")) data-relay=(l.t("ses.relay")) {
            caption class="sr" { (l.t("nav.sessions")) }
            thead { tr {
                th scope="col" { (l.t("col.id")) } th scope="col" { (l.t("ses.end_a")) } th scope="col" { (l.t("ses.end_b")) }
                th scope="col" { (l.t("ses.since")) } th scope="col" { (l.t("ses.bytes_a")) } th scope="col" { (l.t("ses.bytes_b")) }
                th scope="col" { (l.t("ses.path")) }
            } }
            tbody { @for x in &live {
                tr data-id=(s(&x["id"])) { td { (s(&x["id"])) } td { (s(&x["device_a"])) } td { (s(&x["device_b"])) }
                     td { (when(x["first_ms"].as_i64().unwrap_or(0))) }
                     td { (s(&x["a_in"])) " / " (s(&x["a_out"])) } td { (s(&x["b_in"])) " / " (s(&x["b_out"])) }
                     td { @match x["relay"].as_str() {
                         Some(r) => { (l.t("ses.relay")) " " (r) }
                         None => { (l.t("ses.direct")) }
                     } } }
            } }
        }
        @if live.is_empty() { p { (l.t("ses.none")) } }
        @if cut && !live.is_empty() {
            h2 { (l.t("ses.cut")) }
            @for x in &live {
                @let id = s(&x["id"]);
                form method="post" action={"/console/sessions/" (id) "/cut"} data-confirm=(l.t("ses.cut_confirm")) {
                    input type="hidden" name="csrf" value=(a.session.csrf);
                    label for={"reason-" (id)} { (l.t("col.reason")) " (" (id) ")" }
                    input id={"reason-" (id)} name="reason" type="text" required maxlength="256";
                    button type="submit" class="danger" { (l.t("ses.cut")) }
                }
            }
        }
    };
    Ok(html_response(page(
        l,
        nav(&a),
        l.t("nav.sessions"),
        "/console/sessions",
        body,
    )))
}

/// Live updates: the visible sessions whenever they change, checked every second
/// against a snapshot all open tabs of one organisation share. The session cookie is
/// checked on every tick, so a stream ends with its login.
/// How often an open sessions page looks for new counters, and how old a shared
/// snapshot may be.
const LIVE_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// The live sessions of the user's scope as the feed sends them, computed at most once
/// per [`LIVE_TICK`] however many tabs are open.
async fn live_snapshot(c: &Console, a: &Authed) -> Result<Arc<String>, PageError> {
    let mut cache = c.live.lock().await;
    let key = a.user.org_id.clone();
    if let Some((at, data)) = cache.get(&key) {
        if at.elapsed() < LIVE_TICK {
            return Ok(data.clone());
        }
    }
    let live = live_sessions(c, a).await?;
    let data = Arc::new(serde_json::to_string(&live).unwrap_or_default());
    cache.insert(key, (std::time::Instant::now(), data.clone()));
    Ok(data)
}

async fn sessions_events(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    a: Authed,
) -> PageResult {
    a.require(Can::ViewSessions)?;
    let stream = futures_util::stream::unfold(
        (c, headers, a, String::new(), true),
        |(c, headers, a, last, first)| async move {
            loop {
                if !first {
                    tokio::time::sleep(LIVE_TICK).await;
                }
                match web::session_of(&c, &headers).await {
                    Ok(Some((s, _))) if s.full => {}
                    _ => return None,
                }
                let Ok(data) = live_snapshot(&c, &a).await else {
                    return None;
                };
                if *data != last || first {
                    let data = data.to_string();
                    let ev = Event::default().event("sessions").data(data.clone());
                    return Some((
                        Ok::<_, std::convert::Infallible>(ev),
                        (c, headers, a, data, false),
                    ));
                }
            }
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn cut_session(
    State(c): State<Arc<Console>>,
    a: Authed,
    Path(id): Path<String>,
    Form(f): Form<ReasonForm>,
) -> PageResult {
    a.require(Can::CutSession)?;
    let l = a.lang;
    if id.len() > 80 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(PageError::not_found(l));
    }
    let reason = check_reason(l, &f.reason)?;
    c.post_json(
        &a,
        &format!("/api/v1/sessions/{id}/cut"),
        json!({"reason": reason}),
    )
    .await?;
    Ok(Redirect::to("/console/sessions").into_response())
}

// ---------- approvals (maintenance windows) ----------

// ---------- audit ----------

#[derive(Deserialize, Default)]
struct AuditQ {
    #[serde(default)]
    action: String,
    #[serde(default)]
    org: String,
    #[serde(default)]
    device: String,
    /// yyyy-mm-dd (UTC), inclusive.
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

fn day_ms(d: &str) -> Option<i64> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(d, &fmt)
        .ok()
        .map(|d| d.midnight().assume_utc().unix_timestamp() * 1000)
}

/// Before → after of a record, where its details say so (`before`/`after`, or
/// `old`/`new`); otherwise the details themselves.
fn change(details: &Value) -> Markup {
    let pick = |a: &str, b: &str| details.get(a).or_else(|| details.get(b));
    match (pick("before", "old"), pick("after", "new")) {
        (Some(b), Some(af)) => {
            html! { code class="before" { (b.to_string()) } " → " code class="after" { (af.to_string()) } }
        }
        _ => html! { code { (details.to_string()) } },
    }
}

async fn audit_page(
    State(c): State<Arc<Console>>,
    a: Authed,
    q: Result<Query<AuditQ>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    a.require(Can::ViewAudit)?;
    let l = a.lang;
    let Query(q) = q.map_err(|_| PageError::new(StatusCode::BAD_REQUEST, l, "err.bad_form"))?;
    for f in [&q.action, &q.org, &q.device, &q.from, &q.to] {
        if f.len() > 80 {
            return Err(PageError::new(StatusCode::BAD_REQUEST, l, "err.bad_form"));
        }
    }
    let from = if q.from.is_empty() {
        None
    } else {
        Some(
            day_ms(&q.from)
                .ok_or_else(|| PageError::new(StatusCode::BAD_REQUEST, l, "audit.bad_date"))?,
        )
    };
    let to = if q.to.is_empty() {
        None
    } else {
        Some(
            day_ms(&q.to)
                .ok_or_else(|| PageError::new(StatusCode::BAD_REQUEST, l, "audit.bad_date"))?
                + 86_400_000,
        )
    };
    let verify = c.get_json(&a, "/api/v1/audit/verify").await?;
    let recs = c.get_json(&a, "/api/v1/audit?limit=10000").await?;
    // Devices as witnesses (issue 15): the newest checkpoint's cosignatures, and
    // the devices' alerts (the provider's side only). Neither stops the page.
    let quiet = |ans: Result<ApiAnswer, String>| {
        ans.ok()
            .filter(|x| x.status.is_success())
            .and_then(|x| serde_json::from_slice::<Value>(&x.body).ok())
    };
    let checkpoint = quiet(
        c.call(&a.user, Method::GET, "/api/v1/audit/checkpoint", None)
            .await,
    );
    let alerts = if a.user.org_id.is_none() {
        quiet(
            c.call(&a.user, Method::GET, "/api/v1/audit/alerts", None)
                .await,
        )
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
    } else {
        vec![]
    };
    let keep = |r: &Value| {
        let text = format!("{} {} {}", s(&r["actor"]), s(&r["subject"]), r["details"]);
        let ts = r["ts_ms"].as_i64().unwrap_or(0);
        (q.action.is_empty() || s(&r["action"]).starts_with(&q.action))
            && (q.org.is_empty() || text.contains(&q.org))
            && (q.device.is_empty() || text.contains(&q.device))
            && from.is_none_or(|f| ts >= f)
            && to.is_none_or(|t| ts < t)
    };
    let mut shown: Vec<&Value> = recs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| keep(r))
        .collect();
    shown.reverse();
    let total = shown.len();
    shown.truncate(500);
    let body = html! {
        p id="chain-status" role="status" class=(if verify["ok"].as_bool() == Some(true) { "ok" } else { "error" }) {
            @if verify["ok"].as_bool() == Some(true) { (l.t("audit.chain_ok")) " (" (s(&verify["records"])) ")" }
            @else { (l.t("audit.chain_bad")) " " (s(&verify["error"])) }
        }
        @if let Some(cp) = &checkpoint {
            p id="witness-status" class=(if cp["witnessed"].as_bool() == Some(true) { "ok" } else { "" }) {
                (l.t("audit.checkpoint")) " " (s(&cp["size"])) ": " (s(&cp["cosignatures"])) " / " (s(&cp["witness_threshold"])) " " (l.t("audit.cosignatures"))
                @if cp["witnessed"].as_bool() == Some(true) { " — " (l.t("audit.witnessed")) }
            }
        }
        @if !alerts.is_empty() {
            section id="witness-alerts" class="error" {
                h2 { (l.t("audit.witness_alerts")) }
                table {
                    caption class="sr" { (l.t("audit.witness_alerts")) }
                    thead { tr { th scope="col" { (l.t("audit.device")) } th scope="col" { (l.t("audit.kept")) } th scope="col" { (l.t("audit.shown")) } th scope="col" { (l.t("audit.problem")) } th scope="col" { (l.t("audit.time")) } th scope="col" { (l.t("audit.reports")) } } }
                    tbody { @for x in &alerts {
                        tr { td { (s(&x["device_id"])) } td { (s(&x["kept_size"])) } td { (s(&x["new_size"])) } td { code { (s(&x["problem"])) } " " (s(&x["message"])) } td { (when(x["last_ms"].as_i64().unwrap_or(0))) } td { (s(&x["reports"])) } }
                    } }
                }
            }
        }
        form method="get" action="/console/audit" class="filters" {
            p { label for="f-action" { (l.t("audit.type")) } input id="f-action" name="action" type="text" maxlength="80" value=(q.action); }
            p { label for="f-org" { (l.t("col.org")) } input id="f-org" name="org" type="text" maxlength="80" value=(q.org); }
            p { label for="f-device" { (l.t("audit.device")) } input id="f-device" name="device" type="text" maxlength="80" value=(q.device); }
            p { label for="f-from" { (l.t("audit.from")) } input id="f-from" name="from" type="date" value=(q.from); }
            p { label for="f-to" { (l.t("audit.to")) } input id="f-to" name="to" type="date" value=(q.to); }
            p { button type="submit" { (l.t("audit.filter")) } }
        }
        p { a href="/console/audit/export" download="dodvpn-audit.jsonl" { (l.t("audit.export")) } " — " (total) " " (l.t("audit.records")) }
        table id="audit" {
            caption class="sr" { (l.t("nav.audit")) }
            thead { tr { th scope="col" { "#" } th scope="col" { (l.t("audit.time")) } th scope="col" { (l.t("audit.actor")) } th scope="col" { (l.t("audit.type")) } th scope="col" { (l.t("audit.subject")) } th scope="col" { (l.t("audit.change")) } } }
            tbody { @for r in &shown {
                tr { td { (s(&r["seq"])) } td { (when(r["ts_ms"].as_i64().unwrap_or(0))) } td { (s(&r["actor"])) } td { (s(&r["action"])) } td { (s(&r["subject"])) } td { (change(&r["details"])) } }
            } }
        }
    };
    Ok(html_response(page(
        l,
        nav(&a),
        l.t("nav.audit"),
        "/console/audit",
        body,
    )))
}

async fn audit_export(State(c): State<Arc<Console>>, a: Authed) -> PageResult {
    a.require(Can::ViewAudit)?;
    let ans = c
        .call(&a.user, Method::GET, "/api/v1/audit/export", None)
        .await
        .map_err(|e| PageError::internal(a.lang, e))?;
    if !ans.status.is_success() {
        return Err(PageError::not_found(a.lang));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/jsonl"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"dodvpn-audit.jsonl\"",
            ),
        ],
        ans.body,
    )
        .into_response())
}

// ---------- the ledger (issue 11): what the centre knows of an organisation's connections ----------

async fn ledger_index(State(c): State<Arc<Console>>, a: Authed) -> PageResult {
    a.require(Can::ViewLedger)?;
    if let Some(org) = &a.user.org_id {
        return Ok(Redirect::to(&format!("/console/ledger/{org}")).into_response());
    }
    let l = a.lang;
    let orgs = c.get_json(&a, "/api/v1/orgs").await?;
    let body = html! {
        h2 { (l.t("ledger.choose")) }
        ul { @for o in orgs.as_array().into_iter().flatten() {
            li { a href={"/console/ledger/" (s(&o["id"]))} { (s(&o["name"])) } }
        } }
    };
    Ok(html_response(page(
        l,
        nav(&a),
        l.t("nav.ledger"),
        "/console/ledger",
        body,
    )))
}

/// Every finding of the ledger's exposure diagnosis with the row it is filed under
/// (None: on an address no row names).
fn filed_findings(led: &Value) -> Vec<(Option<String>, Value)> {
    let mut out = Vec::new();
    for o in led["outside"].as_array().into_iter().flatten() {
        for f in o["findings"].as_array().into_iter().flatten() {
            out.push((Some(s(&o["row"]["id"])), f.clone()));
        }
    }
    for e in led["equipment"].as_array().into_iter().flatten() {
        for f in e["findings"].as_array().into_iter().flatten() {
            out.push((Some(s(&e["id"])), f.clone()));
        }
    }
    for f in led["exposure"]["unledgered"]
        .as_array()
        .into_iter()
        .flatten()
    {
        out.push((None, f.clone()));
    }
    out
}

/// A free-text id as one path segment of a link.
fn segment(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A JSON list of strings as one cell.
fn list(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .map(s)
        .collect::<Vec<_>>()
        .join(" ")
}

async fn ledger_page(
    State(c): State<Arc<Console>>,
    a: Authed,
    Path(org): Path<String>,
) -> PageResult {
    a.require(Can::ViewLedger)?;
    let l = a.lang;
    if !safe_id(&org) {
        return Err(PageError::not_found(l));
    }
    let led = c
        .get_json(&a, &format!("/api/v1/orgs/{org}/ledger"))
        .await?;
    let sheets = c
        .get_json(&a, &format!("/api/v1/orgs/{org}/checksheets"))
        .await?;
    let rows = |k: &str| led[k].as_array().cloned().unwrap_or_default();
    let overdue = |v: &Value| html! { @if v == &Value::Bool(true) { " " strong { "(" (l.t("ledger.overdue")) ")" } } };
    let edit = roles::may(a.user.role, Can::EditLedger);
    let base = format!("/console/ledger/{org}");
    let edit_link = |table: &str, id: &Value| {
        html! {
            @if edit { " " a href={(base) "/" (table) "/" (segment(&s(id)))} { (l.t("ledger.edit")) span class="sr" { " " (s(id)) } } }
        }
    };
    let body = html! {
        p { a href={"/console/ledger/" (org) "/report.pdf"} { (l.t("ledger.report")) } }
        h2 { (l.t("ledger.through")) }
        table {
            caption class="sr" { (l.t("ledger.through")) }
            thead { tr { th scope="col" { (l.t("col.peer")) } th scope="col" { (l.t("col.id")) } th scope="col" { (l.t("col.purpose")) } th scope="col" { (l.t("col.services")) } th scope="col" { (l.t("col.state")) } th scope="col" { (l.t("col.since")) } } }
            tbody { @for r in rows("dodvpn") { tr {
                td { (s(&r["peer_org_name"])) } td { (s(&r["device_id"])) " ↔ " (s(&r["peer_device_id"])) }
                td { (s(&r["purpose"])) }
                td { (r["services"].as_array().into_iter().flatten().map(s).collect::<Vec<_>>().join(", ")) }
                td { (s(&r["state"])) } td { (when(r["since_ms"].as_i64().unwrap_or(0))) }
            } } }
        }
        h2 { (l.t("ledger.outside")) }
        table {
            caption class="sr" { (l.t("ledger.outside")) }
            thead { tr { th scope="col" { (l.t("col.id")) } th scope="col" { (l.t("col.kind")) } th scope="col" { (l.t("col.contractor")) } th scope="col" { (l.t("col.addresses")) } th scope="col" { (l.t("col.reviewed")) } } }
            tbody { @for o in rows("outside") { tr {
                td { (s(&o["row"]["id"])) (edit_link("outside", &o["row"]["id"])) } td { (s(&o["row"]["kind"])) } td { (s(&o["row"]["contractor"])) }
                td { (list(&o["row"]["addresses"])) }
                td { (s(&o["row"]["last_reviewed"])) (overdue(&o["review_overdue"])) }
            } } }
        }
        @if edit { p { a href={(base) "/outside/new"} { (l.t("ledger.add_row")) span class="sr" { ": " (l.t("ledger.outside")) } } } }
        h2 { (l.t("ledger.equipment")) }
        table {
            caption class="sr" { (l.t("ledger.equipment")) }
            thead { tr { th scope="col" { (l.t("col.id")) } th scope="col" { (l.t("col.name")) } th scope="col" { (l.t("col.location")) } th scope="col" { (l.t("col.addresses")) } th scope="col" { (l.t("col.reviewed")) } } }
            tbody { @for e in rows("equipment") { tr {
                td { (s(&e["id"])) (edit_link("equipment", &e["id"])) } td { (s(&e["name"])) } td { (s(&e["location"])) } td { (list(&e["addresses"])) }
                td { (s(&e["last_reviewed"])) (overdue(&e["review_overdue"])) }
            } } }
        }
        @if edit { p { a href={(base) "/equipment/new"} { (l.t("ledger.add_row")) span class="sr" { ": " (l.t("ledger.equipment")) } } } }
        h2 { (l.t("ledger.exposure")) }
        @if led["exposure"].is_null() {
            p { (l.t("ledger.exposure_none")) }
        } @else {
            p { (s(&led["exposure"]["run_id"])) " — " (when(led["exposure"]["finished_ms"].as_i64().unwrap_or(0))) }
            table {
                caption class="sr" { (l.t("ledger.exposure")) }
                thead { tr { th scope="col" { (l.t("col.row")) } th scope="col" { (l.t("col.address")) } th scope="col" { (l.t("col.severity")) } th scope="col" { (l.t("col.finding")) } th scope="col" { (l.t("col.state")) } } }
                tbody { @for (row, f) in filed_findings(&led) { tr {
                    td { @if let Some(row) = &row { (row) } @else { strong { (l.t("ledger.not_in_ledger")) } } }
                    td { (s(&f["finding"]["target"])) ":" (s(&f["finding"]["port"])) }
                    td { (s(&f["finding"]["severity"])) }
                    td { (s(&f["finding"][if l == Lang::Ja { "title_ja" } else { "title_en" }])) }
                    td { (l.t(if f["new"] == true { "ledger.new" } else { "ledger.unchanged" })) }
                } } }
            }
            @if led["exposure"]["unledgered"].as_array().is_some_and(|a| !a.is_empty()) {
                p { strong { (s(&led["exposure"][if l == Lang::Ja { "note_ja" } else { "note_en" }])) } }
            }
        }
        h2 { (l.t("ledger.diagram")) }
        p { img src={"/console/ledger/" (org) "/diagram.svg"} alt=(l.t("ledger.diagram_alt")); }
        h2 { (l.t("ledger.sheets")) }
        table {
            caption class="sr" { (l.t("ledger.sheets")) }
            thead { tr { th scope="col" { (l.t("col.sheet")) } th scope="col" { (l.t("col.score")) } th scope="col" { (l.t("col.state")) } th scope="col" { (l.t("col.since")) } } }
            tbody { @for x in sheets.as_array().into_iter().flatten() { tr {
                td { (s(&x["sheet"])) " " (s(&x["version"])) } td { (s(&x["percent"])) "%" } td { (s(&x["state"])) }
                td { (when(x["submitted_ms"].as_i64().unwrap_or(0))) }
            } } }
        }
        @if edit {
            p { (l.t("ledger.answer")) ": "
                @for sheet in ["small", "large", "provider", "mhlw"] {
                    a href={(base) "/sheets/" (sheet)} { (sheet) } " "
                }
            }
        }
    };
    let title = format!("{} — {}", l.t("nav.ledger"), s(&led["org_name"]));
    Ok(html_response(page(
        l,
        nav(&a),
        &title,
        "/console/ledger",
        body,
    )))
}

/// A diagram or report straight from the API, for the browser (which holds no API credential).
async fn api_file(c: &Console, a: &Authed, uri: &str, mime: &'static str) -> PageResult {
    let ans = c
        .call(&a.user, Method::GET, uri, None)
        .await
        .map_err(|e| PageError::internal(a.lang, e))?;
    if !ans.status.is_success() {
        return Err(json_or_page(a.lang, ans)
            .err()
            .unwrap_or_else(|| PageError::not_found(a.lang)));
    }
    Ok(([(header::CONTENT_TYPE, mime)], ans.body).into_response())
}

async fn ledger_diagram(
    State(c): State<Arc<Console>>,
    a: Authed,
    Path(org): Path<String>,
) -> PageResult {
    a.require(Can::ViewLedger)?;
    if !safe_id(&org) {
        return Err(PageError::not_found(a.lang));
    }
    api_file(
        &c,
        &a,
        &format!("/api/v1/orgs/{org}/ledger/diagram?format=svg"),
        "image/svg+xml",
    )
    .await
}

async fn ledger_report(
    State(c): State<Arc<Console>>,
    a: Authed,
    Path(org): Path<String>,
) -> PageResult {
    a.require(Can::ViewLedger)?;
    if !safe_id(&org) {
        return Err(PageError::not_found(a.lang));
    }
    api_file(
        &c,
        &a,
        &format!("/api/v1/orgs/{org}/report?format=pdf"),
        "application/pdf",
    )
    .await
}
