//! Editing the ledger's hand-kept rows and answering a check sheet in the console
//! (issue 11). Every save goes through the same API calls as the CLI (a whole table
//! `PUT`, a submission `POST`), so the centre's checks and audit apply unchanged. A form
//! carries a digest of the table it was opened on: a save after someone else changed
//! the table is refused instead of overwriting their change.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use maud::{html, Markup};
use serde_json::{json, Map, Value};

use super::{nav, s, safe_id, segment};
use crate::i18n::Lang;
use crate::roles::Can;
use crate::web::{html_response, page, Authed, Form, PageError, PageResult};
use crate::Console;

/// The two hand-kept tables.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Table {
    Outside,
    Equipment,
}

#[derive(Clone, Copy)]
enum Input {
    Text { required: bool },
    Date,
    Kind,
    Category,
    YesNo,
    Addresses,
}

impl Table {
    fn parse(s: &str) -> Option<Table> {
        match s {
            "outside" => Some(Table::Outside),
            "equipment" => Some(Table::Equipment),
            _ => None,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Table::Outside => "outside",
            Table::Equipment => "equipment",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Table::Outside => "ledger.outside",
            Table::Equipment => "ledger.equipment",
        }
    }

    /// (field, label key, input), in the CSV's column order.
    fn fields(self) -> &'static [(&'static str, &'static str, Input)] {
        const REQ: Input = Input::Text { required: true };
        const OPT: Input = Input::Text { required: false };
        match self {
            Table::Outside => &[
                ("id", "field.id", REQ),
                ("kind", "field.kind", Input::Kind),
                ("contractor", "field.contractor", REQ),
                ("contract_ref", "field.contract_ref", OPT),
                ("device_model", "field.device_model", OPT),
                ("firmware", "field.firmware", OPT),
                ("terminates_at", "field.terminates_at", OPT),
                ("responsible", "field.responsible", REQ),
                ("last_reviewed", "field.last_reviewed", Input::Date),
                ("addresses", "field.addresses", Input::Addresses),
            ],
            Table::Equipment => &[
                ("id", "field.id", REQ),
                ("category", "field.category", Input::Category),
                ("name", "field.name", REQ),
                ("location", "field.location", REQ),
                ("owner", "field.owner", REQ),
                ("model", "field.model", OPT),
                ("os_version", "field.os_version", OPT),
                (
                    "remote_maintenance",
                    "field.remote_maintenance",
                    Input::YesNo,
                ),
                ("vendor", "field.vendor", OPT),
                ("last_reviewed", "field.last_reviewed", Input::Date),
                ("addresses", "field.addresses", Input::Addresses),
            ],
        }
    }

    /// The table's rows as the API stores them (what the ledger adds removed).
    fn rows(self, ledger: &Value) -> Vec<Value> {
        let list = ledger[self.path()].as_array().cloned().unwrap_or_default();
        list.into_iter()
            .map(|r| match self {
                Table::Outside => r["row"].clone(),
                Table::Equipment => {
                    let mut r = r;
                    if let Some(m) = r.as_object_mut() {
                        m.remove("review_overdue");
                        m.remove("findings");
                    }
                    r
                }
            })
            .collect()
    }

    /// A row from the form's fields, checked exactly as an import checks it.
    fn row_from(self, f: &HashMap<String, String>, l: Lang) -> Result<Value, PageError> {
        let bad = |detail: String| {
            PageError::new(StatusCode::BAD_REQUEST, l, "ledger.bad_row").with(detail)
        };
        let mut m = Map::new();
        for (key, _, input) in self.fields() {
            let v = f
                .get(*key)
                .map(|v| v.trim().to_string())
                .unwrap_or_default();
            let value = match input {
                Input::Addresses => {
                    let list =
                        dodvpn_ledger::parse_addresses(&v).map_err(|e| bad(e.to_string()))?;
                    json!(list.iter().map(|a| a.to_string()).collect::<Vec<_>>())
                }
                Input::YesNo => json!(v == "yes"),
                _ => json!(v),
            };
            m.insert((*key).to_string(), value);
        }
        let v = Value::Object(m);
        let checked = match self {
            Table::Outside => serde_json::from_value::<dodvpn_ledger::External>(v.clone())
                .map_err(|e| e.to_string())
                .and_then(|r| r.check().map_err(|e| e.to_string())),
            Table::Equipment => serde_json::from_value::<dodvpn_ledger::Equipment>(v.clone())
                .map_err(|e| e.to_string())
                .and_then(|r| r.check().map_err(|e| e.to_string())),
        };
        checked.map_err(bad)?;
        Ok(v)
    }
}

/// A digest of the rows a form was opened on.
fn digest(rows: &[Value]) -> String {
    let text = serde_json::to_string(rows).unwrap_or_default();
    hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
}

fn ledger_url(org: &str) -> String {
    format!("/console/ledger/{org}")
}

fn field_input(
    l: Lang,
    key: &'static str,
    label: &'static str,
    input: Input,
    value: &Value,
) -> Markup {
    let id = format!("f-{key}");
    let text = match value {
        Value::Array(a) => a.iter().map(s).collect::<Vec<_>>().join(" "),
        v => s(v),
    };
    html! {
        p {
            label for=(id) { (l.t(label)) }
            " "
            @match input {
                Input::Text { required } => input id=(id) name=(key) value=(text) maxlength="200" required[required];,
                Input::Date => input id=(id) name=(key) type="date" value=(text) required;,
                Input::Addresses => input id=(id) name=(key) value=(text) placeholder="203.0.113.7 2001:db8::7";,
                Input::Kind => select id=(id) name=(key) {
                    @for k in dodvpn_ledger::ExternalKind::ALL {
                        option value=(k.as_str()) selected[k.as_str() == text] {
                            (if l == Lang::Ja { k.label_ja() } else { k.as_str() })
                        }
                    }
                },
                Input::Category => select id=(id) name=(key) {
                    @for k in dodvpn_ledger::EquipmentCategory::ALL {
                        option value=(k.as_str()) selected[k.as_str() == text] {
                            (if l == Lang::Ja { k.label_ja() } else { k.as_str() })
                        }
                    }
                },
                Input::YesNo => select id=(id) name=(key) {
                    option value="yes" selected[value == &Value::Bool(true)] { (l.t("answer.yes")) }
                    option value="no" selected[value != &Value::Bool(true)] { (l.t("answer.no")) }
                },
            }
        }
    }
}

/// The form for a new row (`row` = "new") or for editing one.
pub(super) async fn row_form(
    State(c): State<Arc<Console>>,
    a: Authed,
    Path((org, table, row)): Path<(String, String, String)>,
) -> PageResult {
    a.require(Can::EditLedger)?;
    let l = a.lang;
    let Some(t) = Table::parse(&table).filter(|_| safe_id(&org)) else {
        return Err(PageError::not_found(l));
    };
    let led = c
        .get_json(&a, &format!("/api/v1/orgs/{org}/ledger"))
        .await?;
    let rows = t.rows(&led);
    let current = if row == "new" {
        Value::Null
    } else {
        rows.iter()
            .find(|r| r["id"] == row.as_str())
            .cloned()
            .ok_or_else(|| PageError::not_found(l))?
    };
    let csrf = a.session.csrf.clone();
    let body = html! {
        form method="post" action={(ledger_url(&org)) "/" (t.path())} {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="base" value=(digest(&rows));
            @if !current.is_null() { input type="hidden" name="original" value=(row); }
            @for (key, label, input) in t.fields() {
                (field_input(l, key, label, *input, &current[*key]))
            }
            p { button type="submit" { (l.t("ledger.save")) } }
        }
        @if !current.is_null() {
            form method="post" action={(ledger_url(&org)) "/" (t.path()) "/" (segment(&row)) "/delete"} {
                input type="hidden" name="csrf" value=(a.session.csrf);
                input type="hidden" name="base" value=(digest(&rows));
                p { button type="submit" { (l.t("ledger.delete")) } }
            }
        }
        p { a href=(ledger_url(&org)) { (l.t("ledger.back")) } }
    };
    let title = format!("{} — {}", l.t(t.title()), s(&led["org_name"]));
    Ok(html_response(page(
        l,
        nav(&a),
        &title,
        "/console/ledger",
        body,
    )))
}

/// The rows, after checking that nobody changed them since the form was opened.
async fn rows_at(
    c: &Console,
    a: &Authed,
    org: &str,
    t: Table,
    base: Option<&String>,
) -> Result<Vec<Value>, PageError> {
    let led = c.get_json(a, &format!("/api/v1/orgs/{org}/ledger")).await?;
    let rows = t.rows(&led);
    if base.map(String::as_str) != Some(digest(&rows).as_str()) {
        return Err(PageError::new(
            StatusCode::CONFLICT,
            a.lang,
            "ledger.changed",
        ));
    }
    Ok(rows)
}

async fn put_rows(c: &Console, a: &Authed, org: &str, t: Table, rows: Vec<Value>) -> PageResult {
    c.put_json(
        a,
        &format!("/api/v1/orgs/{org}/ledger/{}", t.path()),
        json!({ "rows": rows }),
    )
    .await?;
    Ok(Redirect::to(&ledger_url(org)).into_response())
}

/// Add a row, or replace the one named `original`.
pub(super) async fn save_row(
    State(c): State<Arc<Console>>,
    a: Authed,
    Path((org, table)): Path<(String, String)>,
    Form(f): Form<HashMap<String, String>>,
) -> PageResult {
    a.require(Can::EditLedger)?;
    let l = a.lang;
    let Some(t) = Table::parse(&table).filter(|_| safe_id(&org)) else {
        return Err(PageError::not_found(l));
    };
    let row = t.row_from(&f, l)?;
    let mut rows = rows_at(&c, &a, &org, t, f.get("base")).await?;
    let id = row["id"].clone();
    match f.get("original") {
        Some(orig) => {
            let at = rows
                .iter()
                .position(|r| r["id"] == orig.as_str())
                .ok_or_else(|| PageError::new(StatusCode::CONFLICT, l, "ledger.changed"))?;
            if rows
                .iter()
                .enumerate()
                .any(|(i, r)| i != at && r["id"] == id)
            {
                return Err(
                    PageError::new(StatusCode::BAD_REQUEST, l, "ledger.id_taken").with(s(&id)),
                );
            }
            rows[at] = row;
        }
        None => {
            if rows.iter().any(|r| r["id"] == id) {
                return Err(
                    PageError::new(StatusCode::BAD_REQUEST, l, "ledger.id_taken").with(s(&id)),
                );
            }
            rows.push(row);
        }
    }
    put_rows(&c, &a, &org, t, rows).await
}

pub(super) async fn delete_row(
    State(c): State<Arc<Console>>,
    a: Authed,
    Path((org, table, row)): Path<(String, String, String)>,
    Form(f): Form<HashMap<String, String>>,
) -> PageResult {
    a.require(Can::EditLedger)?;
    let Some(t) = Table::parse(&table).filter(|_| safe_id(&org)) else {
        return Err(PageError::not_found(a.lang));
    };
    let mut rows = rows_at(&c, &a, &org, t, f.get("base")).await?;
    let before = rows.len();
    rows.retain(|r| r["id"] != row.as_str());
    if rows.len() == before {
        return Err(PageError::not_found(a.lang));
    }
    put_rows(&c, &a, &org, t, rows).await
}

// ---------- answering a check sheet ----------

#[derive(serde::Deserialize, Default)]
pub(super) struct SheetQ {
    /// Comma-separated services (they decide the ▲ items).
    #[serde(default)]
    services: String,
}

fn services_of(
    cat: &dodvpn_checksheet::Catalogue,
    list: &str,
    l: Lang,
) -> Result<BTreeSet<String>, PageError> {
    let set: BTreeSet<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if let Some(bad) = set.iter().find(|s| !cat.services.contains_key(*s)) {
        return Err(
            PageError::new(StatusCode::BAD_REQUEST, l, "sheet.unknown_service").with(bad.clone()),
        );
    }
    Ok(set)
}

fn find_sheet(
    sheet: &str,
) -> Option<(
    &'static dodvpn_checksheet::Catalogue,
    &'static dodvpn_checksheet::Sheet,
)> {
    static CATS: std::sync::LazyLock<Vec<dodvpn_checksheet::Catalogue>> =
        std::sync::LazyLock::new(|| dodvpn_checksheet::builtin().unwrap_or_default());
    CATS.iter().find_map(|c| c.sheet(sheet).map(|s| (c, s)))
}

/// Every item the sheet asks of the organisation, pre-filled where the centre can answer.
pub(super) async fn sheet_form(
    State(c): State<Arc<Console>>,
    a: Authed,
    Path((org, sheet)): Path<(String, String)>,
    Query(q): Query<SheetQ>,
) -> PageResult {
    a.require(Can::EditLedger)?;
    let l = a.lang;
    let lang = if l == Lang::Ja { "ja" } else { "en" };
    let Some((cat, sh)) = find_sheet(&sheet).filter(|_| safe_id(&org)) else {
        return Err(PageError::not_found(l));
    };
    let services = services_of(cat, &q.services, l)?;
    let joined = services.iter().cloned().collect::<Vec<_>>().join(",");
    let pre = c
        .get_json(
            &a,
            &format!("/api/v1/orgs/{org}/checksheets/prefill?sheet={sheet}&services={joined}"),
        )
        .await?;
    let prefilled: HashMap<(String, String), (String, String)> = pre["answers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            (
                (s(&x["item"]), s(&x["role"])),
                (s(&x["value"]), s(&x["note"])),
            )
        })
        .collect();
    let items = cat.applicable(sh, &services);
    let body = html! {
        form method="get" action={(ledger_url(&org)) "/sheets/" (sheet)} {
            fieldset {
                legend { (l.t("sheet.services")) }
                ul { @for (id, name) in &cat.services { li { code { (id) } " " (name.get(lang)) } } }
                p {
                    label for="services" { (l.t("sheet.services_list")) }
                    " " input id="services" name="services" value=(joined);
                    " " button type="submit" { (l.t("sheet.apply_services")) }
                }
            }
        }
        form method="post" action={(ledger_url(&org)) "/sheets/" (sheet)} {
            input type="hidden" name="csrf" value=(a.session.csrf);
            input type="hidden" name="services" value=(joined);
            table {
                caption { (sh.name.get(lang)) " " (cat.version) }
                thead { tr { th scope="col" { (l.t("col.item")) } th scope="col" { (l.t("col.role")) } th scope="col" { (l.t("col.criterion")) } th scope="col" { (l.t("col.answer")) } th scope="col" { (l.t("col.note")) } } }
                tbody { @for (item, role) in &items {
                    @let key = format!("{}:{}", item.id, role);
                    @let (value, note) = prefilled.get(&(item.id.clone(), role.to_string())).cloned().unwrap_or_default();
                    tr {
                        th scope="row" { (item.id) }
                        td { (role) }
                        td { strong { (item.objective.get(lang)) } br; (item.criterion.get(lang)) }
                        td {
                            fieldset {
                                legend class="sr" { (item.id) " " (role) }
                                @for (v, label) in [("yes", "answer.yes"), ("no", "answer.no"), ("not_applicable", "answer.na")] {
                                    label { input type="radio" name={"v:" (key)} value=(v) checked[value == v]; " " (l.t(label)) } " "
                                }
                            }
                        }
                        td { label class="sr" for={"n:" (key)} { (l.t("col.note")) " " (item.id) } textarea id={"n:" (key)} name={"n:" (key)} maxlength="2000" rows="2" { (note) } }
                    }
                } }
            }
            p { button type="submit" { (l.t("sheet.submit")) } }
        }
        p { a href=(ledger_url(&org)) { (l.t("ledger.back")) } }
    };
    let title = format!("{} — {}", l.t("ledger.sheets"), sh.name.get(lang));
    Ok(html_response(page(
        l,
        nav(&a),
        &title,
        "/console/ledger",
        body,
    )))
}

/// Submit the answers given; unanswered items stay gaps, as the centre scores them.
pub(super) async fn submit_sheet(
    State(c): State<Arc<Console>>,
    a: Authed,
    Path((org, sheet)): Path<(String, String)>,
    Form(f): Form<HashMap<String, String>>,
) -> PageResult {
    a.require(Can::EditLedger)?;
    let l = a.lang;
    let Some((cat, sh)) = find_sheet(&sheet).filter(|_| safe_id(&org)) else {
        return Err(PageError::not_found(l));
    };
    let services = services_of(cat, f.get("services").map(String::as_str).unwrap_or(""), l)?;
    let mut answers = Vec::new();
    for (item, role) in cat.applicable(sh, &services) {
        let key = format!("{}:{}", item.id, role);
        let Some(value) = f.get(&format!("v:{key}")) else {
            continue;
        };
        let note = f
            .get(&format!("n:{key}"))
            .map(|n| n.trim().to_string())
            .unwrap_or_default();
        answers.push(json!({"item": item.id, "role": role, "value": value, "note": note}));
    }
    c.post_json(
        &a,
        &format!("/api/v1/orgs/{org}/checksheets"),
        json!({"catalogue": cat.catalogue, "version": cat.version, "sheet": sh.id,
            "services": services, "answers": answers}),
    )
    .await?;
    Ok(Redirect::to(&ledger_url(&org)).into_response())
}
