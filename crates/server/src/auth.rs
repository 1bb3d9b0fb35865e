//! Optional bearer-token authorization (beyond the seed, which trusts any `X-Scope-OrgID`):
//! a tenants file maps SHA-256 hashes of tokens to read/write grants on tenant sets.
//!
//! ```yaml
//! tokens:
//!   - name: grafana-team-a            # for humans and logs
//!     sha256: 9f86d0…                 # hex SHA-256 of the token (never the token itself)
//!     read: [team-a, infrastructure]  # "*" grants every tenant
//!     write: [team-a]
//! ```

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::Error;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tokens: Vec<TokenEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    sha256: String,
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    write: Vec<String>,
}

/// What one token may do.
#[derive(Clone, Debug)]
pub struct Grant {
    /// Name of the token entry.
    pub name: String,
    read: Vec<String>,
    write: Vec<String>,
}

impl Grant {
    fn allows(list: &[String], tenant: &str) -> bool {
        list.iter().any(|t| t == "*" || t == tenant)
    }
    /// Whether the token may read `tenant`.
    pub fn can_read(&self, tenant: &str) -> bool {
        Self::allows(&self.read, tenant)
    }
    /// Whether the token may write `tenant`.
    pub fn can_write(&self, tenant: &str) -> bool {
        Self::allows(&self.write, tenant)
    }
    /// The only tenant this token can act on for reads or writes, used when the request has no
    /// `X-Scope-OrgID` header.
    pub fn sole_tenant(&self, write: bool) -> Option<&str> {
        let list = if write { &self.write } else { &self.read };
        match list.as_slice() {
            [one] if one != "*" => Some(one),
            _ => None,
        }
    }
}

/// Token hash → grant.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    by_hash: HashMap<String, Grant>,
}

impl Tokens {
    /// Loads and validates a tenants file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let bad = |reason: String| Error::TenantsFile {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let file: File = serde_yaml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let mut by_hash = HashMap::new();
        for t in file.tokens {
            let h = t.sha256.to_ascii_lowercase();
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!(
                    "token {:?}: sha256 must be 64 hex digits",
                    t.name
                )));
            }
            for tenant in t.read.iter().chain(&t.write) {
                if tenant != "*" {
                    common::TenantId::new(tenant)
                        .map_err(|e| bad(format!("token {:?}: {e}", t.name)))?;
                }
            }
            by_hash.insert(
                h,
                Grant {
                    name: t.name,
                    read: t.read,
                    write: t.write,
                },
            );
        }
        Ok(Self { by_hash })
    }

    /// The grant of a presented token, if it is known.
    pub fn check(&self, token: &str) -> Option<&Grant> {
        self.by_hash.get(&hash_token(token))
    }
}

/// Hex SHA-256 of a token, as stored in the tenants file (`heimdall token hash` prints it).
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.yaml");
        let h = hash_token("s3cret");
        std::fs::write(
            &p,
            format!("tokens:\n  - name: a\n    sha256: {h}\n    read: [a, b]\n    write: [a]\n"),
        )
        .unwrap();
        let t = Tokens::load(&p).unwrap();
        let g = t.check("s3cret").unwrap();
        assert!(g.can_read("b") && !g.can_write("b") && g.can_write("a"));
        assert_eq!(g.sole_tenant(true), Some("a"));
        assert_eq!(g.sole_tenant(false), None);
        assert!(t.check("other").is_none());
        std::fs::write(&p, "tokens:\n  - name: a\n    sha256: xyz\n").unwrap();
        assert!(Tokens::load(&p).is_err());
    }
}
