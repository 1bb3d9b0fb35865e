//! Inverted index shared by the head and decoded blocks: label name → value → sorted series ids,
//! with strings interned as `u32` symbols so that a series' label set costs 8 bytes per pair.

use std::collections::HashMap;

use common::Matcher;

/// Interned strings. Ids are stable for the lifetime of the table (append only).
#[derive(Default)]
pub(crate) struct Symbols {
    ids: HashMap<Box<str>, u32>,
    strs: Vec<Box<str>>,
}

impl Symbols {
    /// The id of `s`, if interned.
    pub(crate) fn lookup(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    /// Interns `s`.
    pub(crate) fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.strs.len() as u32;
        self.strs.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    /// The string of an id (ids come only from this table).
    #[inline]
    pub(crate) fn get(&self, id: u32) -> &str {
        &self.strs[id as usize]
    }

    /// Number of symbols.
    pub(crate) fn len(&self) -> usize {
        self.strs.len()
    }
}

/// Postings: for each label name and value, the sorted ids of series carrying that pair.
#[derive(Default)]
pub(crate) struct Postings {
    map: HashMap<u32, HashMap<u32, Vec<u32>>>,
    all: Vec<u32>,
}

fn insert_sorted(v: &mut Vec<u32>, id: u32) {
    // New ids are usually the largest: check the tail before searching.
    match v.last() {
        Some(&last) if last < id => v.push(id),
        None => v.push(id),
        _ => {
            if let Err(i) = v.binary_search(&id) {
                v.insert(i, id);
            }
        }
    }
}

fn remove_sorted(v: &mut Vec<u32>, id: u32) {
    if let Ok(i) = v.binary_search(&id) {
        v.remove(i);
    }
}

impl Postings {
    /// Adds a series whose labels are `pairs` (name, value symbol ids).
    pub(crate) fn add(&mut self, pairs: &[u32], id: u32) {
        for p in pairs.chunks_exact(2) {
            insert_sorted(
                self.map.entry(p[0]).or_default().entry(p[1]).or_default(),
                id,
            );
        }
        insert_sorted(&mut self.all, id);
    }

    /// Removes a series.
    pub(crate) fn remove(&mut self, pairs: &[u32], id: u32) {
        for p in pairs.chunks_exact(2) {
            if let Some(values) = self.map.get_mut(&p[0]) {
                if let Some(list) = values.get_mut(&p[1]) {
                    remove_sorted(list, id);
                    if list.is_empty() {
                        values.remove(&p[1]);
                    }
                }
                if values.is_empty() {
                    self.map.remove(&p[0]);
                }
            }
        }
        remove_sorted(&mut self.all, id);
    }

    /// Label name symbols present.
    pub(crate) fn names(&self) -> impl Iterator<Item = u32> + '_ {
        self.map.keys().copied()
    }

    /// Value symbols of label `name` with their postings.
    pub(crate) fn values(&self, name: u32) -> impl Iterator<Item = (u32, &[u32])> + '_ {
        self.map
            .get(&name)
            .into_iter()
            .flat_map(|m| m.iter().map(|(v, l)| (*v, l.as_slice())))
    }

    /// Union of the postings of values of `name` for which `keep(value)` holds.
    fn union_where(&self, name: u32, syms: &Symbols, keep: impl Fn(&str) -> bool) -> Vec<u32> {
        let mut lists: Vec<&[u32]> = Vec::new();
        for (v, l) in self.values(name) {
            if keep(syms.get(v)) {
                lists.push(l);
            }
        }
        match lists.len() {
            0 => Vec::new(),
            1 => lists[0].to_vec(),
            _ => {
                let mut out: Vec<u32> = lists.concat();
                out.sort_unstable();
                out.dedup();
                out
            }
        }
    }

    /// Ids of series matching all `matchers`, sorted (Prometheus semantics: a missing label is "").
    ///
    /// Matchers that reject "" select by union of matching values and intersect; matchers that accept
    /// "" instead subtract the series whose value they reject, so `{a!="x"}` keeps series without `a`.
    pub(crate) fn select(&self, matchers: &[Matcher], syms: &Symbols) -> Vec<u32> {
        let mut result: Option<Vec<u32>> = None;
        let mut subtract: Vec<Vec<u32>> = Vec::new();
        // Positive matchers first: they shrink the set the negative ones subtract from.
        let (pos, neg): (Vec<&Matcher>, Vec<&Matcher>) =
            matchers.iter().partition(|m| !m.matches_empty());
        for m in pos {
            let list = match (syms.lookup(&m.name), m.op) {
                (None, _) => Vec::new(),
                (Some(n), common::MatchOp::Equal) => syms
                    .lookup(&m.value)
                    .and_then(|v| self.map.get(&n).and_then(|vals| vals.get(&v)))
                    .cloned()
                    .unwrap_or_default(),
                (Some(n), _) => self.union_where(n, syms, |v| m.matches(v)),
            };
            result = Some(match result {
                None => list,
                Some(r) => intersect(&r, &list),
            });
            if result.as_ref().is_some_and(|r| r.is_empty()) {
                return Vec::new();
            }
        }
        for m in neg {
            if let Some(n) = syms.lookup(&m.name) {
                let list = self.union_where(n, syms, |v| !m.matches(v));
                if !list.is_empty() {
                    subtract.push(list);
                }
            }
        }
        let mut r = result.unwrap_or_else(|| self.all.clone());
        for s in subtract {
            r = difference(&r, &s);
        }
        r
    }
}

/// Sorted intersection.
pub(crate) fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Sorted difference `a - b`.
pub(crate) fn difference(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut j = 0;
    let mut out = Vec::with_capacity(a.len());
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j >= b.len() || b[j] != x {
            out.push(x);
        }
    }
    out
}
