//! The security check sheets (R-SVC-3) as versioned data: the three sheets of
//! ISO/TR 11636 Annex C and the MHLW checklist, which items apply to an organisation,
//! and the score, gaps and changes of its answers.
//!
//! The sheets live in `checksheets/*.toml` at the repository root and are compiled in,
//! so a centre always knows exactly which version it scores against. Sans-IO: the
//! centre stores submissions; this crate only judges them.

mod catalogue;
mod submission;

pub use catalogue::{builtin, Applies, Catalogue, CatalogueError, Item, Section, Sheet, Text};
pub use submission::{
    compare, score, Answer, AnswerValue, Change, Gap, GapReason, Score, Submission, SubmissionError,
};
