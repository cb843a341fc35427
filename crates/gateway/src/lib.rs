//! The gateway centre's decisions (R-SVC-1; TR 5.1 b, C 4-8-1, 4-8-2, 3-6-1), sans-IO:
//! which sites an organisation's terminals may reach, whether a TLS connection names
//! the host its CONNECT asked for, and whether an address may be dialled at all. The
//! proxy that moves bytes builds on these and holds no policy of its own.

pub mod addr;
pub mod allowlist;
pub mod feed;
pub mod request;
pub mod sni;

pub use addr::{ip_literal, DialPolicy, Refused};
pub use allowlist::{normal_host, Allowlist, Entry, EntryError, Target, Verdict};
pub use request::{HeadError, ProxyRequest};
pub use sni::{server_name, Sni, SniError};
