//! The rows a person types in: connections outside dodvpn, and equipment.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// A calendar date, `YYYY-MM-DD`, checked (no 2025-02-30).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Date(time::Date);

impl Date {
    pub fn parse(s: &str) -> Result<Date, String> {
        let bad = || format!("{s:?} is not a date YYYY-MM-DD / 日付 YYYY-MM-DD ではありません");
        let mut it = s.trim().splitn(3, '-');
        let mut num = |len: usize| -> Result<i32, String> {
            let p = it.next().ok_or_else(bad)?;
            if p.len() != len || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let (y, m, d) = (num(4)?, num(2)?, num(2)?);
        let month = time::Month::try_from(m as u8).map_err(|_| bad())?;
        time::Date::from_calendar_date(y, month, d as u8)
            .map(Date)
            .map_err(|_| bad())
    }

    /// The date `ms` milliseconds after the Unix epoch (UTC).
    pub fn from_unix_ms(ms: i64) -> Date {
        let d = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        Date(d.date())
    }

    pub fn days_until(self, later: Date) -> i64 {
        (later.0 - self.0).whole_days()
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.0.year(),
            self.0.month() as u8,
            self.0.day()
        )
    }
}

impl TryFrom<String> for Date {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Date::parse(&s)
    }
}

impl From<Date> for String {
    fn from(d: Date) -> String {
        d.to_string()
    }
}

/// A row is due for review a year after it was last reviewed.
pub fn review_overdue(last_reviewed: Date, today: Date) -> bool {
    last_reviewed.days_until(today) > 365
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExternalKind {
    /// A vendor's own VPN appliance (the 2022 Osaka case came in through one).
    VendorVpn,
    LeasedLine,
    Internet,
    RemoteMaintenance,
    Other,
}

impl ExternalKind {
    pub const ALL: [ExternalKind; 5] = [
        Self::VendorVpn,
        Self::LeasedLine,
        Self::Internet,
        Self::RemoteMaintenance,
        Self::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::VendorVpn => "vendor-vpn",
            Self::LeasedLine => "leased-line",
            Self::Internet => "internet",
            Self::RemoteMaintenance => "remote-maintenance",
            Self::Other => "other",
        }
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            Self::VendorVpn => "事業者のVPN装置",
            Self::LeasedLine => "専用線",
            Self::Internet => "インターネット回線",
            Self::RemoteMaintenance => "リモート保守装置",
            Self::Other => "その他",
        }
    }

    pub fn parse(s: &str) -> Option<ExternalKind> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s.trim() || k.label_ja() == s.trim())
    }
}

/// A connection outside dodvpn, typed in by the organisation. Always shown as
/// "outside DOD-VPN", with the recommendation to bring it in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct External {
    /// The organisation's own reference for the row, unique within it.
    pub id: String,
    pub kind: ExternalKind,
    /// The contractor at the other end (vendor, carrier…).
    pub contractor: String,
    #[serde(default)]
    pub contract_ref: String,
    #[serde(default)]
    pub device_model: String,
    #[serde(default)]
    pub firmware: String,
    /// Where it terminates inside the organisation (room, rack, host).
    #[serde(default)]
    pub terminates_at: String,
    pub responsible: String,
    pub last_reviewed: Date,
    /// Public addresses where this connection's equipment answers from the Internet
    /// (a VPN appliance's WAN side, say): an exposure diagnosis of the organisation
    /// files its findings on these addresses under this row.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EquipmentCategory {
    Server,
    Terminal,
    Network,
}

impl EquipmentCategory {
    pub const ALL: [EquipmentCategory; 3] = [Self::Server, Self::Terminal, Self::Network];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Terminal => "terminal",
            Self::Network => "network",
        }
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            Self::Server => "サーバ",
            Self::Terminal => "端末",
            Self::Network => "ネットワーク機器",
        }
    }

    pub fn parse(s: &str) -> Option<EquipmentCategory> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s.trim() || k.label_ja() == s.trim())
    }
}

/// One server, terminal or network device, as the MHLW checklist asks them listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Equipment {
    pub id: String,
    pub category: EquipmentCategory,
    pub name: String,
    pub location: String,
    pub owner: String,
    #[serde(default)]
    pub model: String,
    /// OS or firmware version.
    #[serde(default)]
    pub os_version: String,
    pub remote_maintenance: bool,
    #[serde(default)]
    pub vendor: String,
    pub last_reviewed: Date,
    /// Public addresses of the device, as for [`External::addresses`].
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
}

/// Why a row was refused: which field, and why, in both languages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Longest free-text field.
pub const MAX_FIELD: usize = 200;
/// Most public addresses on one row.
pub const MAX_ADDRESSES: usize = 16;

/// Addresses as one cell: separated by spaces, commas or "、".
pub fn parse_addresses(cell: &str) -> Result<Vec<IpAddr>, RowError> {
    let mut out = Vec::new();
    for part in cell
        .split(|c: char| c.is_whitespace() || c == ',' || c == '、')
        .filter(|p| !p.is_empty())
    {
        let a: IpAddr = part.parse().map_err(|_| RowError {
            field: "addresses",
            message: format!("{part:?} is not an IP address / IP アドレスではありません"),
        })?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    check_addresses(&out)?;
    Ok(out)
}

pub fn addresses_cell(a: &[IpAddr]) -> String {
    a.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn check_addresses(a: &[IpAddr]) -> Result<(), RowError> {
    if a.len() > MAX_ADDRESSES {
        return Err(RowError {
            field: "addresses",
            message: format!(
                "at most {MAX_ADDRESSES} addresses per row / 1 行あたりのアドレスは {MAX_ADDRESSES} 個までです"
            ),
        });
    }
    Ok(())
}

pub(crate) fn check_field(field: &'static str, v: &str, required: bool) -> Result<(), RowError> {
    let err = |message: String| Err(RowError { field, message });
    if required && v.trim().is_empty() {
        return err("is required / 必須です".into());
    }
    if v.chars().count() > MAX_FIELD || v.chars().any(char::is_control) {
        return err(format!("must be at most {MAX_FIELD} printable characters / {MAX_FIELD} 文字以内の印字可能文字にしてください"));
    }
    Ok(())
}

impl External {
    pub fn check(&self) -> Result<(), RowError> {
        check_field("id", &self.id, true)?;
        check_field("contractor", &self.contractor, true)?;
        check_field("contract_ref", &self.contract_ref, false)?;
        check_field("device_model", &self.device_model, false)?;
        check_field("firmware", &self.firmware, false)?;
        check_field("terminates_at", &self.terminates_at, false)?;
        check_field("responsible", &self.responsible, true)?;
        check_addresses(&self.addresses)
    }
}

impl Equipment {
    pub fn check(&self) -> Result<(), RowError> {
        check_field("id", &self.id, true)?;
        check_field("name", &self.name, true)?;
        check_field("location", &self.location, true)?;
        check_field("owner", &self.owner, true)?;
        check_field("model", &self.model, false)?;
        check_field("os_version", &self.os_version, false)?;
        check_field("vendor", &self.vendor, false)?;
        check_addresses(&self.addresses)
    }
}
