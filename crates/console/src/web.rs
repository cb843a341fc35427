//! What every console request shares: the language, the session cookie and its
//! checks (idle, maximum age), the CSRF check of every state change, the security
//! headers, the error page and the page layout.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup, DOCTYPE};
use subtle::ConstantTimeEq;

use crate::i18n::Lang;
use crate::roles::{may, Can};
use crate::store::{self, Session, User};
use crate::Console;

/// `__Host-`: the browser keeps it only if Secure, Path=/ and no Domain.
pub const SESSION_COOKIE: &str = "__Host-dodvpn-console";
/// Anti-CSRF value for forms shown before login (double submit).
pub const PRE_COOKIE: &str = "__Host-dodvpn-pre";
pub const LANG_COOKIE: &str = "dodvpn-lang";
/// Forms are small; anything larger is refused before it is parsed.
pub const MAX_FORM: usize = 16 * 1024;
/// A check-sheet answer form.
pub const MAX_SHEET_FORM: usize = 1024 * 1024;

pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

pub fn set_cookie(name: &str, value: &str) -> (header::HeaderName, String) {
    (
        header::SET_COOKIE,
        format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict"),
    )
}

pub fn clear_cookie(name: &str) -> (header::HeaderName, String) {
    (
        header::SET_COOKIE,
        format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
    )
}

pub fn lang_of(headers: &HeaderMap) -> Lang {
    if let Some(l) = cookie(headers, LANG_COOKIE).and_then(|v| Lang::parse(&v)) {
        return l;
    }
    Lang::from_accept_language(
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    )
}

pub fn remote(headers: &HeaderMap, ext: &axum::http::Extensions) -> Option<String> {
    let _ = headers;
    ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|ci| ci.0.ip().to_string())
}

/// An error page: a status, a catalogue key, and optionally a detail (never a secret).
pub struct PageError {
    pub status: StatusCode,
    pub lang: Lang,
    pub key: &'static str,
    pub detail: Option<String>,
}

impl PageError {
    pub fn new(status: StatusCode, lang: Lang, key: &'static str) -> Self {
        PageError {
            status,
            lang,
            key,
            detail: None,
        }
    }
    pub fn not_found(lang: Lang) -> Self {
        Self::new(StatusCode::NOT_FOUND, lang, "err.not_found")
    }
    pub fn forbidden(lang: Lang) -> Self {
        Self::new(StatusCode::FORBIDDEN, lang, "err.forbidden")
    }
    pub fn internal(lang: Lang, e: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %e, "console request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, lang, "err.internal")
    }
    pub fn with(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

impl From<(Lang, dodvpn_center::error::ApiError)> for PageError {
    fn from((lang, e): (Lang, dodvpn_center::error::ApiError)) -> Self {
        if e.status == StatusCode::SERVICE_UNAVAILABLE {
            return PageError::new(e.status, lang, "err.unavailable").with(e.message);
        }
        PageError::internal(lang, e.message)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let l = self.lang;
        let body = page(
            l,
            None,
            l.t(self.key),
            "",
            html! {
                p role="alert" class="error" { (l.t(self.key)) }
                @if let Some(d) = &self.detail { p class="detail" { (d) } }
                p { a href="/console/" { (l.t("nav.overview")) } }
            },
        );
        (self.status, html_response(body)).into_response()
    }
}

pub type PageResult = Result<Response, PageError>;

/// A logged-in user (both factors, session within its limits) on this request.
pub struct Authed {
    pub user: User,
    pub session: Session,
    pub lang: Lang,
}

impl Authed {
    pub fn require(&self, can: Can) -> Result<(), PageError> {
        if may(self.user.role, can) {
            Ok(())
        } else {
            Err(PageError::forbidden(self.lang))
        }
    }
}

/// Where a request without a good session goes.
pub struct ToLogin(Response);
impl IntoResponse for ToLogin {
    fn into_response(self) -> Response {
        self.0
    }
}

fn to_login(expired: bool) -> ToLogin {
    let to = if expired {
        "/console/login?expired=1"
    } else {
        "/console/login"
    };
    ToLogin(([clear_cookie(SESSION_COOKIE)], Redirect::to(to)).into_response())
}

/// The session of a request, ended (and audited) if it has run out.
pub async fn session_of(
    c: &Console,
    headers: &HeaderMap,
) -> Result<Option<(Session, User)>, PageError> {
    let lang = lang_of(headers);
    let Some(sid) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    if sid.len() != 64 || !sid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let Some(s) = store::load_session(&c.center, &sid)
        .await
        .map_err(|e| PageError::from((lang, e)))?
    else {
        return Ok(None);
    };
    let user = store::user_by_id(&c.center, &s.user_id)
        .await
        .map_err(|e| PageError::from((lang, e)))?;
    let Some(user) = user.filter(|u| u.disabled_ms.is_none()) else {
        store::end_session(&c.center, &s, None, "", "")
            .await
            .map_err(|e| PageError::from((lang, e)))?;
        return Ok(None);
    };
    if let Some(why) = store::expired(&s, dodvpn_center::db::now_ms()) {
        store::end_session(&c.center, &s, Some(&user), "console.session.expired", why)
            .await
            .map_err(|e| PageError::from((lang, e)))?;
        return Err(PageError::new(
            StatusCode::UNAUTHORIZED,
            lang,
            "err.expired",
        ));
    }
    Ok(Some((s, user)))
}

impl FromRequestParts<Arc<Console>> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, c: &Arc<Console>) -> Result<Self, Response> {
        let lang = lang_of(&parts.headers);
        match session_of(c, &parts.headers).await {
            Ok(Some((s, user))) if s.full => {
                store::touch(&c.center, &s)
                    .await
                    .map_err(|e| PageError::from((lang, e)).into_response())?;
                Ok(Authed {
                    user,
                    session: s,
                    lang,
                })
            }
            Ok(_) => Err(to_login(false).into_response()),
            Err(e) if e.key == "err.expired" => Err(to_login(true).into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// A form body, its refusals shown as a page in the user's language.
pub struct Form<T>(pub T);

impl<T, S> FromRequest<S> for Form<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, PageError> {
        let lang = lang_of(req.headers());
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(Form(v)),
            Err(e) => {
                let status = e.status();
                let key = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => "err.too_large",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "err.not_a_form",
                    _ => "err.bad_form",
                };
                // A form that does not parse is a client error, never a server one.
                let status = if status.is_server_error() {
                    StatusCode::BAD_REQUEST
                } else {
                    status
                };
                Err(PageError::new(status, lang, key).with(e.body_text()))
            }
        }
    }
}

/// Every request that may change state (anything but GET/HEAD) must carry the CSRF
/// token of its session (form field `csrf` or header `X-CSRF-Token`), or before login
/// the value of the pre-login cookie. Checked before any handler runs; a refusal is
/// 403 and an aggregated audit record (refusals.rs).
pub async fn csrf_guard(State(c): State<Arc<Console>>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let lang = lang_of(req.headers());
    let (parts, body) = req.into_parts();
    // A whole check sheet (hundreds of answers with evidence notes) is the one big form.
    let limit = if parts.uri.path().contains("/sheets/")
        || parts.uri.path().starts_with("/console/policy/")
    {
        MAX_SHEET_FORM
    } else {
        MAX_FORM
    };
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return PageError::new(StatusCode::PAYLOAD_TOO_LARGE, lang, "err.too_large")
                .into_response()
        }
    };
    let presented = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
                .ok()
                .and_then(|v| v.into_iter().find(|(k, _)| k == "csrf").map(|(_, v)| v))
        })
        .unwrap_or_default();
    // The forms shown before login (login, setup) carry the pre-login value even when
    // the browser still holds a session; every other form carries its session's token.
    let pre_login = matches!(
        parts.uri.path(),
        "/console/login"
            | "/console/setup"
            | "/console/login/passkey/begin"
            | "/console/login/passkey/finish"
    );
    let expected = if pre_login {
        cookie(&parts.headers, PRE_COOKIE).filter(|v| v.len() == 64)
    } else {
        match session_of(&c, &parts.headers).await {
            Ok(Some((s, _))) => Some(s.csrf),
            Ok(None) => None,
            Err(e) => return e.into_response(),
        }
    };
    let ok = match &expected {
        Some(want) => {
            !presented.is_empty() && bool::from(want.as_bytes().ct_eq(presented.as_bytes()))
        }
        None => false,
    };
    if !ok {
        let remote_ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|ci| ci.0.ip());
        c.center
            .refusals
            .note(
                &c.center.db,
                dodvpn_center::refusals::Refusal {
                    code: "console_csrf",
                    source: remote_ip
                        .map(|ip| format!("ip:{ip}"))
                        .unwrap_or_else(|| "unknown".into()),
                    subject: format!("{} {}", parts.method, parts.uri.path()),
                    remote: remote_ip,
                    message: "a console form without its CSRF token".into(),
                    cert_serial: None,
                },
            )
            .await;
        return PageError::new(StatusCode::FORBIDDEN, lang, "err.csrf").into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Security headers on every console answer.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, "content-security-policy", CSP);
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    set(h, "x-frame-options", "DENY");
    set(h, "strict-transport-security", "max-age=31536000");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    resp
}

/// A time shown in the viewer's zone: UTC in the markup, local once console.js runs.
pub fn when(ms: i64) -> Markup {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let iso = t
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let fmt =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    html! { time datetime=(iso) { (t.format(&fmt).unwrap_or_default()) } }
}

pub struct Nav<'a> {
    pub user: &'a User,
    pub csrf: &'a str,
}

/// The page frame: skip link, navigation for what the role may see, language switch.
pub fn page(l: Lang, nav: Option<Nav<'_>>, title: &str, path: &str, body: Markup) -> Markup {
    let items: [(&str, &str, Can); 10] = [
        ("/console/", "nav.overview", Can::ViewOverview),
        ("/console/orgs", "nav.orgs", Can::ViewOrgs),
        ("/console/devices", "nav.devices", Can::ViewDevices),
        ("/console/sessions", "nav.sessions", Can::ViewSessions),
        ("/console/approvals", "nav.approvals", Can::ViewApprovals),
        ("/console/grants", "nav.grants", Can::ViewGrants),
        ("/console/policy", "nav.policy", Can::ViewPolicy),
        ("/console/gateway", "nav.gateway", Can::ViewGateway),
        ("/console/audit", "nav.audit", Can::ViewAudit),
        ("/console/ledger", "nav.ledger", Can::ViewLedger),
    ];
    let back = if path.is_empty() { "/console/" } else { path };
    html! {
        (DOCTYPE)
        html lang=(l.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — " (l.t("app.name")) }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a class="skip" href="#main" { (l.t("nav.skip")) }
                header {
                    span class="brand" { (l.t("app.name")) }
                    @if let Some(n) = &nav {
                        nav aria-label=(l.t("nav.label")) {
                            ul {
                                @for (href, key, can) in items {
                                    @if may(n.user.role, can) {
                                        li { a href=(href) aria-current=[(href == path).then_some("page")] { (l.t(key)) } }
                                    }
                                }
                            }
                        }
                        div class="who" {
                            a href="/console/account" aria-current=[("/console/account" == path).then_some("page")] { (n.user.username) } " (" (l.t(role_key(n.user.role))) @if let Some(o) = &n.user.org_id { ", " (o) } ")"
                            form method="post" action="/console/logout" {
                                input type="hidden" name="csrf" value=(n.csrf);
                                button type="submit" { (l.t("nav.logout")) }
                            }
                        }
                    }
                    div class="lang" {
                        a href={ "/console/lang?to=ja&back=" (back) } lang="ja" aria-current=[(l == Lang::Ja).then_some("true")] { "日本語" }
                        " | "
                        a href={ "/console/lang?to=en&back=" (back) } lang="en" aria-current=[(l == Lang::En).then_some("true")] { "English" }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

pub fn role_key(r: crate::roles::Role) -> &'static str {
    use crate::roles::Role::*;
    match r {
        ProviderAdmin => "role.provider_admin",
        ProviderOperator => "role.provider_operator",
        Auditor => "role.auditor",
        DeviceProvider => "role.device_provider",
        OrgAdmin => "role.org_admin",
        OrgApprover => "role.org_approver",
    }
}

pub fn html_response(m: Markup) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        m.into_string(),
    )
        .into_response()
}

/// The client's address, when the server loop recorded it (absent in-process).
pub struct Remote(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Remote {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Remote(remote(&parts.headers, &parts.extensions)))
    }
}
