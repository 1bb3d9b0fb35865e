//! An in-process fake Kubernetes API server for the discovery tests: the `/api/v1/pods` and
//! `/api/v1/nodes` list and watch endpoints the `kube` runtime watcher calls, with the API
//! server's semantics for `fieldSelector`, `resourceVersion` (+ `resourceVersionMatch`),
//! `limit`/`continue`, `watch=true`, `allowWatchBookmarks`, `timeoutSeconds`, and 410 Gone (an
//! `ERROR` watch event with a `Status` of code 410, reason `Expired`) for resource versions older
//! than the compacted history.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

/// The two resource kinds served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Pod,
    Node,
}

impl Kind {
    fn from_plural(s: &str) -> Option<Self> {
        match s {
            "pods" => Some(Self::Pod),
            "nodes" => Some(Self::Node),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Pod => "Pod",
            Self::Node => "Node",
        }
    }
}

/// One write, kept in the history that watches replay from.
#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    kind: Kind,
    /// ADDED, MODIFIED or DELETED.
    etype: &'static str,
    /// The object after the write (for DELETED: its last state, with the deletion's version).
    object: Value,
    /// The object before the write (MODIFIED and DELETED).
    previous: Option<Value>,
}

/// What live watches receive.
#[derive(Debug, Clone)]
enum Msg {
    Change(Arc<Change>),
    /// End every watch stream (as an API server restart or a load balancer timeout would).
    CloseAll,
    /// Send `ERROR` 410 on every watch stream and end it (the watch cache fell behind).
    ExpireAll,
}

/// A request the fake answered: path and query parameters.
#[derive(Debug, Clone)]
pub struct Logged {
    pub path: String,
    pub query: HashMap<String, String>,
}

impl Logged {
    /// True for a watch request.
    pub fn is_watch(&self) -> bool {
        self.query
            .get("watch")
            .is_some_and(|w| w == "true" || w == "1")
    }
}

#[derive(Default)]
struct Store {
    rv: u64,
    /// Changes up to and including this version are forgotten: watches from older versions get
    /// 410 Gone.
    compacted: u64,
    objects: HashMap<Kind, BTreeMap<String, Value>>,
    history: Vec<Arc<Change>>,
    log: Vec<Logged>,
}

struct Inner {
    store: Mutex<Store>,
    events: broadcast::Sender<Msg>,
    /// Interval between BOOKMARK events on watches that allow them (None: no bookmarks).
    bookmark_every: Mutex<Option<Duration>>,
}

/// Handle to a running fake API server.
#[derive(Clone)]
pub struct FakeApi {
    inner: Arc<Inner>,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `namespace/name` or `name`.
fn key_of(obj: &Value) -> String {
    let m = &obj["metadata"];
    let name = m["name"].as_str().unwrap_or_default();
    match m["namespace"].as_str() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// The Status object the API server sends for failures.
fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

fn status_response(code: StatusCode, reason: &str, message: &str) -> Response {
    (
        code,
        [("content-type", "application/json")],
        status(code.as_u16(), reason, message).to_string(),
    )
        .into_response()
}

/// A parsed `fieldSelector`: `field=value`, `field==value` and `field!=value` terms, ANDed.
#[derive(Debug, Clone, Default)]
struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    fn parse(kind: Kind, s: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for term in s.split(',').filter(|t| !t.is_empty()) {
            let (field, eq, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                ));
            };
            let supported = match kind {
                Kind::Pod => &[
                    "metadata.name",
                    "metadata.namespace",
                    "spec.nodeName",
                    "status.phase",
                ][..],
                Kind::Node => &["metadata.name", "spec.unschedulable"][..],
            };
            if !supported.contains(&field) {
                return Err(format!("field label not supported: {field}",));
            }
            terms.push((field.to_string(), eq, value.to_string()));
        }
        Ok(Self(terms))
    }

    fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, eq, value)| {
            let mut v = obj;
            for part in field.split('.') {
                v = &v[part];
            }
            let actual = match v {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (actual == *value) == *eq
        })
    }
}

impl FakeApi {
    /// Starts the server on an ephemeral loopback port.
    pub async fn start() -> Self {
        let (events, _) = broadcast::channel(1024);
        let inner = Arc::new(Inner {
            store: Mutex::new(Store::default()),
            events,
            bookmark_every: Mutex::new(None),
        });
        let app = Router::new()
            .route("/api/v1/{plural}", get(handle))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind fake API server");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { inner, url }
    }

    /// Creates or replaces an object (ADDED or MODIFIED); returns its new resource version.
    pub fn apply(&self, kind: Kind, mut object: Value) -> u64 {
        let mut st = lock(&self.inner.store);
        st.rv += 1;
        let rv = st.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = key_of(&object);
        let previous = st
            .objects
            .entry(kind)
            .or_default()
            .insert(key, object.clone());
        let change = Arc::new(Change {
            rv,
            kind,
            etype: if previous.is_some() {
                "MODIFIED"
            } else {
                "ADDED"
            },
            object,
            previous,
        });
        st.history.push(change.clone());
        let _ = self.inner.events.send(Msg::Change(change));
        rv
    }

    /// Deletes an object (DELETED); returns false when it did not exist.
    pub fn delete(&self, kind: Kind, key: &str) -> bool {
        let mut st = lock(&self.inner.store);
        let Some(previous) = st.objects.entry(kind).or_default().remove(key) else {
            return false;
        };
        st.rv += 1;
        let mut object = previous.clone();
        object["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        let change = Arc::new(Change {
            rv: st.rv,
            kind,
            etype: "DELETED",
            object,
            previous: Some(previous),
        });
        st.history.push(change.clone());
        let _ = self.inner.events.send(Msg::Change(change));
        true
    }

    /// Changes the store without any watch seeing it (events lost, as when the watch cache
    /// falls behind): the history is compacted up to the new version, so only a new list shows
    /// the change. `object` None deletes `key`.
    pub fn change_unwatched(&self, kind: Kind, key: &str, object: Option<Value>) {
        let mut st = lock(&self.inner.store);
        st.rv += 1;
        let rv = st.rv;
        let objects = st.objects.entry(kind).or_default();
        match object {
            Some(mut o) => {
                o["metadata"]["resourceVersion"] = json!(rv.to_string());
                objects.insert(key_of(&o), o);
            }
            None => {
                objects.remove(key);
            }
        }
        st.compacted = rv;
        st.history.clear();
    }

    /// Forgets the whole history: watches from any version before now get 410 Gone.
    pub fn compact(&self) {
        let mut st = lock(&self.inner.store);
        st.compacted = st.rv;
        st.history.clear();
    }

    /// Ends every open watch stream.
    pub fn close_watches(&self) {
        let _ = self.inner.events.send(Msg::CloseAll);
    }

    /// Sends an `ERROR` 410 event on every open watch stream and ends it.
    pub fn expire_watches(&self) {
        let _ = self.inner.events.send(Msg::ExpireAll);
    }

    /// Enables periodic BOOKMARK events on watches that ask for them.
    pub fn set_bookmark_interval(&self, every: Option<Duration>) {
        *lock(&self.inner.bookmark_every) = every;
    }

    /// The requests answered so far.
    pub fn requests(&self) -> Vec<Logged> {
        lock(&self.inner.store).log.clone()
    }

    /// The number of list (non-watch) requests for a resource path such as `/api/v1/pods`.
    pub fn lists(&self, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path == path && !r.is_watch())
            .count()
    }

    /// The number of watch requests for a resource path.
    pub fn watches(&self, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path == path && r.is_watch())
            .count()
    }
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    Path(plural): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let path = format!("/api/v1/{plural}");
    lock(&inner.store).log.push(Logged {
        path: path.clone(),
        query: query.clone(),
    });
    let Some(kind) = Kind::from_plural(&plural) else {
        return status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("the server could not find the requested resource ({path})"),
        );
    };
    let selector = match FieldSelector::parse(kind, query.get("fieldSelector").map_or("", |s| s)) {
        Ok(s) => s,
        Err(msg) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", &msg),
    };
    let is_watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    if is_watch {
        watch(inner, kind, selector, &query)
    } else {
        list(&inner, kind, &selector, &query)
    }
}

/// A list: the current objects matching the selector, paged by `limit`/`continue`. The
/// continue token is `<resourceVersion>/<offset>`; it expires (410) with compaction, as etcd's
/// does.
fn list(
    inner: &Inner,
    kind: Kind,
    selector: &FieldSelector,
    query: &HashMap<String, String>,
) -> Response {
    let st = lock(&inner.store);
    let (list_rv, offset) = match query.get("continue") {
        Some(token) => {
            let parsed = token
                .split_once('/')
                .and_then(|(rv, off)| Some((rv.parse::<u64>().ok()?, off.parse::<usize>().ok()?)));
            match parsed {
                Some((rv, _)) if rv < st.compacted => {
                    return status_response(
                        StatusCode::GONE,
                        "Expired",
                        "The provided continue parameter is too old to display a consistent list result.",
                    )
                }
                Some(p) => p,
                None => {
                    return status_response(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        "invalid continue token",
                    )
                }
            }
        }
        None => {
            // resourceVersion: unset = most recent, "0" = any; an explicit version with
            // resourceVersionMatch=NotOlderThan must not be in the future.
            if let Some(rv) = query.get("resourceVersion").filter(|rv| *rv != "0") {
                match rv.parse::<u64>() {
                    Ok(rv) if rv <= st.rv => {}
                    Ok(_) => {
                        return status_response(
                            StatusCode::GATEWAY_TIMEOUT,
                            "Timeout",
                            "Too large resource version",
                        )
                    }
                    Err(_) => {
                        return status_response(
                            StatusCode::BAD_REQUEST,
                            "BadRequest",
                            "invalid resource version",
                        )
                    }
                }
            }
            (st.rv, 0)
        }
    };
    let matching: Vec<&Value> = st
        .objects
        .get(&kind)
        .into_iter()
        .flat_map(|m| m.values())
        .filter(|o| selector.matches(o))
        .collect();
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|o| {
            // List items carry no apiVersion/kind, like the real API server's.
            let mut o = (*o).clone();
            if let Some(m) = o.as_object_mut() {
                m.remove("apiVersion");
                m.remove("kind");
            }
            o
        })
        .collect();
    let next = offset + page.len();
    let mut metadata = json!({ "resourceVersion": list_rv.to_string() });
    if next < matching.len() {
        metadata["continue"] = json!(format!("{list_rv}/{next}"));
        metadata["remainingItemCount"] = json!(matching.len() - next);
    }
    let body = json!({
        "kind": format!("{}List", kind.name()),
        "apiVersion": "v1",
        "metadata": metadata,
        "items": page,
    });
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A watch event line.
fn event_line(etype: &str, object: &Value) -> String {
    let mut line = json!({ "type": etype, "object": object }).to_string();
    line.push('\n');
    line
}

/// The event a watch with this selector sees for a change, if any: an object moving into the
/// selection is ADDED, one moving out is DELETED.
fn filtered(change: &Change, selector: &FieldSelector) -> Option<String> {
    let now = selector.matches(&change.object);
    let before = change
        .previous
        .as_ref()
        .is_some_and(|p| selector.matches(p));
    let etype = match change.etype {
        "ADDED" if now => "ADDED",
        "MODIFIED" if now && before => "MODIFIED",
        "MODIFIED" if now => "ADDED",
        "MODIFIED" if before => "DELETED",
        "DELETED" if before => "DELETED",
        _ => return None,
    };
    Some(event_line(etype, &with_type(change.kind, &change.object)))
}

/// Watch objects carry apiVersion and kind.
fn with_type(kind: Kind, object: &Value) -> Value {
    let mut o = object.clone();
    o["apiVersion"] = json!("v1");
    o["kind"] = json!(kind.name());
    o
}

/// A watch: a chunked stream of JSON event lines, starting after `resourceVersion` (replayed from
/// history), `"0"`/unset meaning "synthetic ADDED for every current object, then changes".
fn watch(
    inner: Arc<Inner>,
    kind: Kind,
    selector: FieldSelector,
    query: &HashMap<String, String>,
) -> Response {
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let (tx, rx) = mpsc::channel::<String>(64);

    // Under the store lock: subscribe first, then take the backlog, so nothing falls in between.
    let (mut live, backlog, start_rv) = {
        let st = lock(&inner.store);
        let live = inner.events.subscribe();
        let from = query.get("resourceVersion").map_or("0", |s| s.as_str());
        let backlog: Result<Vec<String>, String> = match from {
            "" | "0" => Ok(st
                .objects
                .get(&kind)
                .into_iter()
                .flat_map(|m| m.values())
                .filter(|o| selector.matches(o))
                .map(|o| event_line("ADDED", &with_type(kind, o)))
                .collect()),
            rv => match rv.parse::<u64>() {
                Ok(rv) if rv < st.compacted => Err(format!(
                    "too old resource version: {rv} ({})",
                    st.compacted + 1
                )),
                Ok(rv) => Ok(st
                    .history
                    .iter()
                    .filter(|c| c.kind == kind && c.rv > rv)
                    .filter_map(|c| filtered(c, &selector))
                    .collect()),
                Err(_) => Err(format!("invalid resource version {rv:?}")),
            },
        };
        (live, backlog, st.rv)
    };
    let bookmark_every = *lock(&inner.bookmark_every);

    tokio::spawn(async move {
        let backlog = match backlog {
            Ok(b) => b,
            Err(msg) => {
                let _ = tx
                    .send(event_line("ERROR", &status(410, "Expired", &msg)))
                    .await;
                return;
            }
        };
        for line in backlog {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        // The newest version this watch has accounted for (including filtered-out changes):
        // what a bookmark may promise.
        let mut seen_rv = start_rv;
        let mut tick = bookmark_every
            .filter(|_| bookmarks)
            .map(tokio::time::interval);
        loop {
            let until_deadline = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let next_tick = async {
                match tick.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let line = tokio::select! {
                () = until_deadline => return,
                () = tx.closed() => return,
                () = next_tick => Some(event_line("BOOKMARK", &json!({
                    "apiVersion": "v1",
                    "kind": kind.name(),
                    "metadata": { "resourceVersion": seen_rv.to_string() },
                }))),
                msg = live.recv() => match msg {
                    Ok(Msg::Change(c)) => {
                        if c.rv <= seen_rv {
                            None // already in the backlog
                        } else {
                            seen_rv = c.rv;
                            if c.kind == kind {
                                filtered(&c, &selector)
                            } else {
                                None
                            }
                        }
                    }
                    Ok(Msg::CloseAll) | Err(broadcast::error::RecvError::Closed) => return,
                    Ok(Msg::ExpireAll) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx.send(event_line("ERROR", &status(
                            410,
                            "Expired",
                            "The resourceVersion for the provided watch is too old.",
                        ))).await;
                        return;
                    }
                },
            };
            if let Some(line) = line {
                if tx.send(line).await.is_err() {
                    return;
                }
            }
        }
    });

    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (Ok::<_, Infallible>(line), rx))
    });
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}
