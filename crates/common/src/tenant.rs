//! Tenant identity. A [`TenantId`] can only be created through validation, so any storage path built
//! from one is safe; a [`TenantSet`] is the federated form used by reads (`a|b|c`).

use std::fmt;
use std::sync::Arc;

use crate::Error;

/// Header that carries the tenant on every read and write.
pub const ORG_ID_HEADER: &str = "X-Scope-OrgID";
/// Tenant used when auth is disabled.
pub const ANONYMOUS: &str = "anonymous";
/// Label that federated reads attach to every result.
pub const TENANT_LABEL: &str = "__tenant_id__";
const MAX_TENANT_LEN: usize = 150;

/// A validated tenant id (Mimir's rules: ≤ 150 bytes of `[A-Za-z0-9!-_.*'()]`, not `.` or `..`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

impl TenantId {
    /// Validates `id` and returns the tenant.
    pub fn new(id: &str) -> Result<Self, Error> {
        let bad = |reason| Error::InvalidTenant {
            id: id.to_string(),
            reason,
        };
        if id.is_empty() {
            return Err(bad("tenant id is empty"));
        }
        if id.len() > MAX_TENANT_LEN {
            return Err(bad("tenant id is longer than 150 characters"));
        }
        if id == "." || id == ".." {
            return Err(bad("tenant id must not be '.' or '..'"));
        }
        if !id.bytes().all(is_tenant_byte) {
            return Err(bad(
                "tenant id may only contain letters, digits and !-_.*'()",
            ));
        }
        Ok(Self(Arc::from(id)))
    }

    /// The tenant used when authentication is disabled.
    pub fn anonymous() -> Self {
        Self(Arc::from(ANONYMOUS))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_tenant_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'!' | b'-' | b'_' | b'.' | b'*' | b'\'' | b'(' | b')')
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

/// One or more tenants a read spans; sorted and deduplicated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantSet(Vec<TenantId>);

impl TenantSet {
    /// Parses a header value `a|b|c`.
    pub fn parse(header: &str) -> Result<Self, Error> {
        let mut ids = header
            .split('|')
            .map(TenantId::new)
            .collect::<Result<Vec<_>, _>>()?;
        ids.sort();
        ids.dedup();
        Ok(Self(ids))
    }

    /// A set of the given tenants (sorted and deduplicated).
    pub fn from_ids(mut ids: Vec<TenantId>) -> Self {
        ids.sort();
        ids.dedup();
        Self(ids)
    }

    /// A set of one tenant.
    pub fn single(id: TenantId) -> Self {
        Self(vec![id])
    }

    /// The tenants, sorted.
    pub fn tenants(&self) -> &[TenantId] {
        &self.0
    }

    /// Whether results must carry `__tenant_id__` (more than one tenant).
    pub fn is_federated(&self) -> bool {
        self.0.len() > 1
    }

    /// The single tenant of a write; `None` when the set is federated.
    pub fn single_tenant(&self) -> Option<&TenantId> {
        match self.0.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_ids() {
        assert!(TenantId::new("team-a_1.prod").is_ok());
        assert!(TenantId::new("(x)*'!").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "ä", &"x".repeat(151)] {
            assert!(TenantId::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn federation_sorts_and_dedups() {
        let s = TenantSet::parse("b|a|b").unwrap();
        let ids: Vec<_> = s.tenants().iter().map(|t| t.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(s.is_federated());
        assert!(s.single_tenant().is_none());
        assert!(TenantSet::parse("a||b").is_err());
    }
}
