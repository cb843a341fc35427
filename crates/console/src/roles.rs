//! Who may do what in the console (issue 10 table). Deny by default: an action not
//! listed for a role is refused, and every handler asks before it acts.

use dodvpn_center::auth::Caller;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    ProviderAdmin,
    ProviderOperator,
    Auditor,
    DeviceProvider,
    OrgAdmin,
    OrgApprover,
}

pub const ALL: [Role; 6] = [
    Role::ProviderAdmin,
    Role::ProviderOperator,
    Role::Auditor,
    Role::DeviceProvider,
    Role::OrgAdmin,
    Role::OrgApprover,
];

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ProviderAdmin => "provider_admin",
            Role::ProviderOperator => "provider_operator",
            Role::Auditor => "auditor",
            Role::DeviceProvider => "device_provider",
            Role::OrgAdmin => "org_admin",
            Role::OrgApprover => "org_approver",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether the role may be held provider-wide (no organisation) / must name one.
    pub fn scope_ok(self, org: Option<&str>) -> bool {
        match self {
            Role::ProviderAdmin | Role::ProviderOperator => org.is_none(),
            Role::Auditor => true,
            Role::DeviceProvider | Role::OrgAdmin | Role::OrgApprover => org.is_some(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Can {
    ViewOverview,
    ViewOrgs,
    ManageUsers,
    ViewDevices,
    RevokeDevice,
    ViewSessions,
    CutSession,
    ViewAudit,
    ViewApprovals,
    ManageApprovals,
    /// The connection ledger, diagram, check sheets and the inspector's report (issue 11).
    ViewLedger,
    /// Change the ledger's hand-kept rows and answer check sheets (organisation admins
    /// for their own organisation, provider admins).
    EditLedger,
    /// Grants and their signed connection info.
    ViewGrants,
    WithdrawGrant,
    /// The subscriber policy: read, and edit (with its dry run).
    ViewPolicy,
    EditPolicy,
    /// The gateway centre: applications for sites, decisions, the request log.
    ViewGateway,
    ApplyGateway,
    DecideGateway,
}

pub fn may(role: Role, can: Can) -> bool {
    use Can::*;
    match role {
        Role::ProviderAdmin => true,
        Role::ProviderOperator => matches!(
            can,
            ViewOverview
                | ViewOrgs
                | ViewDevices
                | RevokeDevice
                | ViewSessions
                | CutSession
                | ViewApprovals
                | ViewGrants
                | ViewGateway
        ),
        Role::Auditor => matches!(
            can,
            ViewOverview
                | ViewOrgs
                | ViewDevices
                | ViewSessions
                | ViewAudit
                | ViewApprovals
                | ViewLedger
                | ViewGrants
                | ViewPolicy
                | ViewGateway
        ),
        Role::DeviceProvider => matches!(can, ViewOverview | ViewDevices),
        Role::OrgAdmin => true,
        Role::OrgApprover => matches!(
            can,
            ViewOverview | ViewApprovals | ManageApprovals | ViewGateway | ApplyGateway
        ),
    }
}

/// The roles `inviter` may hand out, and in which organisation.
pub fn may_invite(inviter: Role, inviter_org: Option<&str>, role: Role, org: Option<&str>) -> bool {
    if !role.scope_ok(org) {
        return false;
    }
    match inviter {
        Role::ProviderAdmin => true,
        Role::OrgAdmin => {
            matches!(role, Role::OrgAdmin | Role::OrgApprover | Role::Auditor)
                && org.is_some()
                && org == inviter_org
        }
        _ => false,
    }
}

/// The API caller a console user acts as: the provider, or its organisation's
/// administrator. Reads and writes the console forwards are limited by [`may`] first.
pub fn caller(user_id: &str, org: Option<&str>) -> Caller {
    let admin_id = format!("console/{user_id}");
    match org {
        None => Caller::Provider { admin_id },
        Some(org) => Caller::OrgAdmin {
            admin_id,
            org_id: org.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_issue_10() {
        assert!(may(Role::ProviderOperator, Can::CutSession));
        assert!(!may(Role::ProviderOperator, Can::ManageUsers));
        assert!(!may(Role::Auditor, Can::RevokeDevice));
        assert!(!may(Role::Auditor, Can::CutSession));
        assert!(may(Role::Auditor, Can::ViewAudit));
        assert!(!may(Role::OrgApprover, Can::ViewDevices));
        assert!(may(Role::OrgApprover, Can::ManageApprovals));
        assert!(!may(Role::DeviceProvider, Can::ViewAudit));
        assert!(may(Role::Auditor, Can::ViewLedger));
        assert!(!may(Role::Auditor, Can::EditLedger));
        assert!(!may(Role::ProviderOperator, Can::EditLedger));
        assert!(!may(Role::OrgApprover, Can::EditLedger));
        assert!(may(Role::OrgAdmin, Can::EditLedger));
        assert!(!may(Role::OrgApprover, Can::ViewLedger));
        assert!(!may(Role::ProviderOperator, Can::ViewLedger));
        // "provider operator: sessions, cut, devices; no policy".
        assert!(!may(Role::ProviderOperator, Can::ViewPolicy));
        assert!(!may(Role::ProviderOperator, Can::EditPolicy));
        assert!(!may(Role::ProviderOperator, Can::WithdrawGrant));
        assert!(may(Role::Auditor, Can::ViewPolicy));
        assert!(!may(Role::Auditor, Can::EditPolicy));
        assert!(!may(Role::OrgApprover, Can::ViewGrants));
        assert!(may(Role::OrgAdmin, Can::EditPolicy));
        // Any of the organisation's users may ask for a site; its admin decides.
        assert!(may(Role::OrgApprover, Can::ApplyGateway));
        assert!(!may(Role::OrgApprover, Can::DecideGateway));
        assert!(may(Role::OrgAdmin, Can::DecideGateway));
        assert!(!may(Role::Auditor, Can::ApplyGateway));
        assert!(!may(Role::ProviderOperator, Can::DecideGateway));
    }

    #[test]
    fn invitations_stay_in_their_organisation() {
        assert!(may_invite(
            Role::OrgAdmin,
            Some("org-a"),
            Role::OrgApprover,
            Some("org-a")
        ));
        assert!(!may_invite(
            Role::OrgAdmin,
            Some("org-a"),
            Role::OrgApprover,
            Some("org-b")
        ));
        assert!(!may_invite(
            Role::OrgAdmin,
            Some("org-a"),
            Role::ProviderAdmin,
            None
        ));
        assert!(!may_invite(Role::ProviderAdmin, None, Role::OrgAdmin, None));
        assert!(!may_invite(Role::Auditor, None, Role::Auditor, None));
        assert!(may_invite(Role::ProviderAdmin, None, Role::Auditor, None));
    }
}
