//! Drives a `kube` runtime watcher into a keyed store of per-object projections and reports each
//! change of that store.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;

use futures::StreamExt;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

/// `namespace/name` (or `name` for cluster-scoped objects).
fn key<K: Resource>(obj: &K) -> String {
    match obj.meta().namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", obj.name_any()),
        _ => obj.name_any(),
    }
}

/// Watches `api` until `stop` resolves. Each object is reduced to `project(obj)`; `publish` gets
/// the whole store after the initial list and after every re-list (`initial` = true: the store
/// was replaced, objects missing from the new list are gone), and after each add, update or
/// delete that changed a projection (`initial` = false). Watch errors are logged and retried
/// with the watcher's default backoff (0.8 s doubling to 30 s).
pub(crate) async fn run<K, E>(
    role: &'static str,
    api: Api<K>,
    config: watcher::Config,
    project: impl Fn(&K) -> E,
    mut publish: impl FnMut(&BTreeMap<String, E>, bool),
    stop: impl Future<Output = ()>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    E: PartialEq,
{
    let stream = watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    futures::pin_mut!(stop);
    let mut live: BTreeMap<String, E> = BTreeMap::new();
    // The store being rebuilt between Event::Init and Event::InitDone.
    let mut relist: Option<BTreeMap<String, E>> = None;
    loop {
        let event = tokio::select! {
            () = &mut stop => return,
            event = stream.next() => event,
        };
        match event {
            // The watcher stream never ends on its own.
            None => return,
            // 410 Gone is routine (the watch fell out of the server's history window): the
            // watcher lists again.
            Some(Err(watcher::Error::WatchError(e))) if e.code == 410 => {
                tracing::debug!(role, error = %e, "kubernetes watch expired; re-listing");
            }
            Some(Err(e)) => tracing::warn!(role, error = %e, "kubernetes watch failed; retrying"),
            Some(Ok(Event::Init)) => relist = Some(BTreeMap::new()),
            Some(Ok(Event::InitApply(obj))) => {
                relist
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key(&obj), project(&obj));
            }
            Some(Ok(Event::InitDone)) => {
                live = relist.take().unwrap_or_default();
                tracing::debug!(role, objects = live.len(), "kubernetes list loaded");
                publish(&live, true);
            }
            Some(Ok(Event::Apply(obj))) => {
                let entry = project(&obj);
                let k = key(&obj);
                if live.get(&k) != Some(&entry) {
                    live.insert(k, entry);
                    publish(&live, false);
                }
            }
            Some(Ok(Event::Delete(obj))) => {
                if live.remove(&key(&obj)).is_some() {
                    publish(&live, false);
                }
            }
        }
    }
}
