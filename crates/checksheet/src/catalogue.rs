//! A catalogue of check items and the sheets drawn from it.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A text in both of the languages every reader of dodvpn gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Text {
    pub ja: String,
    pub en: String,
}

impl Text {
    /// The text in `lang` ("ja" or anything else for English).
    pub fn get(&self, lang: &str) -> &str {
        if lang == "ja" {
            &self.ja
        } else {
            &self.en
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    pub id: String,
    pub title: Text,
}

/// One check item: the TR's id, what it protects, how it is judged.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub id: String,
    pub objective: Text,
    /// The TR's function element (VPN function, zone, gateway function…).
    pub function: Text,
    pub criterion: Text,
    /// References into the MHLW guideline the item comes from.
    pub guideline: Vec<String>,
    /// The fact of the centre's own data that can answer the item, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefill: Option<String>,
}

/// Whether an item applies to a role: always (○), or when the organisation uses or
/// provides any of the named services (▲).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Applies {
    Always(AlwaysWord),
    When(Vec<String>),
}

/// The word `"always"`; any other string is refused when the sheet is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlwaysWord {
    Always,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sheet {
    pub id: String,
    pub name: Text,
    /// Which kind of organisation fills it in (large/small institution, provider…).
    pub kind: String,
    pub roles: Vec<String>,
    /// Keyed by section, item group or item id; the most specific key wins.
    pub rules: BTreeMap<String, BTreeMap<String, Applies>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    /// Stable name of the catalogue, e.g. `tr11636-annex-c`.
    pub catalogue: String,
    /// Answers are kept per version; answers to an older one are refused.
    pub version: String,
    pub services: BTreeMap<String, Text>,
    pub roles: BTreeMap<String, Text>,
    #[serde(rename = "section")]
    pub sections: Vec<Section>,
    #[serde(rename = "item")]
    pub items: Vec<Item>,
    #[serde(rename = "sheet")]
    pub sheets: Vec<Sheet>,
}

/// Why a catalogue file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogueError {
    Syntax(String),
    Invalid(String),
}

impl fmt::Display for CatalogueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(e) => write!(
                f,
                "check sheet file unreadable / チェックシートを読めません: {e}"
            ),
            Self::Invalid(e) => write!(
                f,
                "check sheet file invalid / チェックシートが不正です: {e}"
            ),
        }
    }
}

impl std::error::Error for CatalogueError {}

const BUILTIN: [&str; 2] = [
    include_str!("../../../checksheets/tr-annex-c.toml"),
    include_str!("../../../checksheets/mhlw-checklist.toml"),
];

/// The catalogues this build ships, checked.
pub fn builtin() -> Result<Vec<Catalogue>, CatalogueError> {
    BUILTIN.iter().map(|t| Catalogue::parse(t)).collect()
}

/// `4-7-1` → `4-7` → `4`: the keys a rule for the item may have, most specific first.
pub(crate) fn scopes(id: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(id), |s| s.rfind('-').map(|i| &s[..i]))
}

impl Catalogue {
    /// Read and check a catalogue: ids unique, both languages present, every rule
    /// naming a known section/item, role and service.
    pub fn parse(text: &str) -> Result<Self, CatalogueError> {
        let cat: Catalogue =
            toml::from_str(text).map_err(|e| CatalogueError::Syntax(e.to_string()))?;
        cat.validate()?;
        Ok(cat)
    }

    fn validate(&self) -> Result<(), CatalogueError> {
        let bad = |m: String| Err(CatalogueError::Invalid(format!("{}: {m}", self.catalogue)));
        let texts = self
            .sections
            .iter()
            .map(|s| (&s.id, &s.title))
            .chain(self.items.iter().flat_map(|i| {
                [
                    (&i.id, &i.objective),
                    (&i.id, &i.function),
                    (&i.id, &i.criterion),
                ]
            }))
            .chain(self.sheets.iter().map(|s| (&s.id, &s.name)))
            .chain(self.services.iter().chain(self.roles.iter()));
        for (id, t) in texts {
            if t.ja.trim().is_empty() || t.en.trim().is_empty() {
                return bad(format!("{id} lacks a Japanese or an English text"));
            }
        }
        let sections: BTreeSet<&str> = self.sections.iter().map(|s| s.id.as_str()).collect();
        if sections.len() != self.sections.len() {
            return bad("a section id is repeated".into());
        }
        let mut items = BTreeSet::new();
        for it in &self.items {
            if !items.insert(it.id.as_str()) {
                return bad(format!("item {} is repeated", it.id));
            }
            if !scopes(&it.id).any(|s| sections.contains(s)) {
                return bad(format!("item {} belongs to no section", it.id));
            }
        }
        let mut sheets = BTreeSet::new();
        for sh in &self.sheets {
            if !sheets.insert(sh.id.as_str()) {
                return bad(format!("sheet {} is repeated", sh.id));
            }
            for (key, per_role) in &sh.rules {
                let known = sections.contains(key.as_str())
                    || items.contains(key.as_str())
                    || self.items.iter().any(|i| scopes(&i.id).any(|s| s == key))
                    || scopes(key).skip(1).any(|s| sections.contains(s));
                if !known {
                    return bad(format!(
                        "sheet {}: rule {key} names no section, group or item",
                        sh.id
                    ));
                }
                for (role, applies) in per_role {
                    if !sh.roles.contains(role) || !self.roles.contains_key(role) {
                        return bad(format!(
                            "sheet {}: rule {key} names unknown role {role}",
                            sh.id
                        ));
                    }
                    if let Applies::When(list) = applies {
                        if list.is_empty() {
                            return bad(format!(
                                "sheet {}: rule {key} has an empty service list",
                                sh.id
                            ));
                        }
                        if let Some(s) = list.iter().find(|s| !self.services.contains_key(*s)) {
                            return bad(format!(
                                "sheet {}: rule {key} names unknown service {s}",
                                sh.id
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    pub fn sheet(&self, id: &str) -> Option<&Sheet> {
        self.sheets.iter().find(|s| s.id == id)
    }

    pub fn item(&self, id: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.id == id)
    }

    /// The (item, role) pairs a sheet asks of an organisation with these services,
    /// in catalogue order.
    pub fn applicable<'a>(
        &'a self,
        sheet: &'a Sheet,
        services: &BTreeSet<String>,
    ) -> Vec<(&'a Item, &'a str)> {
        let mut out = Vec::new();
        for item in &self.items {
            // The most specific rule that exists decides, for every role at once.
            let Some(rule) = scopes(&item.id).find_map(|s| sheet.rules.get(s)) else {
                continue;
            };
            for role in &sheet.roles {
                let applies = match rule.get(role) {
                    Some(Applies::Always(_)) => true,
                    Some(Applies::When(list)) => list.iter().any(|s| services.contains(s)),
                    None => false,
                };
                if applies {
                    out.push((item, role.as_str()));
                }
            }
        }
        out
    }
}
