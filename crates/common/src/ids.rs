//! Newtype identifiers.
//!
//! Every entity id is a UUID wrapped in its own type, so a `ScanId` can never be passed
//! where a `HostId` is expected. New ids are UUIDv7 (time ordered), which keeps B-tree
//! indexes on them append-mostly. On the wire (JSON) an id is its plain UUID string.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($($(#[$doc:meta])* $name:ident),+ $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered (UUIDv7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The underlying UUID (for storage layers).
            pub fn into_uuid(self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(value: Uuid) -> Self {
                Self(value)
            }
        }

        impl From<$name> for Uuid {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    )+};
}

uuid_id!(
    /// A user account.
    UserId,
    /// A managed Linux host.
    HostId,
    /// A group of hosts.
    HostGroupId,
    /// A stored (encrypted) SSH credential.
    CredentialId,
    /// A recorded SSH host key (known host).
    KnownHostId,
    /// One scan of one host.
    ScanId,
    /// One rule result within a scan.
    FindingId,
    /// A detected change of a rule's status or a host's score.
    DriftEventId,
    /// An alert raised for operators.
    AlertId,
    /// An approved (or requested) exception to a rule for a host.
    ExceptionId,
    /// An API token.
    ApiTokenId,
    /// A refresh-token session family.
    SessionId,
    /// A message on the broker; consumers use it as their idempotency key.
    MessageId,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_json_as_plain_uuid_strings() {
        let id = HostId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", id.0));
        let back: HostId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn parsing_rejects_non_uuid_text() {
        assert!("not-a-uuid".parse::<ScanId>().is_err());
        let id = ScanId::new();
        assert_eq!(id.to_string().parse::<ScanId>().unwrap(), id);
    }

    #[test]
    fn new_ids_are_time_ordered() {
        let first = ScanId::new();
        let second = ScanId::new();
        assert!(first < second);
    }
}
