//! The subscriber-policy editor (R-POL-3): the organisation's policy as JSON, checked
//! by the centre with its errors shown beside the text, and a dry run before saving
//! that lists which grants would be added, narrowed, widened, changed or withdrawn.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use super::{nav, s, safe_id};
use crate::i18n::Lang;
use crate::roles::{may, Can};
use crate::web::{html_response, page, Authed, Form, PageError, PageResult};
use crate::Console;

pub async fn index(State(c): State<Arc<Console>>, a: Authed) -> PageResult {
    a.require(Can::ViewPolicy)?;
    if let Some(org) = &a.user.org_id {
        return Ok(Redirect::to(&format!("/console/policy/{org}")).into_response());
    }
    let l = a.lang;
    let orgs = c.get_json(&a, "/api/v1/orgs").await?;
    let body = html! {
        ul { @for o in orgs.as_array().into_iter().flatten() {
            li { a href={"/console/policy/" (s(&o["id"]))} { (s(&o["name"])) " (" (s(&o["id"])) ")" } }
        } }
    };
    Ok(html_response(page(
        l,
        nav(&a),
        l.t("nav.policy"),
        "/console/policy",
        body,
    )))
}

#[derive(Deserialize, Default)]
pub struct EditorQ {
    #[serde(default)]
    saved: Option<String>,
}

/// What the editor shows besides the text: nothing, an error, or a dry run's result.
enum Outcome {
    None,
    Saved,
    Invalid(String),
    DryRun(Value),
}

fn editor_page(l: Lang, a: &Authed, org: &str, text: &str, outcome: Outcome) -> Markup {
    let edit = may(a.user.role, Can::EditPolicy);
    let invalid = matches!(outcome, Outcome::Invalid(_));
    let body = html! {
        @match &outcome {
            Outcome::Saved => { p role="status" class="notice" { (l.t("pol.saved")) } }
            Outcome::DryRun(d) => { (dry_run(l, d)) }
            _ => {}
        }
        form method="post" action={"/console/policy/" (org)} {
            input type="hidden" name="csrf" value=(a.session.csrf);
            p { label for="policy" { (l.t("pol.document")) } }
            @if let Outcome::Invalid(msg) = &outcome {
                p id="policy-error" role="alert" class="error" { (l.t("pol.invalid")) " " (msg) }
            }
            p { textarea id="policy" name="policy" rows="24" cols="100" spellcheck="false" readonly[!edit]
                    aria-invalid=[invalid.then_some("true")] aria-describedby={ "policy-help" @if invalid { " policy-error" } } { (text) } }
            p id="policy-help" class="hint" { (l.t("pol.help")) }
            @if edit {
                p { button type="submit" name="action" value="dry_run" { (l.t("pol.dry_run")) } " "
                    button type="submit" name="action" value="save" data-confirm=(l.t("pol.save_confirm")) { (l.t("pol.save")) } }
            }
        }
    };
    page(
        l,
        nav(a),
        &format!("{} — {org}", l.t("nav.policy")),
        "/console/policy",
        body,
    )
}

fn changes(l: Lang, id: &str, title: &str, list: &Value) -> Markup {
    let join = |x: &Value| -> String {
        let parts: Vec<&str> = x
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str())
            .collect();
        if parts.is_empty() {
            "—".into()
        } else {
            parts.join(", ")
        }
    };
    let rows = list.as_array().map_or(&[][..], Vec::as_slice);
    html! {
        h3 { (title) " (" (rows.len()) ")" }
        @if !rows.is_empty() {
            table id=(id) {
                caption class="sr" { (title) }
                thead { tr { th scope="col" { (l.t("gr.title")) } th scope="col" { (l.t("gr.applicant")) } th scope="col" { (l.t("gr.target")) }
                             th scope="col" { (l.t("gr.services")) } th scope="col" { (l.t("gr.hosts")) } th scope="col" { (l.t("col.reason")) } } }
                tbody { @for r in rows {
                    tr { td { @if let Some(g) = r["grant_id"].as_str() { a href={"/console/grants/" (g)} { (g) } } @else { "—" } }
                         td { (s(&r["applicant_device"])) } td { (s(&r["target_device"])) }
                         td { (join(&r["services_before"])) " → " (join(&r["services_after"])) }
                         td { (join(&r["hosts_before"])) " → " (join(&r["hosts_after"])) }
                         td { (r["reason"].as_str().unwrap_or("")) } }
                } }
            }
        }
    }
}

fn dry_run(l: Lang, d: &Value) -> Markup {
    html! {
        section id="dry-run" aria-labelledby="dry-run-title" {
            h2 id="dry-run-title" { (l.t("pol.dry_run_title")) }
            p role="status" { (l.t("pol.dry_run_note")) " " (l.t("pol.unchanged")) ": " (d["unchanged"].as_u64().unwrap_or(0)) }
            (changes(l, "dry-added", l.t("pol.added"), &d["added"]))
            (changes(l, "dry-narrowed", l.t("pol.narrowed"), &d["narrowed"]))
            (changes(l, "dry-widened", l.t("pol.widened"), &d["widened"]))
            (changes(l, "dry-changed", l.t("pol.changed"), &d["changed"]))
            (changes(l, "dry-withdrawn", l.t("pol.withdrawn"), &d["withdrawn"]))
        }
    }
}

pub async fn editor(
    State(c): State<Arc<Console>>,
    a: Authed,
    Path(org): Path<String>,
    Query(q): Query<EditorQ>,
) -> PageResult {
    a.require(Can::ViewPolicy)?;
    if !safe_id(&org) {
        return Err(PageError::not_found(a.lang));
    }
    let doc = c
        .get_json(&a, &format!("/api/v1/orgs/{org}/policy"))
        .await?;
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    let outcome = if q.saved.is_some() {
        Outcome::Saved
    } else {
        Outcome::None
    };
    Ok(html_response(editor_page(a.lang, &a, &org, &text, outcome)))
}

#[derive(Deserialize)]
pub struct PolicyForm {
    #[serde(default)]
    policy: String,
    #[serde(default)]
    action: String,
}

pub async fn submit(
    State(c): State<Arc<Console>>,
    a: Authed,
    Path(org): Path<String>,
    Form(f): Form<PolicyForm>,
) -> PageResult {
    a.require(Can::EditPolicy)?;
    let l = a.lang;
    if !safe_id(&org) {
        return Err(PageError::not_found(l));
    }
    // The organisation must be the user's (404 otherwise), before anything is parsed.
    c.get_json(&a, &format!("/api/v1/orgs/{org}/policy"))
        .await?;
    let invalid = |msg: String| {
        Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            html_response(editor_page(l, &a, &org, &f.policy, Outcome::Invalid(msg))),
        )
            .into_response())
    };
    let doc: Value = match serde_json::from_str(&f.policy) {
        Ok(v) => v,
        Err(e) => {
            return invalid(format!(
                "{} {}:{}",
                l.t("pol.json_at"),
                e.line(),
                e.column()
            ))
        }
    };
    let (method, uri) = match f.action.as_str() {
        "dry_run" => (Method::POST, format!("/api/v1/orgs/{org}/policy/dry-run")),
        "save" => (Method::PUT, format!("/api/v1/orgs/{org}/policy")),
        _ => return Err(PageError::new(StatusCode::BAD_REQUEST, l, "err.bad_form").with("action")),
    };
    let ans = c
        .call(&a.user, method, &uri, Some(doc))
        .await
        .map_err(|e| PageError::internal(l, e))?;
    let v: Value = serde_json::from_slice(&ans.body).unwrap_or(Value::Null);
    match ans.status {
        st if st.is_success() && f.action == "save" => {
            Ok(Redirect::to(&format!("/console/policy/{org}?saved=1")).into_response())
        }
        st if st.is_success() => Ok(html_response(editor_page(
            l,
            &a,
            &org,
            &f.policy,
            Outcome::DryRun(v),
        ))),
        StatusCode::NOT_FOUND | StatusCode::FORBIDDEN => Err(PageError::not_found(l)),
        st if st.is_client_error() => invalid(v["message"].as_str().unwrap_or("").to_string()),
        st => Err(PageError::new(st, l, "err.internal")),
    }
}
