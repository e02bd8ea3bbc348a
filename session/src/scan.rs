//! Paging through every live session of a store, for migrations and admin
//! tools ([`SessionStore::scan`](crate::SessionStore::scan)).

use crate::{SessionRecord, StoreKey};

/// Where a scan stands: opaque text that only the store that issued it
/// understands, so that a tool can save it and resume a scan later (across
/// restarts of the tool, against the same store).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ScanCursor(String);

impl ScanCursor {
    /// The cursor of a scan's first page.
    pub fn start() -> Self {
        Self(String::new())
    }

    /// Whether this is the first page's cursor.
    pub fn is_start(&self) -> bool {
        self.0.is_empty()
    }

    /// A cursor from its text (as saved by [`ScanCursor::as_str`], or as a
    /// store builds it).
    pub fn from_text(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The cursor's text, to save or to decode in the store that made it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One page of a scan.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScanPage {
    /// Live records, each with its key. At most the limit asked for; a page
    /// may hold fewer (even none) before the end.
    pub records: Vec<(StoreKey, SessionRecord)>,
    /// The cursor of the next page; `None` once the scan is complete.
    pub next: Option<ScanCursor>,
}
