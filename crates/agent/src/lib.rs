//! The VPN device side of the DOD-VPN (TR D.5, D.6): provisioning of the tier-1
//! certificate, enrolment for the tier-2 service certificate, and the sync loop that
//! keeps the device's signed connection info current from the centre's push stream.

pub mod candidates;
pub mod client;
pub mod enroll;
pub mod firewall;
pub mod mailbox;
pub mod metrics;
pub mod run;
pub mod signer;
pub mod sse;
pub mod sync;
pub mod tunnels;
pub mod witness;

pub use client::CenterClient;
