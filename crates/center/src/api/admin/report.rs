//! The printable report an organisation hands to an inspector (issue 11): its ledger,
//! equipment, diagram, check-sheet results and gaps, in Japanese and English. HTML
//! from the centre, PDF through headless Chromium (Debian's `chromium`), so that the
//! printed page is exactly the page on screen.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::checksheets::load as submissions;
use super::ledger::{ledger_of, org_diagram, render, DiagramFormat};
use crate::auth::Caller;
use crate::checksheets::catalogues;
use crate::error::{ApiError, ErrorBody};
use crate::Center;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// `html` (default) or `pdf`.
    #[serde(default)]
    #[param(inline)]
    pub format: Option<ReportFormat>,
}

#[derive(Deserialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    Html,
    Pdf,
}

/// Text for HTML: the report shows what members typed, so everything is escaped.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn when(ms: i64) -> String {
    dodvpn_ledger::Date::from_unix_ms(ms).to_string()
}

fn table(head: &[&str], rows: Vec<Vec<String>>) -> String {
    if rows.is_empty() {
        return "<p class=\"none\">なし / none</p>".into();
    }
    let mut t = String::from("<table><thead><tr>");
    for h in head {
        t.push_str(&format!("<th>{h}</th>"));
    }
    t.push_str("</tr></thead><tbody>");
    for r in rows {
        t.push_str("<tr>");
        for cell in r {
            t.push_str(&format!("<td>{cell}</td>"));
        }
        t.push_str("</tr>");
    }
    t.push_str("</tbody></table>");
    t
}

const STYLE: &str = "body{font-family:'Noto Sans CJK JP',sans-serif;font-size:10pt;margin:1.5cm}\
h1{font-size:16pt}h2{font-size:12pt;border-bottom:1px solid #888;margin-top:1.5em}\
table{border-collapse:collapse;width:100%}th,td{border:1px solid #999;padding:2px 4px;text-align:left;vertical-align:top}\
th{background:#eee}.overdue{color:#b00;font-weight:bold}.none{color:#666}svg{max-width:100%;height:auto}\
@page{size:A4;margin:1cm}";

async fn html(c: &Center, org: &str) -> Result<String, ApiError> {
    let l = ledger_of(c, org).await?;
    let mut body = format!(
        "<h1>{} — 外部接続・セキュリティ報告書 / External connections and security report</h1><p>作成日 / Made on {}</p>",
        esc(&l.org_name),
        when(crate::db::now_ms())
    );
    body.push_str("<h2>1. DOD-VPN 経由の接続 / Connections through DOD-VPN</h2>");
    body.push_str(&table(
        &[
            "相手 / Peer",
            "機器 / Device",
            "方向 / Direction",
            "目的 / Purpose",
            "サービス / Services",
            "状態 / State",
            "申請・承認 / Applied, approved by",
            "開始 / Since",
            "最終利用 / Last used",
            "相手の機種・ソフトウェア / Peer model, software",
        ],
        l.dodvpn
            .iter()
            .map(|r| {
                vec![
                    esc(&r.peer_org_name),
                    format!("{} ↔ {}", esc(&r.device_id), esc(&r.peer_device_id)),
                    esc(&r.direction),
                    esc(r.purpose.as_deref().unwrap_or("—")),
                    esc(&r.services.join(", ")),
                    match r.windows.first() {
                        Some(w) => format!(
                            "{} ({} 件の時間枠、最新 / windows, newest: {} – {})",
                            esc(&r.state),
                            r.windows.len(),
                            when(w.not_before_ms),
                            when(w.not_after_ms)
                        ),
                        None => esc(&r.state),
                    },
                    format!(
                        "{} / {}",
                        esc(&r.created_by),
                        if r.approved_by.is_empty() {
                            "双方のポリシー / both organisations' policies".to_string()
                        } else {
                            esc(&r.approved_by.join(", "))
                        }
                    ),
                    when(r.since_ms),
                    r.last_used_ms.map(when).unwrap_or_else(|| "—".into()),
                    format!(
                        "{} {}",
                        esc(&r.peer_model),
                        esc(r.peer_software.as_deref().unwrap_or(""))
                    ),
                ]
            })
            .collect(),
    ));
    body.push_str("<h2>2. DOD-VPN 外の接続 / Connections outside DOD-VPN</h2><p>DOD-VPN への移行を推奨します。 / Bring these into DOD-VPN.</p>");
    body.push_str(&table(
        &[
            "番号 / Id",
            "種別 / Kind",
            "契約先 / Contractor",
            "機種・版 / Model, firmware",
            "終端 / Terminates at",
            "責任者 / Responsible",
            "最終確認 / Reviewed",
        ],
        l.outside
            .iter()
            .map(|o| {
                let r = &o.row;
                let reviewed = if o.review_overdue {
                    format!(
                        "<span class=\"overdue\">{} (要確認 / overdue)</span>",
                        r.last_reviewed
                    )
                } else {
                    r.last_reviewed.to_string()
                };
                vec![
                    esc(&r.id),
                    format!("{} / {}", r.kind.label_ja(), r.kind.as_str()),
                    esc(&r.contractor),
                    format!("{} {}", esc(&r.device_model), esc(&r.firmware)),
                    esc(&r.terminates_at),
                    esc(&r.responsible),
                    reviewed,
                ]
            })
            .collect(),
    ));
    body.push_str("<h2>3. 機器台帳 / Equipment</h2>");
    let s = |v: &serde_json::Value, k: &str| esc(v[k].as_str().unwrap_or(""));
    body.push_str(&table(
        &[
            "番号 / Id",
            "区分 / Category",
            "名称 / Name",
            "場所 / Location",
            "管理者 / Owner",
            "機種・版 / Model, version",
            "リモート保守 / Remote maintenance",
            "事業者 / Vendor",
            "最終確認 / Reviewed",
        ],
        l.equipment
            .iter()
            .map(|e| {
                let overdue = e["review_overdue"] == true;
                vec![
                    s(e, "id"),
                    s(e, "category"),
                    s(e, "name"),
                    s(e, "location"),
                    s(e, "owner"),
                    format!("{} {}", s(e, "model"), s(e, "os_version")),
                    if e["remote_maintenance"] == true {
                        "有 / yes"
                    } else {
                        "無 / no"
                    }
                    .into(),
                    s(e, "vendor"),
                    if overdue {
                        format!(
                            "<span class=\"overdue\">{} (要確認 / overdue)</span>",
                            s(e, "last_reviewed")
                        )
                    } else {
                        s(e, "last_reviewed")
                    },
                ]
            })
            .collect(),
    ));
    body.push_str("<h2>4. ネットワーク構成図 / Network diagram</h2>");
    let dot = org_diagram(c, org).await?.to_dot();
    match render(dot, DiagramFormat::Svg).await {
        Ok(resp) => {
            let bytes = axum::body::to_bytes(resp.into_body(), 16 * 1024 * 1024)
                .await
                .unwrap_or_default();
            let svg = String::from_utf8_lossy(&bytes);
            // Graphviz's XML prologue and doctype are not allowed inside HTML.
            body.push_str(svg.find("<svg").map(|i| &svg[i..]).unwrap_or(""));
        }
        Err(e) => body.push_str(&format!("<p class=\"none\">{}</p>", esc(&e.message))),
    }
    body.push_str("<h2>5. セキュリティチェックシート / Security check sheets</h2>");
    let cats = catalogues()?;
    let mut any = false;
    for sub in submissions(c, org, None)
        .await?
        .into_iter()
        .filter(|s| s.state != "superseded")
    {
        any = true;
        body.push_str(&format!(
            "<h3>{} ({} {}) — {}% — {}</h3>",
            esc(&sub.sheet),
            esc(&sub.catalogue),
            esc(&sub.version),
            sub.percent,
            esc(&sub.state)
        ));
        let gaps = sub.score["gaps"].as_array().cloned().unwrap_or_default();
        let item = |id: &str| cats.iter().find_map(|c| c.item(id));
        body.push_str(&table(
            &[
                "項目 / Item",
                "役割 / Role",
                "内容 / Objective",
                "理由 / Why",
            ],
            gaps.iter()
                .map(|g| {
                    let id = g["item"].as_str().unwrap_or("");
                    let obj = item(id)
                        .map(|i| format!("{}<br>{}", esc(&i.objective.ja), esc(&i.objective.en)))
                        .unwrap_or_default();
                    let why = if g["reason"] == "answered_no" {
                        "未対応 / not met"
                    } else {
                        "未回答 / unanswered"
                    };
                    vec![esc(id), s(g, "role"), obj, why.into()]
                })
                .collect(),
        ));
    }
    if !any {
        body.push_str("<p class=\"none\">提出なし / none submitted</p>");
    }
    body.push_str(&exposure_section(&l));
    Ok(format!(
        "<!DOCTYPE html><html lang=\"ja\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        esc(&l.org_name)
    ))
}

/// Section 6: the newest exposure diagnosis, each finding under the ledger row whose
/// public address it was seen on, and those on no row's address called out.
fn exposure_section(l: &super::ledger::Ledger) -> String {
    let mut out = String::from("<h2>6. 外部からの診断 / Exposure diagnosis</h2>");
    let Some(x) = &l.exposure else {
        out.push_str("<p class=\"none\">未実施 / not run</p>");
        return out;
    };
    out.push_str(&format!(
        "<p>{} — {} ({}) — 指摘 {} 件、解消 {} 件 / {} findings, {} fixed</p>",
        esc(&x.run_id),
        when(x.finished_ms),
        esc(&x.started_by),
        x.findings,
        x.fixed.len(),
        x.findings,
        x.fixed.len()
    ));
    let mut rows = Vec::new();
    let mut add = |row: String, f: &super::ledger::RowFinding| {
        let g = &f.finding;
        rows.push(vec![
            row,
            format!("{}:{}", esc(&g.target), g.port),
            format!("{:?}", g.severity).to_lowercase(),
            format!("{}<br>{}", esc(&g.title_ja), esc(&g.title_en)),
            esc(&g.evidence),
            format!(
                "{}<br>{}",
                esc(&g.recommendation_ja),
                esc(&g.recommendation_en)
            ),
            if f.new {
                "新規 / new"
            } else {
                "継続 / unchanged"
            }
            .into(),
        ]);
    };
    for o in &l.outside {
        for f in &o.findings {
            add(esc(&o.row.id), f);
        }
    }
    for e in &l.equipment {
        let id = esc(e["id"].as_str().unwrap_or(""));
        for f in e["findings"].as_array().into_iter().flatten() {
            if let Ok(finding) = serde_json::from_value(f["finding"].clone()) {
                let new = f["new"] == true;
                add(id.clone(), &super::ledger::RowFinding { finding, new });
            }
        }
    }
    for f in &x.unledgered {
        add(
            "<span class=\"overdue\">台帳にない / not in the ledger</span>".into(),
            f,
        );
    }
    out.push_str(&table(
        &[
            "台帳の行 / Ledger row",
            "アドレス / Address",
            "重大度 / Severity",
            "指摘 / Finding",
            "証拠 / Evidence",
            "推奨 / Recommendation",
            "前回比 / Since last run",
        ],
        rows,
    ));
    if !x.unledgered.is_empty() {
        out.push_str(&format!(
            "<p class=\"overdue\">{}<br>{}</p>",
            esc(&x.note_ja),
            esc(&x.note_en)
        ));
    }
    out
}

/// Print HTML to PDF with headless Chromium. Missing Chromium is a 503 that says what to install.
async fn pdf(html: String) -> Result<Vec<u8>, ApiError> {
    tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ApiError> {
        let dir = tempfile::tempdir().map_err(|_| ApiError::internal("no temporary directory for the report"))?;
        let (input, output) = (dir.path().join("report.html"), dir.path().join("report.pdf"));
        std::fs::write(&input, html).map_err(|_| ApiError::internal("cannot write the report"))?;
        let out = std::process::Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer"])
            .arg(format!("--user-data-dir={}", dir.path().join("profile").display()))
            .arg(format!("--print-to-pdf={}", output.display()))
            .arg(format!("file://{}", input.display()))
            .output()
            .map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "chromium_missing",
                    format!("cannot run chromium ({e}); install the Debian package chromium / chromium パッケージをインストールしてください"),
                )
            })?;
        std::fs::read(&output).map_err(|_| {
            ApiError::internal(format!("Chromium made no PDF: {}", String::from_utf8_lossy(&out.stderr).trim()))
        })
    })
    .await
    .map_err(|_| ApiError::internal("the report task failed"))?
}

#[utoipa::path(get, path = "/api/v1/orgs/{id}/report", tag = "organisations", params(("id" = String, Path), ReportQuery),
    responses((status = 200, description = "the report (text/html or application/pdf)", content(("text/html"), ("application/pdf"))),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn get_report(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require_read(&id)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let page = html(&c, &id).await?;
    Ok(match q.format.unwrap_or(ReportFormat::Html) {
        ReportFormat::Html => {
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
        }
        ReportFormat::Pdf => (
            [(header::CONTENT_TYPE, "application/pdf")],
            pdf(page).await?,
        )
            .into_response(),
    })
}
