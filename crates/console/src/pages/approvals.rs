//! The approvals inbox (TR 9.2, R-POL-3): the vendors waiting for a window of the
//! user's organisation, opening a window (start, end, contracted host and port) and
//! closing one early, which withdraws its grants at once.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use maud::html;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{nav, s, safe_id};
use crate::roles::{may, Can};
use crate::web::{html_response, page, when, Authed, Form, PageError, PageResult};
use crate::Console;

/// The "Open a window" link of a waiting application fills in who asked.
#[derive(Deserialize, Default)]
pub struct Prefill {
    #[serde(default)]
    applicant: String,
    #[serde(default)]
    device: String,
}

pub async fn inbox(
    State(c): State<Arc<Console>>,
    a: Authed,
    Query(pre): Query<Prefill>,
) -> PageResult {
    a.require(Can::ViewApprovals)?;
    let l = a.lang;
    let aps = c.get_json(&a, "/api/v1/approvals").await?;
    let waiting = c.get_json(&a, "/api/v1/approvals/requests").await?;
    let manage = may(a.user.role, Can::ManageApprovals);
    let now = dodvpn_center::db::now_ms();
    let orgs = if manage && a.user.org_id.is_none() {
        c.get_json(&a, "/api/v1/orgs").await?
    } else {
        Value::Null
    };
    let body = html! {
        h2 { (l.t("ap.waiting")) " (" (waiting.as_array().map_or(0, Vec::len)) ")" }
        @if waiting.as_array().is_none_or(Vec::is_empty) { p { (l.t("ov.none")) } } @else {
            table id="waiting" {
                caption class="sr" { (l.t("ap.waiting")) }
                thead { tr { th scope="col" { (l.t("ap.applicant")) } th scope="col" { (l.t("ap.applicant_device")) } th scope="col" { (l.t("ap.target")) } th scope="col" { (l.t("ap.asked")) } @if manage { th scope="col" { (l.t("col.action")) } } } }
                tbody { @for w in waiting.as_array().into_iter().flatten() {
                    tr { td { (s(&w["applicant_org"])) } td { (s(&w["applicant_device"])) } td { (s(&w["target_device"])) } td { (when(w["last_ms"].as_i64().unwrap_or(0))) }
                         @if manage { td { a href={"/console/approvals?applicant=" (s(&w["applicant_org"])) "&device=" (s(&w["applicant_device"])) "#open"} { (l.t("ap.open_for")) " " span class="sr" { (s(&w["applicant_device"])) } } } } }
                } }
            }
        }
        @if manage {
            h2 id="open" { (l.t("ap.open_title")) }
            form method="post" action="/console/approvals" id="open-window" {
                input type="hidden" name="csrf" value=(a.session.csrf);
                // Filled by console.js with the browser's offset, so the times typed are local.
                input type="hidden" name="tz_offset" value="0";
                @if a.user.org_id.is_none() {
                    p { label for="approver" { (l.t("ap.approver")) }
                        select id="approver" name="approver_org" { @for o in orgs.as_array().into_iter().flatten() { option value=(s(&o["id"])) { (s(&o["name"])) " (" (s(&o["id"])) ")" } } } }
                }
                p { label for="applicant" { (l.t("ap.applicant")) }
                    input id="applicant" name="applicant_org" type="text" required maxlength="64" value=(pre.applicant); }
                p { label for="device" { (l.t("ap.device")) }
                    input id="device" name="applicant_device" type="text" maxlength="64" value=(pre.device); }
                p { label for="start" { (l.t("ap.start")) }
                    input id="start" name="start" type="datetime-local" aria-describedby="times-hint"; }
                p { label for="end" { (l.t("ap.end")) }
                    input id="end" name="end" type="datetime-local" aria-describedby="times-hint"; }
                p { label for="minutes" { (l.t("ap.minutes")) }
                    input id="minutes" name="minutes" type="number" min="1" max="1440" value="60" aria-describedby="times-hint"; }
                p id="times-hint" class="hint" { (l.t("ap.times_hint")) }
                p { label for="host" { (l.t("ap.host")) }
                    input id="host" name="host" type="text" maxlength="64" placeholder="10.1.5.20"; }
                p { label for="service" { (l.t("ap.service")) }
                    input id="service" name="service" type="text" maxlength="64" placeholder="tcp/22"; }
                p { button type="submit" { (l.t("ap.open_submit")) } }
            }
        }
        h2 { (l.t("ap.windows")) }
        table id="windows" {
            caption class="sr" { (l.t("ap.windows")) }
            thead { tr { th scope="col" { (l.t("col.id")) } th scope="col" { (l.t("ap.approver")) } th scope="col" { (l.t("ap.applicant")) }
                         th scope="col" { (l.t("ap.from")) } th scope="col" { (l.t("ap.until")) } th scope="col" { (l.t("ap.contract")) } th scope="col" { (l.t("col.state")) } @if manage { th scope="col" { (l.t("col.action")) } } } }
            tbody { @for x in aps.as_array().into_iter().flatten() {
                @let nb = x["not_before"].as_i64().unwrap_or(0) * 1000;
                @let na = x["not_after"].as_i64().unwrap_or(0) * 1000;
                @let live = x["closed_ms"].is_null() && na > now;
                tr data-id=(s(&x["id"])) { td { (s(&x["id"])) } td { (s(&x["approver_org"])) } td { (s(&x["applicant_org"])) @if let Some(d) = x["applicant_device"].as_str() { " / " (d) } }
                     td { (when(nb)) } td { (when(na)) }
                     td { (contract(&x["hosts"], &x["services"], l.t("ap.contract_any"))) }
                     td { @if !live { (l.t("ap.closed")) } @else if nb > now { (l.t("ap.scheduled")) } @else { (l.t("ap.open")) @if !x["warned_ms"].is_null() { " — " (l.t("ap.warned")) } } }
                     @if manage { td { @if live {
                        form method="post" action={"/console/approvals/" (s(&x["id"])) "/close"} data-confirm=(l.t("ap.close_confirm")) {
                            input type="hidden" name="csrf" value=(a.session.csrf);
                            button type="submit" { (l.t("ap.close")) " " span class="sr" { (s(&x["id"])) } }
                        } } } }
                }
            } }
        }
    };
    Ok(html_response(page(
        l,
        nav(&a),
        l.t("nav.approvals"),
        "/console/approvals",
        body,
    )))
}

/// `10.1.5.20/32 tcp/22`, or the catalogue's "as the policy allows".
fn contract(hosts: &Value, services: &Value, any: &str) -> String {
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    };
    let (h, sv) = (list(hosts), list(services));
    if h.is_empty() && sv.is_empty() {
        return any.to_string();
    }
    let mut parts = h;
    parts.extend(sv);
    parts.join(" ")
}

#[derive(Deserialize)]
pub struct OpenForm {
    #[serde(default)]
    approver_org: String,
    #[serde(default)]
    applicant_org: String,
    #[serde(default)]
    applicant_device: String,
    #[serde(default)]
    minutes: String,
    /// `yyyy-mm-ddThh:mm` in the browser's time zone.
    #[serde(default)]
    start: String,
    #[serde(default)]
    end: String,
    /// Minutes to add to local time for UTC (JavaScript's getTimezoneOffset()).
    #[serde(default)]
    tz_offset: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    service: String,
}

/// A `datetime-local` value read in the browser's zone, as Unix seconds.
fn local_time(v: &str, offset_min: i64) -> Option<i64> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let t = time::PrimitiveDateTime::parse(v.trim(), &fmt).ok()?;
    Some(t.assume_utc().unix_timestamp() + offset_min * 60)
}

/// Open a window: the approver is the user's own organisation (the provider picks
/// one); the API checks the rest (organisations exist, scope, times, contract).
pub async fn open(State(c): State<Arc<Console>>, a: Authed, Form(f): Form<OpenForm>) -> PageResult {
    a.require(Can::ManageApprovals)?;
    let l = a.lang;
    let bad = || PageError::new(StatusCode::BAD_REQUEST, l, "ap.bad_window");
    let approver = a.user.org_id.clone().unwrap_or(f.approver_org);
    if !safe_id(&approver) || !safe_id(f.applicant_org.trim()) {
        return Err(bad());
    }
    let device = f.applicant_device.trim();
    if !device.is_empty() && !safe_id(device) {
        return Err(bad());
    }
    let offset: i64 = f.tz_offset.trim().parse().unwrap_or(0);
    if !(-16 * 60..=16 * 60).contains(&offset) {
        return Err(bad());
    }
    let mut body = json!({"approver_org": approver, "applicant_org": f.applicant_org.trim()});
    let start = match f.start.trim() {
        "" => None,
        v => Some(local_time(v, offset).ok_or_else(bad)?),
    };
    match (f.end.trim(), start) {
        ("", None) => body["minutes"] = json!(f.minutes.trim().parse::<u32>().map_err(|_| bad())?),
        ("", Some(start)) => {
            let minutes: i64 = f.minutes.trim().parse().map_err(|_| bad())?;
            body["not_before"] = json!(start);
            body["not_after"] = json!(start + minutes * 60);
        }
        (end, start) => {
            body["not_after"] = json!(local_time(end, offset).ok_or_else(bad)?);
            if let Some(start) = start {
                body["not_before"] = json!(start);
            }
        }
    }
    if !device.is_empty() {
        body["applicant_device"] = json!(device);
    }
    // The API parses and checks the contract; a bad one is its 400 with the reason.
    let host = f.host.trim();
    if !host.is_empty() {
        body["hosts"] = json!([if host.contains('/') {
            host.to_string()
        } else if host.contains(':') {
            format!("{host}/128")
        } else {
            format!("{host}/32")
        }]);
    }
    if !f.service.trim().is_empty() {
        body["services"] = json!([f.service.trim()]);
    }
    c.post_json(&a, "/api/v1/approvals", body).await?;
    Ok(Redirect::to("/console/approvals").into_response())
}

pub async fn close(State(c): State<Arc<Console>>, a: Authed, Path(id): Path<String>) -> PageResult {
    a.require(Can::ManageApprovals)?;
    if !safe_id(&id) {
        return Err(PageError::not_found(a.lang));
    }
    c.post_json(&a, &format!("/api/v1/approvals/{id}/close"), json!({}))
        .await?;
    Ok(Redirect::to("/console/approvals").into_response())
}
