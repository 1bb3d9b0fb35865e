//! Tenancy at the edge: every request's tenant is decided here, once, and handed to the handlers as
//! an `Extension<TenantSet>` (reads; may be federated `a|b`) or `Extension<TenantId>` (writes).
//! Errors are plain text, as Mimir and Loki answer them.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use common::tenant::ORG_ID_HEADER;
use common::{TenantId, TenantSet};

use crate::auth::Tokens;

/// How tenants are decided.
#[derive(Clone)]
pub struct Tenancy {
    /// With auth disabled everything is tenant `anonymous`.
    pub enabled: bool,
    /// Optional bearer tokens with grants.
    pub tokens: Option<Arc<Tokens>>,
}

/// Why a request's tenant could not be decided: an HTTP status and a plain-text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// 400 (invalid or federated write), 401 (no org id / token), 403 (not granted).
    pub status: StatusCode,
    /// What was wrong.
    pub message: String,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let ct = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
        (self.status, ct, self.message).into_response()
    }
}

fn reject(status: StatusCode, msg: impl Into<String>) -> Rejection {
    Rejection {
        status,
        message: msg.into(),
    }
}

impl Tenancy {
    /// Decides the tenant set of a request. `write` requests must name exactly one tenant.
    pub fn resolve(&self, headers: &HeaderMap, write: bool) -> Result<TenantSet, Rejection> {
        if !self.enabled {
            return Ok(TenantSet::single(TenantId::anonymous()));
        }
        let grant = match &self.tokens {
            None => None,
            Some(tokens) => {
                let token = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .ok_or_else(|| reject(StatusCode::UNAUTHORIZED, "missing bearer token"))?;
                Some(
                    tokens
                        .check(token.trim())
                        .ok_or_else(|| reject(StatusCode::UNAUTHORIZED, "invalid bearer token"))?
                        .clone(),
                )
            }
        };
        let header_value = headers
            .get(ORG_ID_HEADER)
            .map(|v| v.to_str().unwrap_or("\u{0}"));
        let raw = match (header_value, &grant) {
            (Some(v), _) => v.to_string(),
            (None, Some(g)) => match g.sole_tenant(write) {
                Some(t) => t.to_string(),
                None => return Err(reject(StatusCode::UNAUTHORIZED, "no org id")),
            },
            (None, None) => return Err(reject(StatusCode::UNAUTHORIZED, "no org id")),
        };
        let set =
            TenantSet::parse(&raw).map_err(|e| reject(StatusCode::BAD_REQUEST, e.to_string()))?;
        if write && set.is_federated() {
            return Err(reject(
                StatusCode::BAD_REQUEST,
                format!("multiple tenant IDs are not allowed on writes (got {raw:?}); send one tenant in {ORG_ID_HEADER}"),
            ));
        }
        if let Some(g) = grant {
            for t in set.tenants() {
                let ok = if write {
                    g.can_write(t.as_str())
                } else {
                    g.can_read(t.as_str())
                };
                if !ok {
                    let what = if write { "write" } else { "read" };
                    return Err(reject(
                        StatusCode::FORBIDDEN,
                        format!("token {:?} may not {what} tenant {t}", g.name),
                    ));
                }
            }
        }
        Ok(set)
    }
}

/// Middleware for read routes: inserts `Extension<TenantSet>`.
pub async fn read(State(t): State<Tenancy>, mut req: Request, next: Next) -> Response {
    match t.resolve(req.headers(), false) {
        Ok(set) => {
            req.extensions_mut().insert(set);
            next.run(req).await
        }
        Err(r) => r.into_response(),
    }
}

/// Middleware for write routes: inserts `Extension<TenantId>`.
pub async fn write(State(t): State<Tenancy>, mut req: Request, next: Next) -> Response {
    match t.resolve(req.headers(), true) {
        Ok(set) => {
            let id = set
                .single_tenant()
                .expect("write sets have one tenant")
                .clone();
            req.extensions_mut().insert(id);
            next.run(req).await
        }
        Err(r) => r.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn hm(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn header_rules() {
        let t = Tenancy {
            enabled: true,
            tokens: None,
        };
        assert_eq!(t.resolve(&hm(&[]), false).unwrap_err().status, 401);
        assert_eq!(
            t.resolve(&hm(&[("x-scope-orgid", "a|b")]), true)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            t.resolve(&hm(&[("x-scope-orgid", "a/b")]), false)
                .unwrap_err()
                .status,
            400
        );
        let s = t.resolve(&hm(&[("x-scope-orgid", "b|a")]), false).unwrap();
        assert_eq!(s.tenants().len(), 2);
        let off = Tenancy {
            enabled: false,
            tokens: None,
        };
        let s = off.resolve(&hm(&[("x-scope-orgid", "zzz")]), true).unwrap();
        assert_eq!(s.single_tenant().unwrap().as_str(), "anonymous");
    }
}
