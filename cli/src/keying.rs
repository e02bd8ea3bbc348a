//! How a store's keys derive from session ids, read from its sessions.
//!
//! The layer keys a store by the SHA-256 of each id (ids hashed at rest,
//! the default) or by the id itself, and records which in every session it
//! writes (`__sessionkit.keyed_by`, see [`sessionkit::reserved::KEYED_BY`]).
//! Sessions copied between stores keyed differently would never be found
//! again by the application, so `migrate` compares the two stores first.
//! Sessions written by sessionkit before this stamp existed carry none and
//! are counted as unknown.

use sessionkit::{ScanCursor, SessionStore, StoreError, reserved};

/// How many sessions of a store were keyed each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keying {
    /// Keyed by the SHA-256 of their ids.
    pub hashed: u64,
    /// Keyed by their ids.
    pub raw: u64,
    /// Without the stamp.
    pub unknown: u64,
}

impl Keying {
    /// Counts one session's stamp.
    pub fn count(&mut self, data: &sessionkit::SessionMap) {
        match data.get(reserved::KEYED_BY).and_then(serde_json::Value::as_str) {
            Some(reserved::KEYED_BY_SHA256) => self.hashed += 1,
            Some(reserved::KEYED_BY_ID) => self.raw += 1,
            _ => self.unknown += 1,
        }
    }

    /// The one keying the stamped sessions agree on: `Some(true)` hashed,
    /// `Some(false)` raw, `None` when nothing is stamped; an error when
    /// both kinds are present.
    pub fn consensus(&self) -> Result<Option<bool>, String> {
        match (self.hashed > 0, self.raw > 0) {
            (true, true) => Err(format!(
                "{} sessions are keyed by the SHA-256 of their ids and {} by the ids themselves",
                self.hashed, self.raw
            )),
            (true, false) => Ok(Some(true)),
            (false, true) => Ok(Some(false)),
            (false, false) => Ok(None),
        }
    }
}

/// Reads the stamps of up to `sample` sessions of `store`.
pub async fn sample(store: &dyn SessionStore, sample: usize) -> Result<Keying, StoreError> {
    let mut keying = Keying::default();
    let mut cursor = ScanCursor::start();
    let mut seen = 0;
    while seen < sample {
        let page = store.scan(&cursor, sample - seen).await?;
        for (_, record) in &page.records {
            keying.count(&record.data);
        }
        seen += page.records.len();
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    Ok(keying)
}

/// Describes a keying for people.
pub fn describe(hashed: bool) -> &'static str {
    if hashed { "by the SHA-256 of their ids (hash_ids_at_rest on)" } else { "by their ids (hash_ids_at_rest off)" }
}
