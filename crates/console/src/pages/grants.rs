//! Grants and what they carry: the signed connection info of each end, decoded, and
//! withdrawal with a reason (both ends drop the tunnels at once).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use maud::{html, Markup};
use serde_json::{json, Value};

use super::{check_reason, nav, s, safe_id, ReasonForm};
use crate::roles::{may, Can};
use crate::web::{html_response, page, when, Authed, Form, PageError, PageResult};
use crate::Console;

pub async fn list(State(c): State<Arc<Console>>, a: Authed) -> PageResult {
    a.require(Can::ViewGrants)?;
    let l = a.lang;
    let grants = c.get_json(&a, "/api/v1/grants?status=active").await?;
    let refused = c.get_json(&a, "/api/v1/connections/refused").await?;
    let body = html! {
        h2 { (l.t("gr.active")) }
        table id="grants" {
            caption class="sr" { (l.t("nav.grants")) }
            thead { tr { th scope="col" { (l.t("col.id")) } th scope="col" { (l.t("gr.applicant")) } th scope="col" { (l.t("gr.target")) } th scope="col" { (l.t("gr.version")) } th scope="col" { (l.t("gr.until")) } } }
            tbody { @for g in grants.as_array().into_iter().flatten() {
                tr { td { a href={"/console/grants/" (s(&g["id"]))} { (s(&g["id"])) } } td { (s(&g["applicant_device"])) } td { (s(&g["target_device"])) }
                     td { (s(&g["version"])) } td { (when(g["not_after"].as_i64().unwrap_or(0) * 1000)) } }
            } }
        }
        h2 { (l.t("gr.refused")) }
        @if refused.as_array().is_none_or(Vec::is_empty) { p { (l.t("ov.none")) } } @else {
            table id="refused" {
                caption class="sr" { (l.t("gr.refused")) }
                thead { tr { th scope="col" { (l.t("gr.applicant")) } th scope="col" { (l.t("gr.target")) } th scope="col" { (l.t("col.reason")) } th scope="col" { (l.t("ap.asked")) } } }
                tbody { @for r in refused.as_array().into_iter().flatten() {
                    tr { td { (s(&r["applicant_device"])) " (" (s(&r["applicant_org"])) ")" } td { (s(&r["target_device"])) " (" (s(&r["target_org"])) ")" }
                         td { (s(&r["reason"])) } td { (when(r["last_ms"].as_i64().unwrap_or(0))) } }
                } }
            }
        }
    };
    Ok(html_response(page(
        l,
        nav(&a),
        l.t("nav.grants"),
        "/console/grants",
        body,
    )))
}

/// One end's connection info as a definition list (what the device was told).
fn info(l: crate::i18n::Lang, title: &str, v: &Value) -> Markup {
    let i = &v["info"];
    let join = |x: &Value| -> String {
        x.as_array()
            .into_iter()
            .flatten()
            .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(", ")
    };
    html! {
        section {
            h2 { (title) }
            dl {
                dt { (l.t("gr.role")) } dd { (s(&i["role"])) }
                dt { (l.t("gr.local")) } dd { (s(&i["local"]["device_id"])) }
                dt { (l.t("gr.peer")) } dd { (s(&i["peer"]["device_id"])) " " (s(&i["peer"]["identity"])) }
                dt { (l.t("gr.peer_endpoint")) } dd { (s(&i["peer"]["endpoint"])) }
                dt { (l.t("gr.selectors")) } dd { (join(&i["traffic_selectors"]["local"])) " ⇄ " (join(&i["traffic_selectors"]["remote"])) }
                dt { (l.t("gr.services")) } dd { (join(&i["services"])) }
                dt { (l.t("gr.proposals")) } dd { "IKE " (join(&i["ike_proposals"])) "; ESP " (join(&i["esp_proposals"])) }
                dt { (l.t("gr.issued")) } dd { (when(i["issued_at"].as_i64().unwrap_or(0) * 1000)) }
                dt { (l.t("gr.until")) } dd { (when(i["not_after"].as_i64().unwrap_or(0) * 1000)) }
            }
            details {
                summary { (l.t("gr.signed")) }
                pre { (serde_json::to_string_pretty(v).unwrap_or_default()) }
            }
        }
    }
}

pub async fn detail(
    State(c): State<Arc<Console>>,
    a: Authed,
    Path(id): Path<String>,
) -> PageResult {
    a.require(Can::ViewGrants)?;
    let l = a.lang;
    if !safe_id(&id) {
        return Err(PageError::not_found(l));
    }
    let d = c.get_json(&a, &format!("/api/v1/grants/{id}")).await?;
    let g = &d["grant"];
    let live = s(&g["status"]) == "active";
    let body = html! {
        p { (l.t("col.state")) ": " (s(&g["status"])) @if let Some(r) = g["end_reason"].as_str() { " — " (r) } }
        @if !d["applicant_connection_info"].is_null() { (info(l, l.t("gr.applicant_info"), &d["applicant_connection_info"])) }
        @if !d["target_connection_info"].is_null() { (info(l, l.t("gr.target_info"), &d["target_connection_info"])) }
        @if live && may(a.user.role, Can::WithdrawGrant) {
            h2 { (l.t("gr.withdraw")) }
            form method="post" action={"/console/grants/" (id) "/withdraw"} data-confirm=(l.t("gr.withdraw_confirm")) {
                input type="hidden" name="csrf" value=(a.session.csrf);
                p { label for="reason" { (l.t("col.reason")) }
                    input id="reason" name="reason" type="text" required maxlength="256"; }
                p { button type="submit" { (l.t("gr.withdraw")) } }
            }
        }
    };
    Ok(html_response(page(
        l,
        nav(&a),
        &format!("{} {id}", l.t("gr.title")),
        "/console/grants",
        body,
    )))
}

pub async fn withdraw(
    State(c): State<Arc<Console>>,
    a: Authed,
    Path(id): Path<String>,
    Form(f): Form<ReasonForm>,
) -> PageResult {
    a.require(Can::WithdrawGrant)?;
    if !safe_id(&id) {
        return Err(PageError::not_found(a.lang));
    }
    let reason = check_reason(a.lang, &f.reason)?;
    c.post_json(
        &a,
        &format!("/api/v1/grants/{id}/withdraw"),
        json!({"reason": reason}),
    )
    .await?;
    Ok(Redirect::to(&format!("/console/grants/{id}")).into_response())
}
