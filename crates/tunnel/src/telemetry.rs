//! What the tunnel core tells an embedding program's metrics (the agent's `/metrics`,
//! crates/agent/src/metrics.rs) as it happens: handshakes and rekeys. Traffic is not
//! reported here; it is read from the status snapshot (`ConnStatus::totals`).

use std::time::Duration;

/// Which side of an IKE SA this end is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Initiator,
    Responder,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Initiator => "initiator",
            Role::Responder => "responder",
        }
    }
}

/// How an IKE SA negotiation (IKE_SA_INIT + IKE_AUTH) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandshakeResult {
    Established,
    /// The peer's certificate or PSK was refused, or it refused ours.
    AuthFailed,
    /// No answer (half-open timeout, retransmissions exhausted) or an error notify.
    Failed,
}

impl HandshakeResult {
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeResult::Established => "established",
            HandshakeResult::AuthFailed => "auth_failed",
            HandshakeResult::Failed => "failed",
        }
    }
}

/// What a rekey replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RekeyKind {
    Ike,
    Child,
}

impl RekeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RekeyKind::Ike => "ike",
            RekeyKind::Child => "child",
        }
    }
}

/// Called on the control thread: implementations must not block.
pub trait Telemetry: Send + Sync {
    /// An IKE SA negotiation of connection `conn` ended after `took` (from the first
    /// IKE_SA_INIT this end sent or received to the result).
    fn handshake(&self, conn: &str, role: Role, result: HandshakeResult, took: Duration);
    /// A rekey of connection `conn` put a new SA in place.
    fn rekey(&self, conn: &str, kind: RekeyKind);
}
