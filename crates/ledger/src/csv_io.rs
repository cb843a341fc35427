//! CSV in and out. Export is UTF-8 with a byte-order mark, because Japanese Excel
//! reads a file without one as Shift_JIS; import takes UTF-8 (with or without the
//! mark) or Shift_JIS. An import is all or nothing: the first bad cell is named by
//! line and column, and no row is returned.

use crate::rows::{
    addresses_cell, parse_addresses, Date, Equipment, EquipmentCategory, External, ExternalKind,
    RowError,
};
use std::collections::HashMap;
use std::fmt;

const BOM: &[u8] = b"\xEF\xBB\xBF";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvError {
    /// 1-based line of the file (the header is line 1); 0 = the file as a whole.
    pub line: u64,
    /// 1-based column, when one cell is to blame.
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}", self.message),
            (l, Some(c)) => write!(
                f,
                "line {l}, column {c} / {l} 行目 {c} 列目: {}",
                self.message
            ),
            (l, None) => write!(f, "line {l} / {l} 行目: {}", self.message),
        }
    }
}

impl std::error::Error for CsvError {}

/// A kind of row that travels as CSV.
pub trait CsvTable: Sized {
    /// (key, Japanese label) of every column, in export order.
    const COLUMNS: &'static [(&'static str, &'static str)];
    fn id(&self) -> &str;
    /// The row's own limits (required fields, lengths), however it arrived.
    fn check(&self) -> Result<(), RowError>;
    fn to_record(&self) -> Vec<String>;
    /// Build a row from its cells by key; the error names the key.
    fn from_cells(cell: &dyn Fn(&'static str) -> String) -> Result<Self, RowError>;
}

/// Bytes as text: UTF-8 (a leading BOM is dropped) or else Shift_JIS.
pub fn decode_text(bytes: &[u8]) -> Result<String, CsvError> {
    let body = bytes.strip_prefix(BOM).unwrap_or(bytes);
    if let Ok(s) = std::str::from_utf8(body) {
        return Ok(s.to_string());
    }
    let (text, _, had_errors) = encoding_rs::SHIFT_JIS.decode(body);
    if had_errors {
        return Err(CsvError {
            line: 0,
            column: None,
            message: "the file is neither UTF-8 nor Shift_JIS / ファイルが UTF-8 でも Shift_JIS でもありません".into(),
        });
    }
    Ok(text.into_owned())
}

/// Rows as CSV for Excel: BOM, a header of "label (key)" cells, CRLF line ends.
pub fn to_csv<T: CsvTable>(rows: &[T]) -> Vec<u8> {
    let mut out = BOM.to_vec();
    {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(&mut out);
        let header: Vec<String> = T::COLUMNS
            .iter()
            .map(|(k, ja)| format!("{ja} ({k})"))
            .collect();
        // Writing to a Vec cannot fail.
        let _ = w.write_record(&header);
        for r in rows {
            let _ = w.write_record(r.to_record());
        }
        let _ = w.flush();
    }
    out
}

/// Read rows from a CSV file's bytes; see the module comment.
pub fn from_csv<T: CsvTable>(bytes: &[u8]) -> Result<Vec<T>, CsvError> {
    let text = decode_text(bytes)?;
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(text.as_bytes());
    let header = r.headers().map_err(csv_err)?.clone();
    let mut index: HashMap<&'static str, usize> = HashMap::new();
    for (i, cell) in header.iter().enumerate() {
        let cell = cell.trim();
        let key = T::COLUMNS
            .iter()
            .find(|(k, ja)| cell == *k || cell == *ja || cell == format!("{ja} ({k})"))
            .map(|(k, _)| *k)
            .ok_or_else(|| CsvError {
                line: 1,
                column: Some(i + 1),
                message: format!("unknown column {cell:?} / 不明な列です"),
            })?;
        if index.insert(key, i).is_some() {
            return Err(CsvError {
                line: 1,
                column: Some(i + 1),
                message: format!("column {key} appears twice / 列 {key} が重複しています"),
            });
        }
    }
    let mut rows: Vec<T> = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for rec in r.records() {
        let rec = rec.map_err(csv_err)?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let cell = |k: &'static str| {
            index
                .get(k)
                .and_then(|i| rec.get(*i))
                .unwrap_or("")
                .trim()
                .to_string()
        };
        let row = T::from_cells(&cell).map_err(|e| CsvError {
            line,
            column: index.get(e.field).map(|i| i + 1),
            message: e.to_string(),
        })?;
        if let Some(first) = seen.insert(row.id().to_string(), line) {
            return Err(CsvError {
                line,
                column: index.get("id").map(|i| i + 1),
                message: format!(
                    "id {} repeats line {first} / ID {} は {first} 行目と重複しています",
                    row.id(),
                    row.id()
                ),
            });
        }
        rows.push(row);
    }
    Ok(rows)
}

fn csv_err(e: csv::Error) -> CsvError {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("{len} cells where the header has {expected_len} / ヘッダーは {expected_len} 列ですが {len} 列あります")
        }
        _ => format!("unreadable CSV: {e} / CSV を読めません"),
    };
    CsvError {
        line,
        column: None,
        message,
    }
}

fn date(cell: &dyn Fn(&'static str) -> String, field: &'static str) -> Result<Date, RowError> {
    Date::parse(&cell(field)).map_err(|message| RowError { field, message })
}

fn flag(cell: &dyn Fn(&'static str) -> String, field: &'static str) -> Result<bool, RowError> {
    match cell(field).to_lowercase().as_str() {
        "yes" | "true" | "1" | "有" | "あり" | "はい" => Ok(true),
        "no" | "false" | "0" | "無" | "なし" | "いいえ" => Ok(false),
        other => Err(RowError {
            field,
            message: format!("{other:?} is not yes/no / 有・無 で答えてください"),
        }),
    }
}

impl CsvTable for External {
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("id", "管理番号"),
        ("kind", "種別"),
        ("contractor", "契約先"),
        ("contract_ref", "契約番号"),
        ("device_model", "機種"),
        ("firmware", "ファームウェア版"),
        ("terminates_at", "終端場所"),
        ("responsible", "責任者"),
        ("last_reviewed", "最終確認日"),
        ("addresses", "公開アドレス"),
    ];

    fn id(&self) -> &str {
        &self.id
    }

    fn check(&self) -> Result<(), RowError> {
        Self::check(self)
    }

    fn to_record(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.kind.as_str().into(),
            self.contractor.clone(),
            self.contract_ref.clone(),
            self.device_model.clone(),
            self.firmware.clone(),
            self.terminates_at.clone(),
            self.responsible.clone(),
            self.last_reviewed.to_string(),
            addresses_cell(&self.addresses),
        ]
    }

    fn from_cells(cell: &dyn Fn(&'static str) -> String) -> Result<Self, RowError> {
        let kind = ExternalKind::parse(&cell("kind")).ok_or_else(|| RowError {
            field: "kind",
            message: format!(
                "{:?} is not one of {} / 種別が不正です",
                cell("kind"),
                ExternalKind::ALL.map(|k| k.as_str()).join(", ")
            ),
        })?;
        let row = External {
            id: cell("id"),
            kind,
            contractor: cell("contractor"),
            contract_ref: cell("contract_ref"),
            device_model: cell("device_model"),
            firmware: cell("firmware"),
            terminates_at: cell("terminates_at"),
            responsible: cell("responsible"),
            last_reviewed: date(cell, "last_reviewed")?,
            addresses: parse_addresses(&cell("addresses"))?,
        };
        row.check()?;
        Ok(row)
    }
}

impl CsvTable for Equipment {
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("id", "管理番号"),
        ("category", "区分"),
        ("name", "名称"),
        ("location", "設置場所"),
        ("owner", "管理者"),
        ("model", "機種"),
        ("os_version", "OS・ファームウェア版"),
        ("remote_maintenance", "リモート保守"),
        ("vendor", "保守事業者"),
        ("last_reviewed", "最終確認日"),
        ("addresses", "公開アドレス"),
    ];

    fn id(&self) -> &str {
        &self.id
    }

    fn check(&self) -> Result<(), RowError> {
        Self::check(self)
    }

    fn to_record(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.category.as_str().into(),
            self.name.clone(),
            self.location.clone(),
            self.owner.clone(),
            self.model.clone(),
            self.os_version.clone(),
            if self.remote_maintenance { "yes" } else { "no" }.into(),
            self.vendor.clone(),
            self.last_reviewed.to_string(),
            addresses_cell(&self.addresses),
        ]
    }

    fn from_cells(cell: &dyn Fn(&'static str) -> String) -> Result<Self, RowError> {
        let category = EquipmentCategory::parse(&cell("category")).ok_or_else(|| RowError {
            field: "category",
            message: format!(
                "{:?} is not server, terminal or network / 区分が不正です",
                cell("category")
            ),
        })?;
        let row = Equipment {
            id: cell("id"),
            category,
            name: cell("name"),
            location: cell("location"),
            owner: cell("owner"),
            model: cell("model"),
            os_version: cell("os_version"),
            remote_maintenance: flag(cell, "remote_maintenance")?,
            vendor: cell("vendor"),
            last_reviewed: date(cell, "last_reviewed")?,
            addresses: parse_addresses(&cell("addresses"))?,
        };
        row.check()?;
        Ok(row)
    }
}
