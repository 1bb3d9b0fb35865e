//! Request parameters of the query APIs: the URL query string merged with an
//! `application/x-www-form-urlencoded` body, so that GET and POST behave alike (as in Prometheus
//! and Loki).

/// Parameters in order of appearance.
#[derive(Debug, Clone, Default)]
pub struct FormParams(Vec<(String, String)>);

impl FormParams {
    /// Merges `query` with `body` when `content_type` is a form.
    pub fn new(query: Option<&str>, content_type: Option<&str>, body: &[u8]) -> Self {
        let mut v: Vec<(String, String)> = query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        if content_type.is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")) {
            v.extend(form_urlencoded::parse(body).into_owned());
        }
        Self(v)
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All values of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}
