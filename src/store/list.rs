//! Listing: one page of names and values, walking the key space with SCAN (never KEYS), then
//! one MGET. A page is read on one connection; if it is lost mid-way the page starts again on
//! the next one (reading twice changes nothing).

use std::collections::{HashSet, VecDeque};

use super::{Attempt, StoreError, command, decode_value};
use crate::cursor::{Cursor, ScanPosition};
use crate::domain::{Name, Timestamp};

/// Upper bound on SCAN round trips for one page, so that a database full of other keys cannot
/// make one list request loop for long; the page then comes back short, with a cursor.
const MAX_SCAN_CALLS_PER_PAGE: usize = 32;

/// One page of a listing; `next` is `None` once every key has been visited.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<(Name, Timestamp)>,
    pub next: Option<Cursor>,
}

impl Attempt<'_> {
    pub(super) async fn scan_page(
        &mut self,
        limit: usize,
        cursor: Cursor,
    ) -> Result<Page, StoreError> {
        // A cluster's cursor, brought over a change of topology, starts the listing again.
        let (mut position, mut pending) = match cursor {
            Cursor::Scan { scan, pending } => (scan, pending),
            Cursor::Slots { .. } => (ScanPosition::Start, VecDeque::new()),
        };
        let take = limit.min(pending.len());
        let mut names: Vec<Name> = pending.drain(..take).collect();
        // SCAN may return a key twice; a page and what it carries over never hold a name twice.
        let mut seen: HashSet<Name> = names.iter().chain(&pending).cloned().collect();
        let prefix = self.store.prefix.clone();
        let pattern = format!("{prefix}*");

        let mut calls = 0;
        while names.len() < limit
            && position != ScanPosition::Finished
            && calls < MAX_SCAN_CALLS_PER_PAGE
        {
            let from = match position {
                ScanPosition::At(at) => at,
                ScanPosition::Start | ScanPosition::Finished => 0,
            };
            let (next, keys): (u64, Vec<String>) = self
                .query(
                    command("SCAN")
                        .arg(from)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(limit - names.len()),
                )
                .await?;
            calls += 1;
            position = if next == 0 {
                ScanPosition::Finished
            } else {
                ScanPosition::At(next)
            };
            for key in keys {
                // Keys under the prefix that are not valid names were not written by this
                // service; they are skipped rather than failing the whole listing.
                let Some(name) = key
                    .strip_prefix(&*prefix)
                    .and_then(|raw| Name::parse(raw).ok())
                else {
                    continue;
                };
                if !seen.insert(name.clone()) {
                    continue;
                }
                if names.len() < limit {
                    names.push(name);
                } else {
                    pending.push_back(name);
                }
            }
        }

        let items = self.values_of(names).await?;
        let next =
            (position != ScanPosition::Finished || !pending.is_empty()).then_some(Cursor::Scan {
                scan: position,
                pending,
            });
        Ok(Page { items, next })
    }

    /// Reads the values of `names` with one MGET; names removed meanwhile are left out.
    async fn values_of(&mut self, names: Vec<Name>) -> Result<Vec<(Name, Timestamp)>, StoreError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = names.iter().map(|name| self.store.key(name)).collect();
        let values: Vec<Option<String>> = self.query(command("MGET").arg(&keys)).await?;
        Ok(listed_items(names, &keys, values))
    }
}

/// The names whose values MGET found, decoded; names removed meanwhile are left out, and a
/// value that is not a timestamp is skipped with a warning rather than failing the page.
pub(super) fn listed_items(
    names: Vec<Name>,
    keys: &[String],
    values: Vec<Option<String>>,
) -> Vec<(Name, Timestamp)> {
    let mut items = Vec::with_capacity(names.len());
    for ((name, key), value) in names.into_iter().zip(keys).zip(values) {
        let Some(value) = value else { continue };
        match decode_value(key, &value) {
            Ok(timestamp) => items.push((name, timestamp)),
            Err(error) => tracing::warn!(%error, "skipping a value that is not a timestamp"),
        }
    }
    items
}
