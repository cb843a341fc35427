//! The hospital's ledger (R-SVC-2, seed 004, the MHLW checklist): its connections
//! outside dodvpn and its equipment, read and written as CSV that Japanese Excel opens,
//! with review dates; and its network diagram as Graphviz DOT.
//!
//! Sans-IO: the centre stores the rows and runs `dot`; this crate only checks, encodes
//! and draws. Connections that run through dodvpn are not typed in here: the centre
//! derives them from its grants.

mod csv_io;
mod diagram;
mod rows;

pub use csv_io::{decode_text, from_csv, to_csv, CsvError, CsvTable};
pub use diagram::{Diagram, Edge, EdgeState, Node, NodeKind};
pub use rows::{
    parse_addresses, review_overdue, Date, Equipment, EquipmentCategory, External, ExternalKind,
    RowError, MAX_ADDRESSES,
};
