//! An organisation's answers to one sheet, and what follows from them.

use crate::catalogue::{Catalogue, Sheet};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerValue {
    Yes,
    No,
    NotApplicable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub item: String,
    pub role: String,
    pub value: AnswerValue,
    /// The evidence, in the answerer's words or a link the centre filled in.
    #[serde(default)]
    pub note: String,
    /// Name of a stored attachment, if one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<String>,
}

/// One submission: the sheet, the catalogue version it answers, the services the
/// organisation declared (they decide the ▲ items), and the answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    pub catalogue: String,
    pub version: String,
    pub sheet: String,
    #[serde(default)]
    pub services: BTreeSet<String>,
    pub answers: Vec<Answer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmissionError {
    UnknownCatalogue(String),
    /// The sheet changed since the answers were written.
    StaleVersion {
        answered: String,
        current: String,
    },
    UnknownSheet(String),
    UnknownService(String),
    /// An answer to an item the catalogue lacks, or one that does not apply to that
    /// role with the declared services.
    NotAsked {
        item: String,
        role: String,
    },
    Duplicate {
        item: String,
        role: String,
    },
}

impl fmt::Display for SubmissionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownCatalogue(c) => write!(f, "unknown check sheet catalogue {c} / 不明なチェックシート体系です: {c}"),
            Self::StaleVersion { answered, current } => write!(
                f,
                "the answers are for sheet version {answered}, the current one is {current}; answer the current sheet / 回答はチェックシート版 {answered} に対するものです。現行版 {current} に回答してください"
            ),
            Self::UnknownSheet(s) => write!(f, "unknown check sheet {s} / 不明なチェックシートです: {s}"),
            Self::UnknownService(s) => write!(f, "unknown service {s} / 不明なサービスです: {s}"),
            Self::NotAsked { item, role } => write!(
                f,
                "item {item} is not asked of role {role} on this sheet / 項目 {item} はこのシートで役割 {role} には問われていません"
            ),
            Self::Duplicate { item, role } => write!(
                f,
                "item {item} is answered twice for role {role} / 項目 {item}（役割 {role}）に二重に回答しています"
            ),
        }
    }
}

impl std::error::Error for SubmissionError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    AnsweredNo,
    Unanswered,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub item: String,
    pub role: String,
    pub reason: GapReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Score {
    /// (item, role) pairs the sheet asks of this organisation.
    pub asked: usize,
    pub yes: usize,
    pub no: usize,
    pub not_applicable: usize,
    pub unanswered: usize,
    /// Whole percent of the applicable pairs (asked minus not applicable) answered yes,
    /// rounded down so that a pass is never granted by rounding; 100 when nothing applies.
    pub percent: u8,
    pub gaps: Vec<Gap>,
}

fn resolve<'a>(
    catalogues: &'a [Catalogue],
    s: &Submission,
) -> Result<(&'a Catalogue, &'a Sheet), SubmissionError> {
    let cat = catalogues
        .iter()
        .find(|c| c.catalogue == s.catalogue)
        .ok_or_else(|| SubmissionError::UnknownCatalogue(s.catalogue.clone()))?;
    if cat.version != s.version {
        return Err(SubmissionError::StaleVersion {
            answered: s.version.clone(),
            current: cat.version.clone(),
        });
    }
    let sheet = cat
        .sheet(&s.sheet)
        .ok_or_else(|| SubmissionError::UnknownSheet(s.sheet.clone()))?;
    if let Some(svc) = s.services.iter().find(|x| !cat.services.contains_key(*x)) {
        return Err(SubmissionError::UnknownService(svc.clone()));
    }
    Ok((cat, sheet))
}

/// Check a submission against the current catalogues and score it. Refuses stale
/// versions, unknown ids, answers the sheet does not ask for, and duplicates.
pub fn score(catalogues: &[Catalogue], s: &Submission) -> Result<Score, SubmissionError> {
    let (cat, sheet) = resolve(catalogues, s)?;
    let asked = cat.applicable(sheet, &s.services);
    let asked_set: BTreeSet<(&str, &str)> =
        asked.iter().map(|(i, r)| (i.id.as_str(), *r)).collect();
    let mut given: BTreeMap<(&str, &str), AnswerValue> = BTreeMap::new();
    for a in &s.answers {
        let key = (a.item.as_str(), a.role.as_str());
        if !asked_set.contains(&key) {
            return Err(SubmissionError::NotAsked {
                item: a.item.clone(),
                role: a.role.clone(),
            });
        }
        if given.insert(key, a.value).is_some() {
            return Err(SubmissionError::Duplicate {
                item: a.item.clone(),
                role: a.role.clone(),
            });
        }
    }
    let mut sc = Score {
        asked: asked.len(),
        yes: 0,
        no: 0,
        not_applicable: 0,
        unanswered: 0,
        percent: 100,
        gaps: vec![],
    };
    for (item, role) in &asked {
        let gap = |reason| Gap {
            item: item.id.clone(),
            role: role.to_string(),
            reason,
        };
        match given.get(&(item.id.as_str(), *role)) {
            Some(AnswerValue::Yes) => sc.yes += 1,
            Some(AnswerValue::NotApplicable) => sc.not_applicable += 1,
            Some(AnswerValue::No) => {
                sc.no += 1;
                sc.gaps.push(gap(GapReason::AnsweredNo));
            }
            None => {
                sc.unanswered += 1;
                sc.gaps.push(gap(GapReason::Unanswered));
            }
        }
    }
    if let Some(p) = (sc.yes * 100).checked_div(sc.asked - sc.not_applicable) {
        sc.percent = p as u8;
    }
    Ok(sc)
}

/// One answer that differs between two submissions of the same sheet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub item: String,
    pub role: String,
    pub before: Option<AnswerValue>,
    pub after: Option<AnswerValue>,
}

/// What changed from `before` to `after`, item by item (answers only; notes are
/// evidence and do not count as a change of state).
pub fn compare(before: &Submission, after: &Submission) -> Vec<Change> {
    let index = |s: &Submission| -> BTreeMap<(String, String), AnswerValue> {
        s.answers
            .iter()
            .map(|a| ((a.item.clone(), a.role.clone()), a.value))
            .collect()
    };
    let (b, a) = (index(before), index(after));
    let keys: BTreeSet<&(String, String)> = b.keys().chain(a.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (b.get(k).copied(), a.get(k).copied());
            (x != y).then(|| Change {
                item: k.0.clone(),
                role: k.1.clone(),
                before: x,
                after: y,
            })
        })
        .collect()
}
