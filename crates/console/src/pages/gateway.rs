//! The gateway centre for people (R-SVC-1, TR C 4-8-1): an organisation's users ask for
//! a site with a reason, its administrator (the security officer) or the provider
//! approves with an expiry or refuses, and everyone of the organisation sees what its
//! terminals asked the gateway and what it answered. The node learns each decision by
//! push; the console only calls the centre's API.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use maud::html;
use serde::Deserialize;
use serde_json::json;

use super::{nav, s, safe_id};
use crate::roles::{may, Can};
use crate::web::{html_response, page, when, Authed, Form, PageError, PageResult};
use crate::Console;

pub async fn index(State(c): State<Arc<Console>>, a: Authed) -> PageResult {
    a.require(Can::ViewGateway)?;
    if let Some(org) = &a.user.org_id {
        return Ok(Redirect::to(&format!("/console/gateway/{org}")).into_response());
    }
    let l = a.lang;
    let orgs = c.get_json(&a, "/api/v1/orgs").await?;
    let body = html! {
        ul { @for o in orgs.as_array().into_iter().flatten() {
            li { a href={"/console/gateway/" (s(&o["id"]))} { (s(&o["name"])) " (" (s(&o["id"])) ")" } }
        } }
    };
    Ok(html_response(page(
        l,
        nav(&a),
        l.t("nav.gateway"),
        "/console/gateway",
        body,
    )))
}

pub async fn org_page(
    State(c): State<Arc<Console>>,
    a: Authed,
    Path(org): Path<String>,
) -> PageResult {
    a.require(Can::ViewGateway)?;
    let l = a.lang;
    if !safe_id(&org) {
        return Err(PageError::not_found(l));
    }
    let apps = c
        .get_json(&a, &format!("/api/v1/orgs/{org}/gateway/applications"))
        .await?;
    let log = c
        .get_json(&a, &format!("/api/v1/orgs/{org}/gateway/log?limit=50"))
        .await?;
    let decide = may(a.user.role, Can::DecideGateway);
    let apply = may(a.user.role, Can::ApplyGateway);
    let body = html! {
        @if apply {
            h2 { (l.t("gw.apply")) }
            form method="post" action={"/console/gateway/" (org) "/applications"} {
                input type="hidden" name="csrf" value=(a.session.csrf);
                p { label for="entry" { (l.t("gw.entry")) }
                    input id="entry" name="entry" type="text" required maxlength="300" placeholder="updates.example.jp:443" aria-describedby="entry-hint"; }
                p id="entry-hint" class="hint" { (l.t("gw.entry_hint")) }
                p { label for="reason" { (l.t("gw.reason")) }
                    input id="reason" name="reason" type="text" required maxlength="1000"; }
                p { button type="submit" { (l.t("gw.apply_submit")) } }
            }
        }
        h2 { (l.t("gw.applications")) }
        table id="gateway-applications" {
            caption class="sr" { (l.t("gw.applications")) }
            thead { tr { th scope="col" { (l.t("gw.entry")) } th scope="col" { (l.t("gw.reason")) } th scope="col" { (l.t("gw.applicant")) }
                         th scope="col" { (l.t("col.state")) } th scope="col" { (l.t("gw.expires")) } @if decide { th scope="col" { (l.t("col.action")) } } } }
            tbody { @for x in apps.as_array().into_iter().flatten() {
                @let id = s(&x["id"]);
                @let status = s(&x["status"]);
                tr data-id=(id) { td { code { (s(&x["entry"])) } } td { (s(&x["reason"])) } td { (s(&x["applicant"])) }
                     td { (l.t(status_key(&status))) @if let Some(n) = x["decision_note"].as_str() { " — " (n) } }
                     td { @if let Some(t) = x["expires_ms"].as_i64() { (when(t)) } @else { "—" } }
                     @if decide { td {
                        @if status == "pending" {
                            form method="post" action={"/console/gateway/" (org) "/applications/" (id) "/decision"} {
                                input type="hidden" name="csrf" value=(a.session.csrf);
                                label for={"days-" (id)} { (l.t("gw.days")) }
                                input id={"days-" (id)} name="days" type="number" min="1" max="366" value="90";
                                button type="submit" name="approve" value="yes" { (l.t("gw.approve")) " " span class="sr" { (s(&x["entry"])) } }
                                " "
                                button type="submit" name="approve" value="no" { (l.t("gw.refuse")) " " span class="sr" { (s(&x["entry"])) } }
                            }
                        } @else if status == "approved" {
                            form method="post" action={"/console/gateway/" (org) "/applications/" (id) "/withdraw"} data-confirm=(l.t("gw.withdraw_confirm")) {
                                input type="hidden" name="csrf" value=(a.session.csrf);
                                button type="submit" { (l.t("gw.withdraw")) " " span class="sr" { (s(&x["entry"])) } }
                            }
                        }
                     } }
                }
            } }
        }
        h2 { (l.t("gw.log")) }
        @if log.as_array().is_none_or(Vec::is_empty) { p { (l.t("ov.none")) } } @else {
            table id="gateway-log" {
                caption class="sr" { (l.t("gw.log")) }
                thead { tr { th scope="col" { (l.t("gw.when")) } th scope="col" { (l.t("col.device")) } th scope="col" { (l.t("gw.user")) } th scope="col" { (l.t("gw.request")) }
                             th scope="col" { (l.t("gw.bytes")) } th scope="col" { (l.t("gw.verdict")) } } }
                tbody { @for e in log.as_array().into_iter().flatten().rev() {
                    tr { td { (when(e["at_ms"].as_i64().unwrap_or(0))) } td { (s(&e["device_id"])) } td { (e["user"].as_str().unwrap_or("—")) }
                         td { (s(&e["method"])) " " (s(&e["host"])) ":" (s(&e["port"])) }
                         td { (s(&e["bytes_up"])) " / " (s(&e["bytes_down"])) }
                         td { (s(&e["outcome"])) " — " (s(&e["reason"])) } }
                } }
            }
        }
    };
    Ok(html_response(page(
        l,
        nav(&a),
        &format!("{} — {org}", l.t("nav.gateway")),
        "/console/gateway",
        body,
    )))
}

fn status_key(status: &str) -> &'static str {
    match status {
        "pending" => "gw.pending",
        "approved" => "gw.approved",
        "refused" => "gw.refused",
        "withdrawn" => "gw.withdrawn",
        _ => "gw.expired",
    }
}

#[derive(Deserialize)]
pub struct ApplyForm {
    #[serde(default)]
    entry: String,
    #[serde(default)]
    reason: String,
}

pub async fn submit(
    State(c): State<Arc<Console>>,
    a: Authed,
    Path(org): Path<String>,
    Form(f): Form<ApplyForm>,
) -> PageResult {
    a.require(Can::ApplyGateway)?;
    if !safe_id(&org) {
        return Err(PageError::not_found(a.lang));
    }
    // The API checks the entry's syntax and the organisation; its refusal is the page.
    c.post_json(
        &a,
        &format!("/api/v1/orgs/{org}/gateway/applications"),
        json!({"entry": f.entry.trim(), "reason": f.reason.trim()}),
    )
    .await?;
    Ok(Redirect::to(&format!("/console/gateway/{org}")).into_response())
}

#[derive(Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    approve: String,
    #[serde(default)]
    days: String,
}

pub async fn decide(
    State(c): State<Arc<Console>>,
    a: Authed,
    Path((org, app)): Path<(String, String)>,
    Form(f): Form<DecisionForm>,
) -> PageResult {
    a.require(Can::DecideGateway)?;
    let l = a.lang;
    if !safe_id(&org) || !safe_id(&app) {
        return Err(PageError::not_found(l));
    }
    let body = match f.approve.as_str() {
        "yes" => {
            let days: u32 = f
                .days
                .trim()
                .parse()
                .map_err(|_| PageError::new(StatusCode::BAD_REQUEST, l, "gw.bad_days"))?;
            json!({"approve": true, "expires_in_days": days})
        }
        "no" => json!({"approve": false}),
        _ => return Err(PageError::new(StatusCode::BAD_REQUEST, l, "err.bad_form").with("approve")),
    };
    c.post_json(
        &a,
        &format!("/api/v1/orgs/{org}/gateway/applications/{app}/decision"),
        body,
    )
    .await?;
    Ok(Redirect::to(&format!("/console/gateway/{org}")).into_response())
}

pub async fn withdraw(
    State(c): State<Arc<Console>>,
    a: Authed,
    Path((org, app)): Path<(String, String)>,
) -> PageResult {
    a.require(Can::DecideGateway)?;
    if !safe_id(&org) || !safe_id(&app) {
        return Err(PageError::not_found(a.lang));
    }
    c.post_json(
        &a,
        &format!("/api/v1/orgs/{org}/gateway/applications/{app}/withdraw"),
        json!({}),
    )
    .await?;
    Ok(Redirect::to(&format!("/console/gateway/{org}")).into_response())
}
