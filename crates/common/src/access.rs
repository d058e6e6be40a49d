//! Who may do what: the six roles, the permissions they grant, and the matrix between them.
//!
//! Every API route requires exactly one [`Permission`]; a user holds the permissions of
//! their [`Role`] ([`Role::permissions`]), and an API token holds the intersection of its
//! owner's role and the scopes it was created with. The matrix is data, not code spread
//! over handlers: `docs/API.md` prints it and the gateway's route × role test walks it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::UnknownVariant;
use crate::domain::wire_enum;

wire_enum!(
    /// A user's role. Fixed vocabulary (the `roles` table holds the same names).
    Role: "role" {
        /// Full control, including users and system settings.
        SuperAdmin => "super_admin",
        /// Manages hosts, credentials, scans, exceptions and alerts.
        SecurityAdmin => "security_admin",
        /// Runs scans and triages findings and alerts.
        SecurityAnalyst => "security_analyst",
        /// Reviews posture and decides on exceptions.
        ComplianceOfficer => "compliance_officer",
        /// Read-only access to posture, findings and the audit log.
        Auditor => "auditor",
        /// Read-only access to dashboards (hosts, scans, posture, rules).
        Guest => "guest",
    }
);

wire_enum!(
    /// One thing a principal may do. Spelled `resource:action`; these strings are the
    /// scopes of API tokens and the security scopes in the OpenAPI document.
    Permission: "permission" {
        /// Own profile, own password, own MFA and own API tokens.
        ProfileSelf => "profile:self",
        /// List and read user accounts.
        UsersRead => "users:read",
        /// Create, change, disable and delete user accounts.
        UsersWrite => "users:write",
        /// Read hosts, host groups and maintenance windows.
        HostsRead => "hosts:read",
        /// Create, change, import and delete hosts, groups and maintenance windows.
        HostsWrite => "hosts:write",
        /// Read credential metadata (never the secret).
        CredentialsRead => "credentials:read",
        /// Create, replace and delete credentials.
        CredentialsWrite => "credentials:write",
        /// Read recorded SSH host keys.
        KnownHostsRead => "known_hosts:read",
        /// Approve and revoke SSH host keys.
        KnownHostsWrite => "known_hosts:write",
        /// Read scans and their progress.
        ScansRead => "scans:read",
        /// Request and cancel scans.
        ScansWrite => "scans:write",
        /// Read findings and evidence (scan findings and the per-host "now" view).
        FindingsRead => "findings:read",
        /// Read posture, history, drift and rankings.
        ComplianceRead => "compliance:read",
        /// Read alerts.
        AlertsRead => "alerts:read",
        /// Acknowledge and resolve alerts.
        AlertsWrite => "alerts:write",
        /// Read exceptions.
        ExceptionsRead => "exceptions:read",
        /// Request an exception.
        ExceptionsRequest => "exceptions:request",
        /// Approve, reject and revoke exceptions (never one's own request).
        ExceptionsApprove => "exceptions:approve",
        /// Query and export the audit log.
        AuditRead => "audit:read",
        /// Read the rule catalogue and framework coverage.
        RulesRead => "rules:read",
        /// Read the scheduler configuration.
        SchedulerRead => "scheduler:read",
        /// Change the scheduler configuration.
        SchedulerWrite => "scheduler:write",
    }
);

impl Role {
    /// The permissions this role grants. The one place the matrix is defined.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::SuperAdmin => Permission::ALL,
            Role::SecurityAdmin => &[
                ProfileSelf,
                UsersRead,
                HostsRead,
                HostsWrite,
                CredentialsRead,
                CredentialsWrite,
                KnownHostsRead,
                KnownHostsWrite,
                ScansRead,
                ScansWrite,
                FindingsRead,
                ComplianceRead,
                AlertsRead,
                AlertsWrite,
                ExceptionsRead,
                ExceptionsRequest,
                ExceptionsApprove,
                AuditRead,
                RulesRead,
                SchedulerRead,
                SchedulerWrite,
            ],
            Role::SecurityAnalyst => &[
                ProfileSelf,
                HostsRead,
                CredentialsRead,
                KnownHostsRead,
                ScansRead,
                ScansWrite,
                FindingsRead,
                ComplianceRead,
                AlertsRead,
                AlertsWrite,
                ExceptionsRead,
                ExceptionsRequest,
                RulesRead,
                SchedulerRead,
            ],
            Role::ComplianceOfficer => &[
                ProfileSelf,
                HostsRead,
                ScansRead,
                FindingsRead,
                ComplianceRead,
                AlertsRead,
                ExceptionsRead,
                ExceptionsRequest,
                ExceptionsApprove,
                AuditRead,
                RulesRead,
                SchedulerRead,
            ],
            Role::Auditor => &[
                ProfileSelf,
                HostsRead,
                KnownHostsRead,
                ScansRead,
                FindingsRead,
                ComplianceRead,
                AlertsRead,
                ExceptionsRead,
                AuditRead,
                RulesRead,
                SchedulerRead,
            ],
            Role::Guest => &[ProfileSelf, HostsRead, ScansRead, ComplianceRead, RulesRead],
        }
    }

    /// Whether this role grants `permission`.
    pub fn allows(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn super_admin_holds_every_permission_and_guest_cannot_write() {
        assert!(Permission::ALL.iter().all(|p| Role::SuperAdmin.allows(*p)));
        assert!(
            Role::Guest
                .permissions()
                .iter()
                .all(|p| p.as_str().ends_with(":read") || *p == Permission::ProfileSelf)
        );
    }

    #[test]
    fn every_role_may_manage_its_own_profile_and_only_super_admin_manages_users() {
        for role in Role::ALL {
            assert!(role.allows(Permission::ProfileSelf), "{role}");
            assert_eq!(role.allows(Permission::UsersWrite), *role == Role::SuperAdmin, "{role}");
        }
    }

    #[test]
    fn permissions_round_trip_their_spelling() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>(), Ok(*p));
        }
        assert!("hosts:delete".parse::<Permission>().is_err());
    }

    #[test]
    fn roles_list_no_permission_twice() {
        for role in Role::ALL {
            let mut seen = role.permissions().to_vec();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), role.permissions().len(), "{role}");
        }
    }
}
