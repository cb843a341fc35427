//! The user's own account (recovery codes, passkeys) and the passkey login. Every
//! logged-in role has it. The WebAuthn calls are JSON, made by console.js; their
//! CSRF token travels in `X-CSRF-Token` (the session's, or before login the
//! pre-login cookie's), checked by `web::csrf_guard` like every other POST.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use maud::html;
use serde::Deserialize;
use serde_json::{json, Value};
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::{nav, refused, safe_id};
use crate::i18n::Lang;
use crate::passkey::{self, Refusal};
use crate::store::{self, Attempt, SecondFactor};
use crate::web::{
    self, html_response, lang_of, page, set_cookie, when, Authed, PageError, PageResult,
    SESSION_COOKIE,
};
use crate::Console;

pub async fn account_page(State(c): State<Arc<Console>>, a: Authed) -> PageResult {
    let l = a.lang;
    let keys = passkey::list(&c.center, &a.user.id)
        .await
        .map_err(|e| PageError::from((l, e)))?;
    let body = html! {
        h2 { (l.t("passkey.title")) }
        p { (l.t("passkey.intro")) }
        table {
            caption class="sr" { (l.t("passkey.title")) }
            thead { tr { th scope="col" { (l.t("col.name")) } th scope="col" { (l.t("col.created")) } th scope="col" { (l.t("passkey.last_used")) } th scope="col" { (l.t("col.action")) } } }
            tbody id="passkeys" { @for k in &keys {
                tr { td { (k.name) } td { (when(k.created_ms)) } td { @if let Some(t) = k.last_used_ms { (when(t)) } @else { "—" } }
                     td { form method="post" action={"/console/account/passkeys/" (k.id) "/remove"} data-confirm=(l.t("passkey.remove_confirm")) {
                        input type="hidden" name="csrf" value=(a.session.csrf);
                        button type="submit" { (l.t("passkey.remove")) " " span class="sr" { (k.name) } }
                     } } }
            } }
        }
        form id="passkey-register" data-csrf=(a.session.csrf) data-failed=(l.t("passkey.failed")) {
            p { label for="passkey-name" { (l.t("passkey.name")) }
                input id="passkey-name" name="name" type="text" required maxlength=(passkey::MAX_NAME) value=(l.t("passkey.default_name")); }
            p { button type="submit" { (l.t("passkey.add")) } }
            p id="passkey-status" role="status" {}
        }
        h2 { (l.t("factors.recovery")) }
        form method="post" action="/console/account/recovery" data-confirm=(l.t("account.recovery_confirm")) {
            input type="hidden" name="csrf" value=(a.session.csrf);
            button type="submit" { (l.t("account.recovery")) }
        }
    };
    Ok(html_response(page(
        l,
        nav(&a),
        l.t("account.title"),
        "/console/account",
        body,
    )))
}

/// A JSON refusal the script shows in the person's language.
fn refusal(l: Lang, status: StatusCode, key: &'static str) -> Response {
    (status, Json(json!({"error": key, "message": l.t(key)}))).into_response()
}

fn passkey_error(l: Lang, e: passkey::Error) -> Response {
    match e {
        passkey::Error::Refused(r) => refusal(l, StatusCode::BAD_REQUEST, r.key()),
        passkey::Error::Api(e) => PageError::from((l, e)).into_response(),
    }
}

/// A ceremony begun: its id and the options the browser's WebAuthn call takes.
fn started<T: serde::Serialize>(l: Lang, out: Result<(String, T), passkey::Error>) -> Response {
    match out {
        Ok((ceremony, options)) => {
            Json(json!({"ceremony": ceremony, "options": options})).into_response()
        }
        Err(e) => passkey_error(l, e),
    }
}

fn locked(l: Lang, until_ms: i64) -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(json!({"error": "login.locked", "message": super::locked_message(l, until_ms)})),
    )
        .into_response()
}

/// The host[:port] the browser asked for: the relying party and origin of a ceremony.
fn authority(headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    uri.authority()
        .map(|a| a.to_string())
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default()
}

pub async fn register_begin(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    a: Authed,
) -> Response {
    let l = a.lang;
    let out = async {
        let rp = passkey::relying_party(&c.center, &authority(&headers, &uri))?;
        passkey::begin_register(&c.center, &rp, &a.user).await
    }
    .await;
    started(l, out)
}

#[derive(Deserialize)]
pub struct RegisterFinish {
    ceremony: String,
    name: String,
    credential: Value,
}

pub async fn register_finish(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    a: Authed,
    body: Result<Json<RegisterFinish>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let l = a.lang;
    let Ok(Json(f)) = body else {
        return refusal(l, StatusCode::BAD_REQUEST, "err.bad_form");
    };
    let name = f.name.trim();
    if name.is_empty()
        || name.chars().count() > passkey::MAX_NAME
        || name.chars().any(char::is_control)
    {
        return refusal(l, StatusCode::BAD_REQUEST, "passkey.bad_name");
    }
    let Ok(credential) = serde_json::from_value::<RegisterPublicKeyCredential>(f.credential) else {
        return refusal(l, StatusCode::BAD_REQUEST, Refusal::NotVerified.key());
    };
    let out = async {
        let rp = passkey::relying_party(&c.center, &authority(&headers, &uri))?;
        passkey::finish_register(&c.center, &rp, &a.user, &f.ceremony, name, &credential).await
    }
    .await;
    match out {
        Ok(id) => Json(json!({"id": id})).into_response(),
        Err(e) => passkey_error(l, e),
    }
}

pub async fn remove(
    State(c): State<Arc<Console>>,
    a: Authed,
    Path(id): Path<String>,
) -> PageResult {
    if !safe_id(&id)
        || !passkey::remove(&c.center, &a.user, &id)
            .await
            .map_err(|e| PageError::from((a.lang, e)))?
    {
        return Err(PageError::not_found(a.lang));
    }
    Ok(Redirect::to("/console/account").into_response())
}

#[derive(Deserialize)]
pub struct LoginBegin {
    username: String,
}

pub async fn login_begin(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    web::Remote(remote): web::Remote,
    body: Result<Json<LoginBegin>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let l = lang_of(&headers);
    let Ok(Json(f)) = body else {
        return refusal(l, StatusCode::BAD_REQUEST, "err.bad_form");
    };
    if f.username.is_empty() || f.username.len() > 64 {
        return refusal(l, StatusCode::BAD_REQUEST, "login.wrong");
    }
    let user = match store::user_by_name(&c.center, &f.username).await {
        Ok(u) => u.filter(|u| u.disabled_ms.is_none()),
        Err(e) => return PageError::from((l, e)).into_response(),
    };
    let Some(user) = user else {
        refused(
            &c,
            "console_login_unknown_user",
            format!("ip:{}", remote.as_deref().unwrap_or("?")),
            remote.as_deref(),
            "passkey login with an unknown user name",
        )
        .await;
        return refusal(l, StatusCode::BAD_REQUEST, Refusal::NoPasskeys.key());
    };
    if user.locked_until_ms > dodvpn_center::db::now_ms() {
        refused(
            &c,
            "console_login_locked",
            user.actor(),
            remote.as_deref(),
            "passkey login while locked",
        )
        .await;
        return locked(l, user.locked_until_ms);
    }
    let out = async {
        let rp = passkey::relying_party(&c.center, &authority(&headers, &uri))?;
        passkey::begin_login(&c.center, &rp, &user).await
    }
    .await;
    started(l, out)
}

#[derive(Deserialize)]
pub struct LoginFinish {
    ceremony: String,
    credential: Value,
}

pub async fn login_finish(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    web::Remote(remote): web::Remote,
    body: Result<Json<LoginFinish>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let l = lang_of(&headers);
    let Ok(Json(f)) = body else {
        return refusal(l, StatusCode::BAD_REQUEST, "err.bad_form");
    };
    let Ok(credential) = serde_json::from_value::<PublicKeyCredential>(f.credential) else {
        return refusal(l, StatusCode::BAD_REQUEST, Refusal::NotVerified.key());
    };
    let out = async {
        let rp = passkey::relying_party(&c.center, &authority(&headers, &uri))?;
        passkey::finish_login(&c.center, &rp, &f.ceremony, &credential).await
    }
    .await;
    let (user_id, verdict) = match out {
        Ok(v) => v,
        Err(e) => return passkey_error(l, e),
    };
    let user = match store::user_by_id(&c.center, &user_id).await {
        Ok(Some(u)) if u.disabled_ms.is_none() => u,
        Ok(_) => return refusal(l, StatusCode::BAD_REQUEST, Refusal::NoCeremony.key()),
        Err(e) => return PageError::from((l, e)).into_response(),
    };
    if user.locked_until_ms > dodvpn_center::db::now_ms() {
        return locked(l, user.locked_until_ms);
    }
    match verdict {
        Ok(()) => match store::complete_login(
            &c.center,
            None,
            &user,
            SecondFactor::Passkey,
            remote.as_deref(),
        )
        .await
        {
            Ok((sid, _)) => (
                [set_cookie(SESSION_COOKIE, &sid)],
                Json(json!({"redirect": "/console/"})),
            )
                .into_response(),
            Err(e) => PageError::from((l, e)).into_response(),
        },
        Err(r) => match store::record_failure(
            &c.center,
            &user,
            "passkey",
            "not_verified",
            remote.as_deref(),
        )
        .await
        {
            Ok(Attempt::Locked(until)) => locked(l, until),
            Ok(_) => refusal(l, StatusCode::UNAUTHORIZED, r.key()),
            Err(e) => PageError::from((l, e)).into_response(),
        },
    }
}
