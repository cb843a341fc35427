//! The organisation's ledger (R-SVC-2, issue 11): every connection, both those the
//! centre knows because they run through dodvpn (derived from the grants, never typed
//! in) and those outside it that the organisation records by hand; its equipment; and
//! the network diagram drawn from both.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dodvpn_ledger::{
    review_overdue, CsvTable, Date, Diagram, Edge, EdgeState, Equipment, External, Node, NodeKind,
};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::diagnose::{Finding, RunComparison};
use super::orgs::org_exists;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::Center;

/// Most hand-kept rows of one kind per organisation.
pub const MAX_ROWS: usize = 2000;

async fn org_name(c: &Center, id: &str) -> Result<String, ApiError> {
    sqlx::query_scalar("SELECT name FROM orgs WHERE id = $1")
        .bind(id)
        .fetch_optional(&c.db.pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no organisation {id}")))
}

/// A connection through dodvpn, as the ledger shows it.
#[derive(Serialize, ToSchema)]
pub struct DodvpnConnection {
    pub grant_id: String,
    /// This organisation's device on the connection.
    pub device_id: String,
    pub peer_org_id: String,
    pub peer_org_name: String,
    pub peer_device_id: String,
    /// Whether this organisation's device applied (initiator) or was applied to.
    pub direction: String,
    pub services: Vec<String>,
    /// `live` (a session is up), `idle`, or `window-bound` (only inside approval windows).
    pub state: String,
    /// Who applied for it (the audit actor of the grant).
    pub created_by: String,
    /// What it is for, as the application said.
    pub purpose: Option<String>,
    /// Who opened its approval windows (the approver organisation's people); empty when
    /// both organisations' standing policies admit it without a window.
    pub approved_by: Vec<String>,
    /// Its approval windows, newest first (at most 20).
    pub windows: Vec<Window>,
    pub since_ms: i64,
    pub last_used_ms: Option<i64>,
    pub bytes_in: i64,
    pub bytes_out: i64,
    /// The peer device's model and the software its agent reported.
    pub peer_model: String,
    pub peer_software: Option<String>,
}

/// A finding of the organisation's newest exposure diagnosis, filed under a ledger row.
#[derive(Serialize, ToSchema, Clone)]
pub struct RowFinding {
    pub finding: Finding,
    /// Not seen by the run before (false: seen then too).
    pub new: bool,
}

/// An approval window the approver organisation opened for the applicant.
#[derive(Serialize, ToSchema)]
pub struct Window {
    pub id: String,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
    pub closed_ms: Option<i64>,
    pub opened_by: String,
}

#[derive(Serialize, ToSchema)]
pub struct OutsideConnection {
    #[schema(value_type = Object)]
    pub row: External,
    pub review_overdue: bool,
    /// The newest diagnosis's findings on the row's public addresses.
    pub findings: Vec<RowFinding>,
    /// Always "outside DOD-VPN", with the recommendation to bring it in.
    pub note_en: String,
    pub note_ja: String,
}

#[derive(Serialize, ToSchema)]
pub struct Ledger {
    pub org_id: String,
    pub org_name: String,
    pub dodvpn: Vec<DodvpnConnection>,
    pub outside: Vec<OutsideConnection>,
    /// Equipment rows, each with `review_overdue` and `findings` (as on outside rows).
    #[schema(value_type = Vec<Object>)]
    pub equipment: Vec<serde_json::Value>,
    /// The newest exposure diagnosis (R-SVC-5), if one was run.
    pub exposure: Option<Exposure>,
}

/// The newest exposure diagnosis as the ledger shows it.
#[derive(Serialize, ToSchema)]
pub struct Exposure {
    pub run_id: String,
    pub started_by: String,
    pub finished_ms: i64,
    pub targets: Vec<String>,
    /// All findings of the run.
    pub findings: usize,
    /// Findings of the run before, on an address probed again, no longer seen.
    pub fixed: Vec<Finding>,
    /// Findings on addresses that no ledger row names: a service the Internet sees
    /// that the organisation has not recorded.
    pub unledgered: Vec<RowFinding>,
    /// Of those, the remote-access and maintenance ways in (VPN login pages, RDP, VNC,
    /// telnet, SSH, SMB): possibly a connection point nobody knows about.
    pub unknown_connection_points: usize,
    pub note_en: String,
    pub note_ja: String,
}

/// File the newest run's findings under the rows whose addresses they were seen on.
fn file_findings(
    run: Option<RunComparison>,
    rows: &[&[IpAddr]],
) -> (Vec<Vec<RowFinding>>, Option<Exposure>) {
    let mut per_row = vec![Vec::new(); rows.len()];
    let Some(run) = run else {
        return (per_row, None);
    };
    let mut unledgered = Vec::new();
    let seen = run
        .new
        .into_iter()
        .map(|f| (f, true))
        .chain(run.unchanged.into_iter().map(|f| (f, false)));
    for (finding, new) in seen {
        let at: Option<IpAddr> = finding.target.parse().ok();
        let item = RowFinding { finding, new };
        let mut filed = false;
        for (i, addrs) in rows.iter().enumerate() {
            if at.is_some_and(|a| addrs.contains(&a)) {
                per_row[i].push(item.clone());
                filed = true;
            }
        }
        if !filed {
            unledgered.push(item);
        }
    }
    let unknown = unledgered
        .iter()
        .filter(|f| f.finding.is_remote_access())
        .count();
    let (note_en, note_ja) = if unledgered.is_empty() {
        (
            "every finding is filed under a ledger row".to_string(),
            "すべての指摘が台帳の行に対応しています".to_string(),
        )
    } else {
        (
            format!("{} findings are on addresses no ledger row names ({unknown} of them remote-access services): find out what answers there, record it, or shut it", unledgered.len()),
            format!("台帳のどの行にもないアドレスで {} 件の指摘があります（うちリモート接続サービス {unknown} 件）。何が応答しているかを確認し、台帳に記録するか停止してください", unledgered.len()),
        )
    };
    let exposure = Exposure {
        run_id: run.run.id,
        started_by: run.run.started_by,
        finished_ms: run.run.finished_ms,
        targets: run.run.targets,
        findings: run.run.findings,
        fixed: run.fixed,
        unledgered,
        unknown_connection_points: unknown,
        note_en,
        note_ja,
    };
    (per_row, Some(exposure))
}

async fn dodvpn_rows(c: &Center, org: &str) -> Result<Vec<DodvpnConnection>, ApiError> {
    let pool = &c.db.pool;
    let rows = sqlx::query(
        "SELECT g.id, g.applicant_device, g.target_device, g.info_applicant, g.created_ms, a.owner_org, t.owner_org, g.purpose \
         FROM grants g JOIN devices a ON a.id = g.applicant_device JOIN devices t ON t.id = g.target_device \
         WHERE g.status = 'active' AND (a.owner_org = $1 OR t.owner_org = $1) ORDER BY g.created_ms, g.id",
    )
    .bind(org)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let (id, a, t, info): (String, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let (a_org, t_org): (String, String) = (r.get(5), r.get(6));
        let ours_applied = a_org == org;
        let (mine, peer, peer_org) = if ours_applied {
            (a, t, t_org.clone())
        } else {
            (t, a, a_org.clone())
        };
        let info: serde_json::Value = serde_json::from_str(&info).unwrap_or_default();
        let services = info["info"]["services"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let pattern = format!("%\"{id}\"%");
        let usage = sqlx::query(
            "SELECT MAX(s.last_ms), CAST(SUM(CASE WHEN s.status = 'up' THEN 1 ELSE 0 END) AS BIGINT) FROM sessions s WHERE s.grant_ids LIKE $1",
        )
        .bind(&pattern)
        .fetch_one(pool)
        .await?;
        let last_used: Option<i64> = usage.get(0);
        let live: Option<i64> = usage.get(1);
        // Bytes as this organisation's device counted them, the largest report per session.
        let bytes = sqlx::query(
            "SELECT CAST(COALESCE(SUM(bi), 0) AS BIGINT), CAST(COALESCE(SUM(bo), 0) AS BIGINT) FROM (SELECT MAX(r.bytes_in) AS bi, MAX(r.bytes_out) AS bo \
             FROM session_reports r JOIN sessions s ON s.id = r.session_id WHERE s.grant_ids LIKE $1 AND r.reporter = $2 GROUP BY r.session_id) x",
        )
        .bind(&pattern)
        .bind(&mine)
        .fetch_one(pool)
        .await?;
        let windows = windows_of(c, &t_org, &a_org).await?;
        let mut approved_by: Vec<String> = Vec::new();
        for w in &windows {
            if !approved_by.contains(&w.opened_by) {
                approved_by.push(w.opened_by.clone());
            }
        }
        let state = if live.unwrap_or(0) > 0 {
            "live"
        } else if !windows.is_empty() {
            "window-bound"
        } else {
            "idle"
        };
        let created_by: Option<String> = sqlx::query_scalar(
            "SELECT actor FROM audit WHERE action = 'connection.granted' AND subject = $1 ORDER BY seq LIMIT 1",
        )
        .bind(&id)
        .fetch_optional(pool)
        .await?;
        let peer_dev = sqlx::query("SELECT model, software FROM devices WHERE id = $1")
            .bind(&peer)
            .fetch_one(pool)
            .await?;
        out.push(DodvpnConnection {
            grant_id: id,
            device_id: mine,
            peer_org_name: org_name(c, &peer_org).await?,
            peer_org_id: peer_org,
            peer_device_id: peer,
            direction: if ours_applied { "outbound" } else { "inbound" }.into(),
            services,
            state: state.into(),
            created_by: created_by.unwrap_or_default(),
            purpose: r.get(7),
            approved_by,
            windows,
            since_ms: r.get(4),
            last_used_ms: last_used,
            bytes_in: bytes.get::<i64, _>(0),
            bytes_out: bytes.get::<i64, _>(1),
            peer_model: peer_dev.get(0),
            peer_software: peer_dev.get(1),
        });
    }
    Ok(out)
}

/// The approval windows `approver` opened for `applicant`, newest first, with who opened each.
async fn windows_of(c: &Center, approver: &str, applicant: &str) -> Result<Vec<Window>, ApiError> {
    let rows = sqlx::query(
        "SELECT p.id, p.not_before, p.not_after, p.closed_ms, \
         (SELECT a.actor FROM audit a WHERE a.action = 'approval.opened' AND a.subject = p.id ORDER BY a.seq LIMIT 1) \
         FROM approvals p WHERE p.approver_org = $1 AND p.applicant_org = $2 ORDER BY p.not_before DESC, p.id LIMIT 20",
    )
    .bind(approver)
    .bind(applicant)
    .fetch_all(&c.db.pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| Window {
            id: r.get(0),
            not_before_ms: r.get(1),
            not_after_ms: r.get(2),
            closed_ms: r.get(3),
            opened_by: r.get::<Option<String>, _>(4).unwrap_or_default(),
        })
        .collect())
}

async fn stored<T: serde::de::DeserializeOwned>(
    c: &Center,
    org: &str,
    kind: &str,
) -> Result<Vec<T>, ApiError> {
    let bodies: Vec<String> = sqlx::query_scalar(
        "SELECT body FROM ledger_rows WHERE org_id = $1 AND kind = $2 ORDER BY id",
    )
    .bind(org)
    .bind(kind)
    .fetch_all(&c.db.pool)
    .await?;
    bodies
        .iter()
        .map(|b| {
            serde_json::from_str(b).map_err(|_| ApiError::internal("stored ledger row unreadable"))
        })
        .collect()
}

fn today() -> Date {
    Date::from_unix_ms(crate::db::now_ms())
}

#[utoipa::path(get, path = "/api/v1/orgs/{id}/ledger", tag = "organisations", params(("id" = String, Path)),
    responses((status = 200, body = Ledger), (status = 404, body = ErrorBody)))]
pub async fn get_ledger(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Ledger>, ApiError> {
    caller.require_read(&id)?;
    Ok(Json(ledger_of(&c, &id).await?))
}

pub(crate) async fn ledger_of(c: &Center, id: &str) -> Result<Ledger, ApiError> {
    let name = org_name(c, id).await?;
    let today = today();
    let outside_rows = stored::<External>(c, id, "outside").await?;
    let equipment_rows = stored::<Equipment>(c, id, "equipment").await?;
    let addresses: Vec<&[IpAddr]> = outside_rows
        .iter()
        .map(|r| r.addresses.as_slice())
        .chain(equipment_rows.iter().map(|e| e.addresses.as_slice()))
        .collect();
    let (mut filed, exposure) = file_findings(
        super::diagnose::run_comparison(c, id, None).await?,
        &addresses,
    );
    let equipment_filed = filed.split_off(outside_rows.len());
    let outside = outside_rows
        .into_iter()
        .zip(filed)
        .map(|(row, findings)| OutsideConnection {
            review_overdue: review_overdue(row.last_reviewed, today),
            row,
            findings,
            note_en: "outside DOD-VPN: bring it in, so that it is authenticated, policed and logged like the rest".into(),
            note_ja: "DOD-VPN 外の接続です。認証・制御・記録のため DOD-VPN への移行を推奨します".into(),
        })
        .collect();
    let equipment = equipment_rows
        .into_iter()
        .zip(equipment_filed)
        .map(|(e, findings)| {
            let mut v = serde_json::to_value(&e).unwrap_or_default();
            v["review_overdue"] = review_overdue(e.last_reviewed, today).into();
            v["findings"] = serde_json::to_value(findings).unwrap_or_default();
            v
        })
        .collect();
    Ok(Ledger {
        org_id: id.to_string(),
        org_name: name,
        dodvpn: dodvpn_rows(c, id).await?,
        outside,
        equipment,
        exposure,
    })
}

/// Replace one kind of hand-kept rows at once (an import is all or nothing).
async fn replace<T: CsvTable + Serialize>(
    c: &Center,
    caller: &Caller,
    org: &str,
    kind: &str,
    rows: &[T],
) -> Result<(), ApiError> {
    for r in rows {
        r.check()
            .map_err(|e| ApiError::bad_request(format!("row {}: {e}", r.id())))?;
    }
    if rows.len() > MAX_ROWS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_ROWS} rows / 最大 {MAX_ROWS} 行です"
        )));
    }
    let mut seen = HashSet::new();
    if let Some(dup) = rows.iter().map(CsvTable::id).find(|i| !seen.insert(*i)) {
        return Err(ApiError::bad_request(format!(
            "id {dup} appears twice / ID {dup} が重複しています"
        )));
    }
    let mut tx = c.db.begin_write().await?;
    org_exists(&mut tx, org).await?;
    let before: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM ledger_rows WHERE org_id = $1 AND kind = $2 ORDER BY id",
    )
    .bind(org)
    .bind(kind)
    .fetch_all(&mut *tx.tx)
    .await?;
    sqlx::query("DELETE FROM ledger_rows WHERE org_id = $1 AND kind = $2")
        .bind(org)
        .bind(kind)
        .execute(&mut *tx.tx)
        .await?;
    for r in rows {
        let body =
            serde_json::to_string(r).map_err(|_| ApiError::internal("could not store the row"))?;
        sqlx::query(
            "INSERT INTO ledger_rows (org_id, kind, id, body, updated_ms) VALUES ($1,$2,$3,$4,$5)",
        )
        .bind(org)
        .bind(kind)
        .bind(r.id())
        .bind(body)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await?;
    }
    let after: Vec<&str> = rows.iter().map(CsvTable::id).collect();
    tx.audit(
        &caller.actor(),
        &format!("ledger.{kind}_replaced"),
        org,
        serde_json::json!({"before": before, "after": after}),
    )
    .await?;
    tx.commit().await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutsideRows {
    /// Each: id, kind (vendor-vpn, leased-line, internet, remote-maintenance, other),
    /// contractor, contract_ref, device_model, firmware, terminates_at, responsible,
    /// last_reviewed (YYYY-MM-DD), addresses (public IP addresses, at most 16).
    #[schema(value_type = Vec<Object>, max_items = 2000)]
    pub rows: Vec<External>,
}

#[utoipa::path(put, path = "/api/v1/orgs/{id}/ledger/outside", tag = "organisations", params(("id" = String, Path)),
    request_body = OutsideRows, responses((status = 200, body = Ledger), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_outside(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<OutsideRows>, JsonRejection>,
) -> Result<Json<Ledger>, ApiError> {
    caller.require_org(&id)?;
    let Json(body) = body?;
    replace(&c, &caller, &id, "outside", &body.rows).await?;
    get_ledger(State(c), caller, Path(id)).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EquipmentRows {
    /// Each: id, category (server, terminal, network), name, location, owner, model,
    /// os_version, remote_maintenance, vendor, last_reviewed (YYYY-MM-DD), addresses
    /// (public IP addresses, at most 16).
    #[schema(value_type = Vec<Object>, max_items = 2000)]
    pub rows: Vec<Equipment>,
}

#[utoipa::path(put, path = "/api/v1/orgs/{id}/ledger/equipment", tag = "organisations", params(("id" = String, Path)),
    request_body = EquipmentRows, responses((status = 200, body = Ledger), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_equipment(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<EquipmentRows>, JsonRejection>,
) -> Result<Json<Ledger>, ApiError> {
    caller.require_org(&id)?;
    let Json(body) = body?;
    replace(&c, &caller, &id, "equipment", &body.rows).await?;
    get_ledger(State(c), caller, Path(id)).await
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DiagramQuery {
    /// `svg` (default), `pdf`, or `dot` (the Graphviz source).
    #[serde(default)]
    #[param(inline)]
    pub format: Option<DiagramFormat>,
}

#[derive(Deserialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DiagramFormat {
    Svg,
    Pdf,
    Dot,
}

/// The organisation's diagram: its sites, its peers grouped by organisation, and the
/// outside-DOD-VPN connections, edges coloured by state.
pub(crate) async fn org_diagram(c: &Center, org: &str) -> Result<Diagram, ApiError> {
    let name = org_name(c, org).await?;
    let mut d = Diagram {
        title: format!("{name} — external connections / 外部接続"),
        ..Default::default()
    };
    let devices =
        sqlx::query("SELECT id, model, serial FROM devices WHERE owner_org = $1 ORDER BY id")
            .bind(org)
            .fetch_all(&c.db.pool)
            .await?;
    for r in &devices {
        let (id, model, serial): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        d.nodes.push(Node {
            id: id.clone(),
            label: format!("{serial}\n{model}"),
            kind: NodeKind::OwnSite,
            group: name.clone(),
        });
    }
    let mut peers = BTreeMap::new();
    for conn in dodvpn_rows(c, org).await? {
        peers
            .entry(conn.peer_device_id.clone())
            .or_insert_with(|| Node {
                id: conn.peer_device_id.clone(),
                label: format!("{}\n{}", conn.peer_device_id, conn.peer_model),
                kind: NodeKind::PeerSite,
                group: conn.peer_org_name.clone(),
            });
        let state = match conn.state.as_str() {
            "live" => EdgeState::Live,
            "window-bound" => EdgeState::WindowBound,
            _ => EdgeState::Idle,
        };
        d.edges.push(Edge {
            from: conn.device_id,
            to: conn.peer_device_id,
            state,
            label: conn.services.join(", "),
        });
    }
    d.nodes.extend(peers.into_values());
    let anchor = devices
        .first()
        .map(|r| r.get::<String, _>(0))
        .unwrap_or_else(|| format!("org-{org}"));
    if devices.is_empty() {
        d.nodes.push(Node {
            id: anchor.clone(),
            label: name.clone(),
            kind: NodeKind::OwnSite,
            group: name.clone(),
        });
    }
    for row in stored::<External>(c, org, "outside").await? {
        let node = format!("outside-{}", row.id);
        d.nodes.push(Node {
            id: node.clone(),
            label: format!(
                "{}\n{} {}",
                row.kind.as_str(),
                row.device_model,
                row.firmware
            ),
            kind: NodeKind::Outside,
            group: row.contractor.clone(),
        });
        d.edges.push(Edge {
            from: anchor.clone(),
            to: node,
            state: EdgeState::Outside,
            label: row.terminates_at.clone(),
        });
    }
    Ok(d)
}

/// Every organisation and every live grant, for the provider.
async fn provider_diagram(c: &Center) -> Result<Diagram, ApiError> {
    let mut d = Diagram {
        title: "dodvpn — all members / 全加入者".into(),
        ..Default::default()
    };
    let devices = sqlx::query("SELECT d.id, d.serial, d.model, o.name FROM devices d JOIN orgs o ON o.id = d.owner_org ORDER BY d.id")
        .fetch_all(&c.db.pool)
        .await?;
    for r in devices {
        let (id, serial, model, org): (String, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        d.nodes.push(Node {
            id,
            label: format!("{serial}\n{model}"),
            kind: NodeKind::PeerSite,
            group: org,
        });
    }
    let grants = sqlx::query(
        "SELECT g.id, g.applicant_device, g.target_device FROM grants g WHERE g.status = 'active' ORDER BY g.id",
    )
    .fetch_all(&c.db.pool)
    .await?;
    for g in grants {
        let id: String = g.get(0);
        let live: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions WHERE status = 'up' AND grant_ids LIKE $1",
        )
        .bind(format!("%\"{id}\"%"))
        .fetch_one(&c.db.pool)
        .await?;
        let state = if live > 0 {
            EdgeState::Live
        } else {
            EdgeState::Idle
        };
        d.edges.push(Edge {
            from: g.get(1),
            to: g.get(2),
            state,
            label: String::new(),
        });
    }
    Ok(d)
}

/// Lay out DOT with Graphviz. Missing Graphviz is a 503 that says what to install.
pub(crate) async fn render(dot: String, format: DiagramFormat) -> Result<Response, ApiError> {
    let (arg, mime) = match format {
        DiagramFormat::Dot => {
            return Ok((
                [(header::CONTENT_TYPE, "text/vnd.graphviz; charset=utf-8")],
                dot,
            )
                .into_response())
        }
        DiagramFormat::Svg => ("-Tsvg", "image/svg+xml"),
        DiagramFormat::Pdf => ("-Tpdf", "application/pdf"),
    };
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new("dot")
            .arg(arg)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(dot.as_bytes())?;
        }
        child.wait_with_output()
    })
    .await
    .map_err(|_| ApiError::internal("the diagram task failed"))?
    .map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "graphviz_missing",
            format!("cannot run Graphviz `dot` ({e}); install the Debian package graphviz / graphviz パッケージをインストールしてください"),
        )
    })?;
    if !out.status.success() {
        return Err(ApiError::internal(format!(
            "Graphviz failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(([(header::CONTENT_TYPE, mime)], out.stdout).into_response())
}

#[utoipa::path(get, path = "/api/v1/orgs/{id}/ledger/diagram", tag = "organisations", params(("id" = String, Path), DiagramQuery),
    responses((status = 200, description = "the diagram (image/svg+xml, application/pdf or text/vnd.graphviz)",
        content(("image/svg+xml"), ("application/pdf"), ("text/vnd.graphviz"))),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn org_diagram_handler(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<DiagramQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require_read(&id)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let d = org_diagram(&c, &id).await?;
    render(d.to_dot(), q.format.unwrap_or(DiagramFormat::Svg)).await
}

#[utoipa::path(get, path = "/api/v1/ledger/diagram", tag = "organisations", params(DiagramQuery),
    responses((status = 200, description = "the provider-wide diagram",
        content(("image/svg+xml"), ("application/pdf"), ("text/vnd.graphviz"))),
        (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn provider_diagram_handler(
    State(c): State<Arc<Center>>,
    caller: Caller,
    q: Result<Query<DiagramQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    if caller.audit_scope()?.is_some() {
        return Err(ApiError::forbidden(
            "provider_only",
            "only the provider's operator may do this",
        ));
    }
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let d = provider_diagram(&c).await?;
    render(d.to_dot(), q.format.unwrap_or(DiagramFormat::Svg)).await
}
