//! A way for the stores' own tests to make a commit panic, and a check of
//! what a store does around one.
//!
//! Each store's committer calls [`panic_if_marked`] on the bytes of every
//! `set` it applies, after applying it, so the panic strikes inside a
//! transaction that has already changed the database. Compiled into tests
//! only.

// The hooks serve the stores' tests; built without any store (the
// writer's own tests still run), most of them have no caller.
#![cfg_attr(not(any(feature = "sqlite", feature = "redb")), allow(dead_code))]

use std::sync::Arc;

use sessionkit::{SessionMap, SessionStore, StoreError, StoreKey};

/// A write whose stored bytes contain this makes the commit panic.
pub(crate) const PANIC_MARKER: &str = "sessionkit-test-hook-panic-in-commit";

/// Panics when `bytes` hold [`PANIC_MARKER`].
pub(crate) fn panic_if_marked(bytes: &[u8]) {
    let marker = PANIC_MARKER.as_bytes();
    assert!(!bytes.windows(marker.len()).any(|window| window == marker), "test hook: this commit panics");
}

/// Session data whose write makes the commit panic.
pub(crate) fn panicking_data() -> SessionMap {
    let mut data = SessionMap::new();
    data.insert(PANIC_MARKER.to_owned(), serde_json::Value::Bool(true));
    data
}

/// Session data numbered `i`.
pub(crate) fn numbered(i: u64) -> SessionMap {
    let mut data = SessionMap::new();
    data.insert("i".to_owned(), serde_json::Value::from(i));
    data
}

/// The error and its causes, as one line.
pub(crate) fn chain(err: &StoreError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What became of writes racing one that panics.
pub(crate) struct Race {
    /// The writes that were acknowledged, with their data.
    pub(crate) acknowledged: Vec<(StoreKey, SessionMap)>,
    /// The writes that failed with the panic (they shared its batch).
    pub(crate) failed: Vec<StoreKey>,
    /// The write whose commit panicked.
    pub(crate) panicked: StoreKey,
}

/// Writes 32 sessions concurrently with one whose commit panics. The
/// panicking write fails saying so; every other write either is
/// acknowledged or fails with the same panic.
pub(crate) async fn race_a_panicking_write<S: SessionStore + 'static>(store: &Arc<S>) -> Race {
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..32 {
        let store = Arc::clone(store);
        writes.spawn(async move {
            let id = sessionkit::testing::checks::key();
            let data = numbered(i);
            let result = store.set(&id, &data, None).await;
            (id, data, result)
        });
    }
    let panicked = sessionkit::testing::checks::key();
    let err = store.set(&panicked, &panicking_data(), None).await.expect_err("the commit panics");
    assert!(chain(&err).contains("panicked"), "the error must say the writer panicked: {}", chain(&err));
    let mut race = Race { acknowledged: Vec::new(), failed: Vec::new(), panicked };
    for (id, data, result) in writes.join_all().await {
        match result {
            Ok(()) => race.acknowledged.push((id, data)),
            Err(err) => {
                assert!(chain(&err).contains("panicked"), "a write failed for another reason: {}", chain(&err));
                race.failed.push(id);
            }
        }
    }
    race
}

/// Checks that `store` holds every acknowledged write of `race` and none
/// of the failed ones.
pub(crate) async fn assert_only_acknowledged_writes_stored<S: SessionStore>(store: &S, race: &Race) {
    for (id, data) in &race.acknowledged {
        let stored = store.get(id).await.expect("get").map(|record| record.data);
        assert_eq!(stored.as_ref(), Some(data), "an acknowledged write is missing");
    }
    for id in race.failed.iter().chain([&race.panicked]) {
        assert_eq!(store.get(id).await.expect("get"), None, "a write of the panicked batch was committed");
    }
}
