//! The gateway centre's node (R-SVC-1; TR 5.1 b, C 4-8-1/4-8-2, 3-6-1): an HTTP
//! forward proxy for member sites, reachable only over their tunnels. The decisions
//! are `dodvpn-gateway`'s (sans-IO); this crate holds the I/O around them: the
//! proxy ([`proxy`]), who is asking ([`members`]), the compiled policy ([`policy`]),
//! the request log ([`log`]), the refusal page ([`page`]) and the glue with the
//! centre and the agent ([`node`]).

pub mod log;
pub mod members;
pub mod node;
pub mod page;
pub mod policy;
pub mod proxy;
