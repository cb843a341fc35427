//! The life of a VPN device at the centre (ISO/TR 11636 D.6 c–l), and the only moves
//! between its states. The database holds the same set of names under a CHECK
//! constraint (migration 0004), so no other value can be stored either.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// c: the device provider registered it (serial, model, owner).
    Registered,
    /// d: the device CA issued its tier-1 certificate.
    Certified,
    /// e: the certificate is confirmed in the device's key store.
    Installed,
    /// f: the subscriber received the device.
    Delivered,
    /// g: the subscriber applied for VPN service.
    ServiceApplied,
    /// h: the provider approved service.
    ServiceApproved,
    /// i: the device obtained its tier-2 service certificate.
    Enrolled,
    /// j: the service certificate is confirmed installed.
    ServiceInstalled,
    /// l: the provider started service.
    InService,
    /// Service stopped; may be started again.
    Suspended,
    /// Every certificate revoked; final.
    Revoked,
}

use DeviceState::*;

impl DeviceState {
    pub const ALL: [DeviceState; 11] = [
        Registered,
        Certified,
        Installed,
        Delivered,
        ServiceApplied,
        ServiceApproved,
        Enrolled,
        ServiceInstalled,
        InService,
        Suspended,
        Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Registered => "registered",
            Certified => "certified",
            Installed => "installed",
            Delivered => "delivered",
            ServiceApplied => "service_applied",
            ServiceApproved => "service_approved",
            Enrolled => "enrolled",
            ServiceInstalled => "service_installed",
            InService => "in_service",
            Suspended => "suspended",
            Revoked => "revoked",
        }
    }

    /// The states a device may move to `to` from. Revocation is allowed from every
    /// state, itself included (revoking twice changes nothing).
    pub fn sources(to: DeviceState) -> &'static [DeviceState] {
        match to {
            Registered => &[],
            Certified => &[Registered],
            Installed => &[Certified],
            Delivered => &[Installed],
            ServiceApplied => &[Delivered],
            ServiceApproved => &[ServiceApplied],
            Enrolled => &[ServiceApproved],
            ServiceInstalled => &[Enrolled],
            InService => &[ServiceInstalled, Suspended],
            Suspended => &[InService],
            Revoked => &DeviceState::ALL,
        }
    }

    pub fn may_become(self, to: DeviceState) -> bool {
        Self::sources(to).contains(&self)
    }

    /// Holds a service certificate, so it may renew it (R-PKI-4).
    pub fn is_enrolled(self) -> bool {
        matches!(self, Enrolled | ServiceInstalled | InService | Suspended)
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown device state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for DeviceState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, UnknownState> {
        DeviceState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

impl From<UnknownState> for crate::error::ApiError {
    fn from(e: UnknownState) -> Self {
        tracing::error!(error = %e, "stored device state unreadable");
        crate::error::ApiError::internal("stored device state unreadable")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for st in DeviceState::ALL {
            assert_eq!(st.as_str().parse::<DeviceState>().unwrap(), st);
            assert_eq!(
                serde_json::to_value(st).unwrap(),
                serde_json::json!(st.as_str())
            );
        }
        assert!("in-service".parse::<DeviceState>().is_err());
    }

    #[test]
    fn d6_path_is_the_only_forward_path() {
        let path = [
            Registered,
            Certified,
            Installed,
            Delivered,
            ServiceApplied,
            ServiceApproved,
            Enrolled,
            ServiceInstalled,
            InService,
        ];
        for w in path.windows(2) {
            assert!(w[0].may_become(w[1]), "{} -> {}", w[0], w[1]);
        }
        // No skipping ahead, no going back.
        for (i, from) in path.iter().enumerate() {
            for (j, to) in path.iter().enumerate() {
                if j != i + 1 {
                    assert!(!from.may_become(*to), "{from} -> {to} must be refused");
                }
            }
        }
        assert!(InService.may_become(Suspended) && Suspended.may_become(InService));
        assert!(!Suspended.may_become(ServiceInstalled));
        for st in DeviceState::ALL {
            assert!(st.may_become(Revoked));
            if st != Revoked {
                assert!(!Revoked.may_become(st), "revoked is final");
            }
        }
    }

    /// The CHECK constraint of migration 0004 lists exactly these names.
    #[test]
    fn migration_check_lists_every_state() {
        let sql = include_str!("../migrations/0004_device_state.sql");
        let check = sql
            .split("CHECK (status IN (")
            .nth(1)
            .and_then(|s| s.split("))").next())
            .expect("CHECK constraint in migration 0004");
        let mut listed: Vec<&str> = check
            .split(',')
            .map(|s| s.trim().trim_matches('\''))
            .collect();
        listed.sort();
        let mut names: Vec<&str> = DeviceState::ALL.iter().map(|s| s.as_str()).collect();
        names.sort();
        assert_eq!(listed, names);
    }
}
