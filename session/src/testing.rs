//! The store conformance kit (feature `testing`): proves that a
//! [`SessionStore`] honours the contract in [`crate::store`].
//!
//! # Testing your own store
//!
//! Add sessionkit with the `testing` feature to your dev-dependencies and
//! expand [`store_conformance_tests!`](crate::store_conformance_tests) in a
//! test module, with an expression that builds a fresh, empty store. It
//! becomes one `#[test]` per contract, named after it, so a failure says which
//! promise broke:
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::Mutex;
//! use std::time::SystemTime;
//!
//! use sessionkit::{expiry, Changes, SessionMap, SessionRecord, SessionStore, StoreError, StoreKey, UpdateOutcome};
//!
//! /// A third-party store: a map behind one lock.
//! #[derive(Default)]
//! pub struct LockedMapStore {
//!     records: Mutex<HashMap<StoreKey, SessionRecord>>,
//! }
//!
//! impl LockedMapStore {
//!     fn records(&self) -> std::sync::MutexGuard<'_, HashMap<StoreKey, SessionRecord>> {
//!         self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
//!     }
//! }
//!
//! #[sessionkit::async_trait]
//! impl SessionStore for LockedMapStore {
//!     async fn get(&self, key: &StoreKey) -> Result<Option<SessionRecord>, StoreError> {
//!         let now = expiry::now();
//!         Ok(self.records().get(key).filter(|r| !r.is_expired_at(now)).cloned())
//!     }
//!     async fn set(&self, key: &StoreKey, data: &SessionMap, expires_at: Option<SystemTime>) -> Result<(), StoreError> {
//!         self.records().insert(key.clone(), SessionRecord::new(data.clone(), expires_at));
//!         Ok(())
//!     }
//!     async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
//!         self.records().remove(key);
//!         Ok(())
//!     }
//!     async fn update(
//!         &self,
//!         key: &StoreKey,
//!         changes: &Changes,
//!         expires_at: Option<SystemTime>,
//!     ) -> Result<UpdateOutcome, StoreError> {
//!         // One lock around the read-modify-write makes it atomic.
//!         let now = expiry::now();
//!         let mut records = self.records();
//!         let Some(record) = records.get_mut(key).filter(|r| !r.is_expired_at(now)) else {
//!             return Ok(UpdateOutcome::Missing);
//!         };
//!         // A patch that fails to apply is refused whole: patch a copy.
//!         record.data = changes.applied_to(record.data.clone()).map_err(StoreError::Refused)?;
//!         record.expires_at = expires_at;
//!         Ok(UpdateOutcome::Applied)
//!     }
//!     async fn rename(
//!         &self,
//!         from: &StoreKey,
//!         to: &StoreKey,
//!         changes: &Changes,
//!         expires_at: Option<SystemTime>,
//!     ) -> Result<UpdateOutcome, StoreError> {
//!         let now = expiry::now();
//!         let mut records = self.records();
//!         let Some(record) = records.get(from).filter(|r| !r.is_expired_at(now)) else {
//!             return Ok(UpdateOutcome::Missing);
//!         };
//!         let data = changes.applied_to(record.data.clone()).map_err(StoreError::Refused)?;
//!         records.remove(from);
//!         records.insert(to.clone(), SessionRecord::new(data, expires_at));
//!         Ok(UpdateOutcome::Applied)
//!     }
//!     async fn delete_expired(&self) -> Result<u64, StoreError> {
//!         let now = expiry::now();
//!         let mut records = self.records();
//!         let before = records.len();
//!         records.retain(|_, r| !r.is_expired_at(now));
//!         Ok((before - records.len()) as u64)
//!     }
//! }
//!
//! #[cfg(test)]
//! mod conformance {
//!     sessionkit::store_conformance_tests!(async { super::LockedMapStore::default() });
//! }
//! # fn main() {
//! #     // Doctests do not run `#[test]`s; run every check here instead.
//! #     sessionkit::testing::block_on(sessionkit::testing::run_all(
//! #         || async { LockedMapStore::default() },
//! #         sessionkit::testing::Options::default(),
//! #     ));
//! # }
//! ```
//!
//! The kit checks the contract of [`crate::store`]: round trips, expiry,
//! patches, and above all atomicity, by racing operations that a `get`
//! then `set` would get wrong (a logout undone by a late update, a key lost
//! under a rename, increments lost under concurrency). The optional parts of
//! the contract, a user index, exclusive leases and scans, are checked when
//! the store offers them; a store that answers
//! [`StoreError::Unsupported`] to all of a part's methods passes that part.
//!
//! The factory is evaluated once per check, so each check starts from an
//! empty store. A store that needs a temporary directory or database can
//! keep it alive with [`Guarded`]. A store whose engine expires records by
//! itself (Redis) passes [`Options`] saying so.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::lease::{Lease, LeaseToken};
use crate::{
    Changes, PatchError, ScanCursor, ScanPage, SessionId, SessionMap, SessionRecord, SessionStore, StoreError,
    StoreKey, UpdateOutcome, expiry, reserved,
};

/// How the kit should treat a store's particularities.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct Options {
    /// The engine removes expired records on its own (Redis key expiry), so
    /// `delete_expired` may find fewer expired records than were written,
    /// down to none. Every other promise is checked as usual.
    pub expires_on_its_own: bool,
}

impl Options {
    /// Options for an engine that removes expired records on its own.
    pub fn expiring_on_its_own() -> Self {
        Self { expires_on_its_own: true }
    }
}

/// A store together with something that must live as long as it (a
/// temporary directory, a database server handle).
pub struct Guarded<S, G> {
    store: S,
    _guard: G,
}

impl<S, G> Guarded<S, G> {
    /// Keeps `guard` alive as long as `store`.
    pub fn new(store: S, guard: G) -> Self {
        Self { store, _guard: guard }
    }
}

#[async_trait::async_trait]
impl<S: SessionStore, G: Send + Sync + 'static> SessionStore for Guarded<S, G> {
    async fn get(&self, key: &StoreKey) -> Result<Option<SessionRecord>, StoreError> {
        self.store.get(key).await
    }
    async fn set(&self, key: &StoreKey, data: &SessionMap, expires_at: Option<SystemTime>) -> Result<(), StoreError> {
        self.store.set(key, data, expires_at).await
    }
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.store.delete(key).await
    }
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.store.delete_expired().await
    }
    async fn touch(&self, key: &StoreKey, expires_at: Option<SystemTime>) -> Result<bool, StoreError> {
        self.store.touch(key, expires_at).await
    }
    async fn update(
        &self,
        key: &StoreKey,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        self.store.update(key, changes, expires_at).await
    }
    async fn rename(
        &self,
        from: &StoreKey,
        to: &StoreKey,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        self.store.rename(from, to, changes, expires_at).await
    }
    async fn sessions_of(&self, user: &str) -> Result<Vec<(StoreKey, SessionRecord)>, StoreError> {
        self.store.sessions_of(user).await
    }
    async fn revoke(&self, user: &str, key: &StoreKey) -> Result<bool, StoreError> {
        self.store.revoke(user, key).await
    }
    async fn revoke_all(&self, user: &str, except: Option<&StoreKey>) -> Result<u64, StoreError> {
        self.store.revoke_all(user, except).await
    }
    async fn scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage, StoreError> {
        self.store.scan(cursor, limit).await
    }
    async fn try_lease(&self, key: &StoreKey, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        self.store.try_lease(key, ttl).await
    }
    async fn release_lease(&self, key: &StoreKey, token: LeaseToken) -> Result<(), StoreError> {
        self.store.release_lease(key, token).await
    }
}

/// Runs `future` to completion on a multi-threaded tokio runtime, so that
/// the concurrency checks run in parallel for real.
pub fn block_on<F: Future>(future: F) -> F::Output {
    match tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build() {
        Ok(runtime) => runtime.block_on(future),
        Err(err) => panic!("conformance kit: cannot start a tokio runtime: {err}"),
    }
}

/// Expands to one `#[test]` per store contract, each on a fresh store made by
/// evaluating `$factory` (an expression of type `impl Future<Output = impl
/// SessionStore>`, such as `async { MyStore::new() }`). An optional second
/// argument gives [`testing::Options`](crate::testing::Options).
#[macro_export]
macro_rules! store_conformance_tests {
    ($factory:expr) => {
        $crate::store_conformance_tests!($factory, $crate::testing::Options::default());
    };
    ($factory:expr, $options:expr) => {
        $crate::__conformance_checks!(tests($factory, $options));
    };
}

/// The one list of checks, handed to the test generator or to [`run_all`].
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks {
    ($mode:ident $args:tt) => {
        $crate::__conformance_checks!(@each $mode $args;
            round_trip_keeps_nested_and_unicode_data,
            round_trip_keeps_a_one_mebibyte_record,
            set_overwrites_the_whole_record,
            delete_is_idempotent,
            missing_ids_read_as_none,
            expired_records_are_never_returned,
            touch_moves_only_the_expiry,
            touch_ignores_missing_and_expired_records,
            update_applies_set_remove_and_clear,
            update_never_recreates_a_missing_record,
            concurrent_updates_lose_no_key,
            delete_expired_removes_exactly_the_expired,
            ten_thousand_sessions_coexist,
            update_and_touch_never_undo_a_concurrent_delete,
            rename_moves_the_patched_record,
            rename_never_recreates_a_missing_record,
            rename_never_loses_a_concurrent_update,
            sessions_of_lists_a_users_live_sessions,
            revoke_reaches_only_the_users_own_sessions,
            revoke_all_spares_a_session_just_renamed,
            the_user_index_matches_the_records_under_a_storm,
            concurrent_increments_all_count,
            concurrent_pushes_all_land_and_keep_last_holds,
            a_failing_operation_refuses_the_whole_patch,
            the_size_limit_holds_on_the_stored_result,
            leases_exclude_expire_and_fence,
            scan_returns_every_live_record_once,
        );
    };
    (@each tests($factory:expr, $options:expr); $($check:ident,)*) => {
        $(
            #[test]
            fn $check() {
                $crate::testing::block_on(async {
                    let store = ::std::sync::Arc::new($factory.await);
                    $crate::testing::checks::$check(store, $options).await;
                });
            }
        )*
    };
    (@each run($factory:expr, $options:expr); $($check:ident,)*) => {
        $( $crate::testing::checks::$check(::std::sync::Arc::new($factory().await), $options).await; )*
    };
}

/// Runs every check in turn, each on a fresh store from `factory`.
pub async fn run_all<S, F, Fut>(factory: F, options: Options)
where
    S: SessionStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    crate::__conformance_checks!(run(factory, options));
}

/// The individual checks. Each takes a fresh, empty store and panics with a
/// message naming the broken promise.
pub mod checks {
    use super::*;

    fn data(value: Value) -> SessionMap {
        match value {
            Value::Object(map) => map,
            other => panic!("conformance kit bug: {other} is not an object"),
        }
    }

    fn in_secs(secs: u64) -> SystemTime {
        expiry::now() + Duration::from_secs(secs)
    }

    fn must<T>(what: &str, result: Result<T, StoreError>) -> T {
        match result {
            Ok(value) => value,
            Err(err) => panic!("store failed on {what}: {err} ({err:?})"),
        }
    }

    async fn get<S: SessionStore>(store: &S, id: &StoreKey) -> Option<SessionRecord> {
        must("get", store.get(id).await)
    }

    async fn set<S: SessionStore>(store: &S, id: &StoreKey, value: Value, expires_at: Option<SystemTime>) {
        must("set", store.set(id, &data(value), expires_at).await);
    }

    fn record(value: Value, expires_at: Option<SystemTime>) -> SessionRecord {
        SessionRecord::new(data(value), expires_at)
    }

    /// Nested objects and arrays, unicode in keys and values, extreme
    /// numbers, and records with and without expiry come back unchanged.
    pub async fn round_trip_keeps_nested_and_unicode_data<S: SessionStore>(store: Arc<S>, _: Options) {
        let rich = json!({
            "user": { "name": "Zoë Ørsted", "roles": ["admin", "ops"], "age": null },
            "ключ": "значение",
            "emoji 😀": "🦀 and \u{0} and \"quotes\" and \\ backslash and \n newline",
            "nul\u{0}inside": "a\u{0}b",
            "numbers": [0, -1, 9_007_199_254_740_993_i64, u64::MAX, i64::MIN, 0.1, -2.5e-300, 1e300],
            "flags": [true, false],
            "deep": { "a": { "b": { "c": { "d": [[[{}]]] } } } },
            "empty": { "object": {}, "array": [], "string": "" },
        });
        let cases = [
            (key(), record(rich.clone(), Some(in_secs(3600)))),
            (key(), record(rich, None)),
            (key(), record(json!({}), Some(in_secs(60)))),
        ];
        for (id, expected) in &cases {
            must("set", store.set(id, &expected.data, expected.expires_at).await);
        }
        for (id, expected) in &cases {
            let got = get(&*store, id).await;
            assert_eq!(got.as_ref(), Some(expected), "a record must read back exactly as written");
        }
    }

    /// A 1 MiB record (the layer's default size limit) round-trips.
    pub async fn round_trip_keeps_a_one_mebibyte_record<S: SessionStore>(store: Arc<S>, _: Options) {
        let blob: String = (0..1024 * 1024).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let items: Vec<Value> = (0..2_000).map(|i| json!({ "sku": format!("item-{i}"), "qty": i })).collect();
        let expected = record(json!({ "blob": blob, "items": items }), Some(in_secs(3600)));
        let id = key();
        must("set", store.set(&id, &expected.data, expected.expires_at).await);
        let got = get(&*store, &id).await;
        assert!(got.as_ref() == Some(&expected), "a 1 MiB record must read back exactly as written");
    }

    /// `set` replaces the whole record: old keys and the old expiry go.
    pub async fn set_overwrites_the_whole_record<S: SessionStore>(store: Arc<S>, _: Options) {
        let id = key();
        set(&*store, &id, json!({ "a": 1, "b": 2 }), Some(in_secs(60))).await;
        set(&*store, &id, json!({ "b": 3 }), Some(in_secs(120))).await;
        let got = get(&*store, &id).await.unwrap_or_else(|| panic!("a record that was set must be found"));
        assert_eq!(Value::Object(got.data), json!({ "b": 3 }), "set must replace the data, not merge it");
        let expires = got.expires_at.unwrap_or_else(|| panic!("set must replace the expiry"));
        assert!(expires > in_secs(90), "set must replace the expiry");
        set(&*store, &id, json!({ "c": 4 }), None).await;
        assert_eq!(
            get(&*store, &id).await.and_then(|r| r.expires_at),
            None,
            "set with no expiry must clear the expiry"
        );
    }

    /// Deleting twice, or deleting what never existed, is not an error.
    pub async fn delete_is_idempotent<S: SessionStore>(store: Arc<S>, _: Options) {
        let id = key();
        let other = key();
        set(&*store, &id, json!({ "a": 1 }), Some(in_secs(60))).await;
        set(&*store, &other, json!({ "b": 1 }), Some(in_secs(60))).await;
        must("delete", store.delete(&id).await);
        assert_eq!(get(&*store, &id).await, None, "a deleted record must be gone");
        must("delete of a deleted record", store.delete(&id).await);
        must("delete of a record that never existed", store.delete(&key()).await);
        assert!(get(&*store, &other).await.is_some(), "delete must remove only its own record");
    }

    /// Ids that were never stored read as `None`.
    pub async fn missing_ids_read_as_none<S: SessionStore>(store: Arc<S>, _: Options) {
        for _ in 0..10 {
            assert_eq!(get(&*store, &key()).await, None);
        }
        set(&*store, &key(), json!({ "a": 1 }), None).await;
        assert_eq!(get(&*store, &key()).await, None);
    }

    /// An expired record is never returned, whether or not a sweep ran:
    /// neither one written already expired, nor one that expires while stored.
    pub async fn expired_records_are_never_returned<S: SessionStore>(store: Arc<S>, _: Options) {
        let past = key();
        set(&*store, &past, json!({ "a": 1 }), Some(expiry::now() - Duration::from_secs(1))).await;
        assert_eq!(get(&*store, &past).await, None, "a record written already expired must not be returned");

        let soon = key();
        let expires_at = expiry::now() + Duration::from_millis(1_000);
        set(&*store, &soon, json!({ "a": 1 }), Some(expires_at)).await;
        assert!(get(&*store, &soon).await.is_some(), "a live record must be returned");
        let wait = expires_at.duration_since(SystemTime::now()).unwrap_or_default() + Duration::from_millis(20);
        tokio::time::sleep(wait).await;
        assert_eq!(get(&*store, &soon).await, None, "a record must not be returned once it has expired");
    }

    /// `touch` moves the expiry, leaves the data alone and reports that the
    /// record existed.
    pub async fn touch_moves_only_the_expiry<S: SessionStore>(store: Arc<S>, _: Options) {
        let id = key();
        let value = json!({ "cart": [1, 2, 3], "name": "ada" });
        set(&*store, &id, value.clone(), Some(in_secs(60))).await;
        let later = in_secs(7200);
        assert!(must("touch", store.touch(&id, Some(later)).await), "touch of a live record must return true");
        assert_eq!(
            get(&*store, &id).await,
            Some(record(value.clone(), Some(later))),
            "touch must move the expiry only"
        );
        assert!(must("touch", store.touch(&id, None).await), "touch to no expiry must return true");
        assert_eq!(get(&*store, &id).await, Some(record(value, None)), "touch to `None` must remove the expiry");
    }

    /// `touch` on a missing or expired record does nothing and says so.
    pub async fn touch_ignores_missing_and_expired_records<S: SessionStore>(store: Arc<S>, _: Options) {
        let missing = key();
        assert!(
            !must("touch", store.touch(&missing, Some(in_secs(60))).await),
            "touch of a missing record must return false"
        );
        assert_eq!(get(&*store, &missing).await, None, "touch must not create a record");

        let expired = key();
        set(&*store, &expired, json!({ "a": 1 }), Some(expiry::now() - Duration::from_secs(1))).await;
        assert!(
            !must("touch", store.touch(&expired, Some(in_secs(60))).await),
            "touch of an expired record must return false"
        );
        assert_eq!(get(&*store, &expired).await, None, "touch must not revive an expired record");
    }

    /// `update` applies sets, removes and clears key by key, and sets the expiry.
    pub async fn update_applies_set_remove_and_clear<S: SessionStore>(store: Arc<S>, _: Options) {
        let id = key();
        set(&*store, &id, json!({ "keep": 1, "change": 2, "drop": 3 }), Some(in_secs(60))).await;

        let mut changes = Changes::new();
        changes.set("change", json!({ "now": "an object" }));
        changes.set("new", json!([1, "two"]));
        changes.remove("drop");
        changes.remove("never-there");
        let later = in_secs(600);
        assert_eq!(must("update", store.update(&id, &changes, Some(later)).await), UpdateOutcome::Applied);
        let expected = json!({ "keep": 1, "change": { "now": "an object" }, "new": [1, "two"] });
        assert_eq!(get(&*store, &id).await, Some(record(expected, Some(later))), "update must apply each change");

        let mut clearing = Changes::new();
        clearing.clear();
        clearing.set("after", json!(true));
        assert_eq!(must("update", store.update(&id, &clearing, None).await), UpdateOutcome::Applied);
        assert_eq!(
            get(&*store, &id).await,
            Some(record(json!({ "after": true }), None)),
            "a clear must drop every key before the sets"
        );

        let empty = Changes::new();
        assert_eq!(must("update", store.update(&id, &empty, Some(later)).await), UpdateOutcome::Applied);
        assert_eq!(
            get(&*store, &id).await,
            Some(record(json!({ "after": true }), Some(later))),
            "an empty patch still sets the expiry"
        );
    }

    /// `update` on a missing, deleted or expired record reports `Missing`
    /// and writes nothing: a destroyed session is never brought back.
    pub async fn update_never_recreates_a_missing_record<S: SessionStore>(store: Arc<S>, _: Options) {
        let mut changes = Changes::new();
        changes.set("a", json!(1));

        let never = key();
        assert_eq!(must("update", store.update(&never, &changes, Some(in_secs(60))).await), UpdateOutcome::Missing);
        assert_eq!(get(&*store, &never).await, None, "update must not create a record");

        let deleted = key();
        set(&*store, &deleted, json!({ "b": 1 }), Some(in_secs(60))).await;
        must("delete", store.delete(&deleted).await);
        assert_eq!(must("update", store.update(&deleted, &changes, Some(in_secs(60))).await), UpdateOutcome::Missing);
        assert_eq!(get(&*store, &deleted).await, None, "update must not resurrect a deleted record");

        let expired = key();
        set(&*store, &expired, json!({ "b": 1 }), Some(expiry::now() - Duration::from_secs(1))).await;
        assert_eq!(must("update", store.update(&expired, &changes, Some(in_secs(60))).await), UpdateOutcome::Missing);
        assert_eq!(get(&*store, &expired).await, None, "update must not revive an expired record");
    }

    /// 64 concurrent updates, each to its own key of one session, all survive.
    pub async fn concurrent_updates_lose_no_key<S: SessionStore>(store: Arc<S>, _: Options) {
        const WRITERS: usize = 64;
        let id = key();
        set(&*store, &id, json!({ "base": true }), Some(in_secs(600))).await;
        let expires_at = in_secs(600);
        let tasks: Vec<_> = (0..WRITERS)
            .map(|i| {
                let (store, id) = (Arc::clone(&store), id.clone());
                tokio::spawn(async move {
                    let mut changes = Changes::new();
                    changes.set(format!("k{i}"), json!(i));
                    store.update(&id, &changes, Some(expires_at)).await
                })
            })
            .collect();
        for task in tasks {
            match task.await {
                Ok(result) => assert_eq!(must("concurrent update", result), UpdateOutcome::Applied),
                Err(err) => panic!("an update task panicked: {err}"),
            }
        }
        let got = get(&*store, &id).await.unwrap_or_else(|| panic!("the session vanished under concurrent updates"));
        let lost: Vec<String> = (0..WRITERS).map(|i| format!("k{i}")).filter(|k| !got.data.contains_key(k)).collect();
        assert!(lost.is_empty(), "concurrent updates lost keys {lost:?}: update is not atomic");
        assert_eq!(got.data.get("base"), Some(&json!(true)), "concurrent updates lost an untouched key");
        assert_eq!(got.data.len(), WRITERS + 1);
    }

    /// `delete_expired` removes exactly the expired records, returns their
    /// count, and leaves live records and records without expiry alone.
    pub async fn delete_expired_removes_exactly_the_expired<S: SessionStore>(store: Arc<S>, options: Options) {
        let past = expiry::now() - Duration::from_secs(5);
        let expired: Vec<StoreKey> = (0..25).map(|_| key()).collect();
        let live: Vec<StoreKey> = (0..30).map(|_| key()).collect();
        let forever: Vec<StoreKey> = (0..5).map(|_| key()).collect();
        for id in &expired {
            set(&*store, id, json!({ "x": "expired" }), Some(past)).await;
        }
        for id in &live {
            set(&*store, id, json!({ "x": "live" }), Some(in_secs(3600))).await;
        }
        for id in &forever {
            set(&*store, id, json!({ "x": "forever" }), None).await;
        }
        let removed = must("delete_expired", store.delete_expired().await);
        if options.expires_on_its_own {
            assert!(
                removed <= expired.len() as u64,
                "delete_expired removed {removed}, more than the {} expired",
                expired.len()
            );
        } else {
            assert_eq!(
                removed,
                expired.len() as u64,
                "delete_expired must return the number of expired records it removed"
            );
        }
        for id in live.iter().chain(&forever) {
            assert!(get(&*store, id).await.is_some(), "delete_expired removed a live record");
        }
        for id in &expired {
            assert_eq!(get(&*store, id).await, None);
        }
        assert_eq!(must("delete_expired", store.delete_expired().await), 0, "a second sweep must find nothing");
    }

    /// 10,000 sessions written concurrently coexist, each with its own data.
    pub async fn ten_thousand_sessions_coexist<S: SessionStore>(store: Arc<S>, _: Options) {
        const SESSIONS: usize = 10_000;
        const TASKS: usize = 16;
        let ids: Arc<Vec<StoreKey>> = Arc::new((0..SESSIONS).map(|_| key()).collect());
        let expires_at = in_secs(3600);
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let (store, ids) = (Arc::clone(&store), Arc::clone(&ids));
                tokio::spawn(async move {
                    for (i, id) in ids.iter().enumerate().skip(task).step_by(TASKS) {
                        store.set(id, &data(json!({ "n": i })), Some(expires_at)).await?;
                    }
                    Ok::<_, StoreError>(())
                })
            })
            .collect();
        for task in tasks {
            match task.await {
                Ok(result) => must("set", result),
                Err(err) => panic!("a writer task panicked: {err}"),
            }
        }
        for (i, id) in ids.iter().enumerate() {
            let got = get(&*store, id).await.unwrap_or_else(|| panic!("session {i} of {SESSIONS} is missing"));
            assert_eq!(got.data.get("n"), Some(&json!(i)), "session {i} holds another session's data");
        }
    }

    /// A fresh store key, as the layer derives from a fresh id.
    pub fn key() -> StoreKey {
        StoreKey::hashed(&SessionId::generate())
    }

    /// Session data bound to `user`, as a login leaves it.
    fn owned(user: &str, value: Value) -> SessionMap {
        let mut map = data(value);
        map.insert(reserved::USER.to_owned(), Value::from(user));
        map
    }

    /// Runs `a` and `b` at the same moment (a barrier releases both).
    async fn race<A, B, FA, FB>(a: A, b: B) -> (FA::Output, FB::Output)
    where
        A: FnOnce() -> FA + Send + 'static,
        B: FnOnce() -> FB + Send + 'static,
        FA: Future + Send + 'static,
        FB: Future + Send + 'static,
        FA::Output: Send + 'static,
        FB::Output: Send + 'static,
    {
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let (first, second) = (Arc::clone(&barrier), barrier);
        let a = tokio::spawn(async move {
            first.wait().await;
            a().await
        });
        let b = tokio::spawn(async move {
            second.wait().await;
            b().await
        });
        match (a.await, b.await) {
            (Ok(a), Ok(b)) => (a, b),
            _ => panic!("a racing task panicked"),
        }
    }

    /// How many times each race is run: enough for a non-atomic
    /// read-modify-write to lose at least once on any engine.
    const ROUNDS: usize = 200;

    /// A `delete` racing an `update` or a `touch` of the same session always
    /// ends with the session gone: whichever runs first, the delete wins.
    /// (A `get` then `set` lets the `set` bring the session back.)
    pub async fn update_and_touch_never_undo_a_concurrent_delete<S: SessionStore>(store: Arc<S>, _: Options) {
        for round in 0..ROUNDS {
            let id = key();
            set(&*store, &id, json!({ "n": round }), Some(in_secs(600))).await;
            let (deleter, updater) = (Arc::clone(&store), Arc::clone(&store));
            let (gone, updated) = (id.clone(), id.clone());
            let (deleted, outcome) = if round % 2 == 0 {
                race(
                    move || async move { deleter.delete(&gone).await },
                    move || async move {
                        let mut changes = Changes::new();
                        changes.set("late", json!(true));
                        updater.update(&updated, &changes, Some(in_secs(600))).await.map(|_| ())
                    },
                )
                .await
            } else {
                race(
                    move || async move { deleter.delete(&gone).await },
                    move || async move { updater.touch(&updated, Some(in_secs(900))).await.map(|_| ()) },
                )
                .await
            };
            must("delete", deleted);
            must(if round % 2 == 0 { "update" } else { "touch" }, outcome);
            assert_eq!(
                get(&*store, &id).await,
                None,
                "an {} racing a delete brought the session back (round {round}): it is not atomic",
                if round % 2 == 0 { "update" } else { "touch" }
            );
        }
    }

    /// `rename` moves a live record to the new key with the patch applied
    /// and the new expiry, and the old key is gone.
    pub async fn rename_moves_the_patched_record<S: SessionStore>(store: Arc<S>, _: Options) {
        let (from, to) = (key(), key());
        must("set", store.set(&from, &owned("ada", json!({ "keep": 1, "drop": 2 })), Some(in_secs(60))).await);
        let mut changes = Changes::new();
        changes.remove("drop");
        changes.set("new", json!("yes"));
        changes.increment("visits", 2).unwrap_or_else(|err| panic!("{err}"));
        let later = in_secs(600);
        assert_eq!(must("rename", store.rename(&from, &to, &changes, Some(later)).await), UpdateOutcome::Applied);
        assert_eq!(get(&*store, &from).await, None, "rename must remove the old key");
        let expected = SessionRecord::new(owned("ada", json!({ "keep": 1, "new": "yes", "visits": 2 })), Some(later));
        assert_eq!(get(&*store, &to).await, Some(expected), "rename must move the patched record with its new expiry");
    }

    /// `rename` of a missing, deleted or expired record reports `Missing`
    /// and writes nothing under either key.
    pub async fn rename_never_recreates_a_missing_record<S: SessionStore>(store: Arc<S>, _: Options) {
        let mut changes = Changes::new();
        changes.set("a", json!(1));
        let (never, deleted, expired) = (key(), key(), key());
        set(&*store, &deleted, json!({ "b": 1 }), Some(in_secs(60))).await;
        must("delete", store.delete(&deleted).await);
        set(&*store, &expired, json!({ "b": 1 }), Some(expiry::now() - Duration::from_secs(1))).await;
        for from in [never, deleted, expired] {
            let to = key();
            assert_eq!(
                must("rename", store.rename(&from, &to, &changes, Some(in_secs(60))).await),
                UpdateOutcome::Missing,
                "rename of a record that is not live must report Missing"
            );
            assert_eq!(get(&*store, &to).await, None, "rename must not create a record under the new key");
            assert_eq!(get(&*store, &from).await, None, "rename must not revive the old key");
        }
    }

    /// An `update` racing a `rename` of the same session is never lost: if
    /// the update reports `Applied`, its key is in the renamed record.
    /// (A `get` then `set` under the new key drops it.)
    pub async fn rename_never_loses_a_concurrent_update<S: SessionStore>(store: Arc<S>, _: Options) {
        for round in 0..ROUNDS {
            let (from, to) = (key(), key());
            set(&*store, &from, json!({ "round": round }), Some(in_secs(600))).await;
            let (renamer, updater) = (Arc::clone(&store), Arc::clone(&store));
            let (old, new, updated) = (from.clone(), to.clone(), from.clone());
            let (renamed, outcome) = race(
                move || async move { renamer.rename(&old, &new, &Changes::new(), Some(in_secs(600))).await },
                move || async move {
                    let mut changes = Changes::new();
                    changes.set("cart", json!(["book"]));
                    updater.update(&updated, &changes, Some(in_secs(600))).await
                },
            )
            .await;
            assert_eq!(must("rename", renamed), UpdateOutcome::Applied, "the record was live: rename must apply");
            let moved = get(&*store, &to).await.unwrap_or_else(|| panic!("the renamed record is missing"));
            if must("update", outcome) == UpdateOutcome::Applied {
                assert_eq!(
                    moved.data.get("cart"),
                    Some(&json!(["book"])),
                    "an update acknowledged while the session was renamed was lost (round {round}): rename is not atomic"
                );
            }
            assert_eq!(get(&*store, &from).await, None, "the old key must be gone after a rename");
        }
    }

    /// Whether the store has a user index; if it says `Unsupported` for
    /// listing, it must say so for every index operation.
    async fn has_user_index<S: SessionStore>(store: &S) -> bool {
        match store.sessions_of("anyone").await {
            Err(StoreError::Unsupported { .. }) => {
                let revoke = store.revoke("anyone", &key()).await;
                let revoke_all = store.revoke_all("anyone", None).await;
                assert!(
                    matches!(revoke, Err(StoreError::Unsupported { .. }))
                        && matches!(revoke_all, Err(StoreError::Unsupported { .. })),
                    "a store without a user index must answer Unsupported to revoke and revoke_all too"
                );
                false
            }
            other => {
                assert_eq!(must("sessions_of", other), Vec::new(), "an empty store lists nobody's sessions");
                true
            }
        }
    }

    /// The keys `user`'s listing holds, sorted, checking each listed record
    /// against the store.
    async fn listed<S: SessionStore>(store: &S, user: &str) -> Vec<StoreKey> {
        let mut keys = Vec::new();
        for (listed_key, record) in must("sessions_of", store.sessions_of(user).await) {
            assert_eq!(record.user(), Some(user), "a listing shows a session of another user");
            assert_eq!(
                get(store, &listed_key).await.as_ref(),
                Some(&record),
                "a listing shows a session that is not live, or not as stored"
            );
            keys.push(listed_key);
        }
        keys.sort();
        let total = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), total, "a listing shows one session twice");
        keys
    }

    fn sorted(mut keys: Vec<StoreKey>) -> Vec<StoreKey> {
        keys.sort();
        keys
    }

    /// A user's listing holds exactly their live sessions, and follows every
    /// write: sets, updates, renames, deletes, expiry and sweeps.
    pub async fn sessions_of_lists_a_users_live_sessions<S: SessionStore>(store: Arc<S>, _: Options) {
        if !has_user_index(&*store).await {
            return;
        }
        let (a1, a2, b1, anon, expired, soon) = (key(), key(), key(), key(), key(), key());
        must("set", store.set(&a1, &owned("ada", json!({ "ua": "phone" })), Some(in_secs(600))).await);
        must("set", store.set(&a2, &owned("ada", json!({ "ua": "laptop" })), None).await);
        must("set", store.set(&b1, &owned("bob", json!({})), Some(in_secs(600))).await);
        set(&*store, &anon, json!({ "no": "user" }), Some(in_secs(600))).await;
        let past = Some(expiry::now() - Duration::from_secs(1));
        must("set", store.set(&expired, &owned("ada", json!({})), past).await);
        let soon_at = expiry::now() + Duration::from_millis(1_000);
        must("set", store.set(&soon, &owned("ada", json!({})), Some(soon_at)).await);
        assert_eq!(listed(&*store, "ada").await, sorted(vec![a1.clone(), a2.clone(), soon.clone()]));
        assert_eq!(listed(&*store, "bob").await, vec![b1.clone()]);
        assert_eq!(listed(&*store, "nobody").await, Vec::new());

        let wait = soon_at.duration_since(SystemTime::now()).unwrap_or_default() + Duration::from_millis(20);
        tokio::time::sleep(wait).await;
        assert_eq!(
            listed(&*store, "ada").await,
            sorted(vec![a1.clone(), a2.clone()]),
            "an expired session must drop out of the listing, swept or not"
        );
        must("delete_expired", store.delete_expired().await);
        assert_eq!(listed(&*store, "ada").await, sorted(vec![a1.clone(), a2.clone()]), "a sweep keeps live entries");

        let mut changes = Changes::new();
        changes.set("ua", json!("tablet"));
        assert_eq!(must("update", store.update(&a1, &changes, Some(in_secs(600))).await), UpdateOutcome::Applied);
        let renamed = key();
        assert_eq!(must("rename", store.rename(&a2, &renamed, &Changes::new(), None).await), UpdateOutcome::Applied);
        assert_eq!(
            listed(&*store, "ada").await,
            sorted(vec![a1.clone(), renamed.clone()]),
            "a rename must move the listing to the new key"
        );
        must("delete", store.delete(&a1).await);
        assert_eq!(listed(&*store, "ada").await, vec![renamed.clone()], "a deleted session must drop out");

        // The user travels with the data: a set or an update can move it.
        must("set", store.set(&b1, &owned("ada", json!({})), Some(in_secs(600))).await);
        assert_eq!(listed(&*store, "bob").await, Vec::new(), "a set that changes the user must move the session");
        assert_eq!(listed(&*store, "ada").await, sorted(vec![renamed.clone(), b1.clone()]));
        let mut to_bob = Changes::new();
        to_bob.set(reserved::USER, json!("bob"));
        assert_eq!(must("update", store.update(&b1, &to_bob, Some(in_secs(600))).await), UpdateOutcome::Applied);
        assert_eq!(listed(&*store, "bob").await, vec![b1.clone()], "an update that changes the user moves the session");
        let mut cleared = Changes::new();
        cleared.clear();
        assert_eq!(must("update", store.update(&b1, &cleared, Some(in_secs(600))).await), UpdateOutcome::Applied);
        assert_eq!(
            listed(&*store, "bob").await,
            Vec::new(),
            "a clear that drops the user drops the session from its listing"
        );
    }

    /// `revoke` deletes a user's own session only; `revoke_all` deletes all
    /// of them but the one spared, and counts them.
    pub async fn revoke_reaches_only_the_users_own_sessions<S: SessionStore>(store: Arc<S>, _: Options) {
        if !has_user_index(&*store).await {
            return;
        }
        let ada: Vec<StoreKey> = (0..4).map(|_| key()).collect();
        let bob = key();
        for id in &ada {
            must("set", store.set(id, &owned("ada", json!({})), Some(in_secs(600))).await);
        }
        must("set", store.set(&bob, &owned("bob", json!({ "keep": true })), Some(in_secs(600))).await);
        assert!(!must("revoke", store.revoke("ada", &bob).await), "revoking another user's session must refuse");
        assert!(get(&*store, &bob).await.is_some(), "a refused revoke must leave the session alone");
        assert!(!must("revoke", store.revoke("ada", &key()).await), "revoking an unknown key reports false");
        assert!(must("revoke", store.revoke("ada", &ada[0]).await), "revoking the user's session reports true");
        assert_eq!(get(&*store, &ada[0]).await, None, "a revoked session is gone");
        assert!(!must("revoke", store.revoke("ada", &ada[0]).await), "revoking twice reports false");
        assert_eq!(
            must("revoke_all", store.revoke_all("ada", Some(&ada[1])).await),
            2,
            "revoke_all counts what it deleted"
        );
        assert_eq!(listed(&*store, "ada").await, vec![ada[1].clone()], "revoke_all must spare the exception only");
        assert_eq!(get(&*store, &ada[3]).await, None);
        assert_eq!(must("revoke_all", store.revoke_all("ada", None).await), 1);
        assert_eq!(listed(&*store, "ada").await, Vec::new());
        assert!(get(&*store, &bob).await.is_some(), "revoking ada's sessions must leave bob's alone");
        assert_eq!(must("revoke_all", store.revoke_all("nobody", None).await), 0);
    }

    /// `revoke_all` spares its exception even right after that session was
    /// renamed (a "sign out my other sessions" just after a login), and
    /// counts only live sessions it ended.
    pub async fn revoke_all_spares_a_session_just_renamed<S: SessionStore>(store: Arc<S>, _: Options) {
        if !has_user_index(&*store).await {
            return;
        }
        let (before, current) = (key(), key());
        must("set", store.set(&before, &owned("ada", json!({})), Some(in_secs(600))).await);
        assert_eq!(
            must("rename", store.rename(&before, &current, &Changes::new(), Some(in_secs(600))).await),
            UpdateOutcome::Applied
        );
        let (other_before, other) = (key(), key());
        must("set", store.set(&other_before, &owned("ada", json!({})), Some(in_secs(600))).await);
        assert_eq!(
            must("rename", store.rename(&other_before, &other, &Changes::new(), Some(in_secs(600))).await),
            UpdateOutcome::Applied
        );
        assert_eq!(
            must("revoke_all", store.revoke_all("ada", Some(&current)).await),
            1,
            "revoke_all must count the one other live session, not the keys renamed away"
        );
        assert!(
            get(&*store, &current).await.is_some(),
            "revoke_all must spare a session just renamed into its exception"
        );
        assert_eq!(get(&*store, &other).await, None);
        assert_eq!(listed(&*store, "ada").await, vec![current]);
    }

    /// Under concurrent logins, logouts, renames, revocations and writes,
    /// each user's listing ends up holding exactly that user's live
    /// sessions: the index neither loses nor invents one.
    pub async fn the_user_index_matches_the_records_under_a_storm<S: SessionStore>(store: Arc<S>, _: Options) {
        if !has_user_index(&*store).await {
            return;
        }
        const TASKS: usize = 16;
        const STEPS: usize = 40;
        const USERS: [&str; 3] = ["ada", "bob", "cy"];
        // The storm ends with every task logging in at the same moment, so
        // that many sessions are live at the end, all written concurrently.
        let finale = Arc::new(tokio::sync::Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let (store, finale) = (Arc::clone(&store), Arc::clone(&finale));
                tokio::spawn(async move {
                    // Every key this task ever wrote, for the final tally.
                    let mut seen = Vec::new();
                    let mut mine: Vec<StoreKey> = Vec::new();
                    // Every task reaches the finale, even one whose steps failed.
                    let steps = async {
                        for step in 0..STEPS {
                            let user = USERS[(task + step) % USERS.len()];
                            match (task * 7 + step * 3) % 6 {
                                0 | 1 => {
                                    let id = key();
                                    store.set(&id, &owned(user, json!({ "task": task })), Some(in_secs(600))).await?;
                                    seen.push(id.clone());
                                    mine.push(id);
                                }
                                2 => {
                                    if let Some(from) = mine.pop() {
                                        let to = key();
                                        seen.push(to.clone());
                                        if store.rename(&from, &to, &Changes::new(), Some(in_secs(600))).await?
                                            == UpdateOutcome::Applied
                                        {
                                            mine.push(to);
                                        }
                                    }
                                }
                                3 => {
                                    if let Some(gone) = mine.pop() {
                                        store.delete(&gone).await?;
                                    }
                                }
                                4 => {
                                    let spare = mine.last();
                                    store.revoke_all(user, spare).await?;
                                }
                                _ => {
                                    if let Some(id) = mine.first() {
                                        store.revoke(user, id).await?;
                                        let mut changes = Changes::new();
                                        changes.set("step", json!(step));
                                        let _ = store.update(id, &changes, Some(in_secs(600))).await?;
                                    }
                                }
                            }
                        }
                        Ok::<_, StoreError>(())
                    }
                    .await;
                    finale.wait().await;
                    steps?;
                    let last = key();
                    let user = USERS[task % USERS.len()];
                    store.set(&last, &owned(user, json!({ "task": task })), Some(in_secs(600))).await?;
                    seen.push(last);
                    Ok::<_, StoreError>(seen)
                })
            })
            .collect();
        let mut every = Vec::new();
        for task in tasks {
            match task.await {
                Ok(result) => every.extend(must("the storm", result)),
                Err(err) => panic!("a storm task panicked: {err}"),
            }
        }
        for user in USERS {
            let mut alive = Vec::new();
            for id in &every {
                if get(&*store, id).await.is_some_and(|record| record.user() == Some(user)) {
                    alive.push(id.clone());
                }
            }
            assert_eq!(
                listed(&*store, user).await,
                sorted(alive),
                "after the storm, {user}'s listing is not the set of {user}'s live sessions"
            );
        }
    }

    /// 64 concurrent increments of one key end at exactly 64, beside
    /// untouched keys.
    pub async fn concurrent_increments_all_count<S: SessionStore>(store: Arc<S>, _: Options) {
        const WRITERS: i64 = 64;
        let id = key();
        set(&*store, &id, json!({ "other": "kept" }), Some(in_secs(600))).await;
        let tasks: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (store, id) = (Arc::clone(&store), id.clone());
                tokio::spawn(async move {
                    let mut changes = Changes::new();
                    changes.increment("visits", 1).map_err(StoreError::Refused)?;
                    store.update(&id, &changes, Some(in_secs(600))).await
                })
            })
            .collect();
        for task in tasks {
            match task.await {
                Ok(result) => assert_eq!(must("increment", result), UpdateOutcome::Applied),
                Err(err) => panic!("an increment task panicked: {err}"),
            }
        }
        let got = get(&*store, &id).await.unwrap_or_else(|| panic!("the session vanished under increments"));
        assert_eq!(got.data.get("visits"), Some(&json!(WRITERS)), "concurrent increments were lost");
        assert_eq!(got.data.get("other"), Some(&json!("kept")));
    }

    /// 64 concurrent pushes onto one array leave all 64 elements; with
    /// `keep_last`, exactly that many remain, whatever the interleaving.
    pub async fn concurrent_pushes_all_land_and_keep_last_holds<S: SessionStore>(store: Arc<S>, _: Options) {
        const WRITERS: usize = 64;
        const KEEP: usize = 10;
        let id = key();
        set(&*store, &id, json!({ "recent": [-1, -2] }), Some(in_secs(600))).await;
        let tasks: Vec<_> = (0..WRITERS)
            .map(|i| {
                let (store, id) = (Arc::clone(&store), id.clone());
                tokio::spawn(async move {
                    let mut changes = Changes::new();
                    changes.push("cart", json!({ "sku": i }), None).map_err(StoreError::Refused)?;
                    changes.push("recent", json!(i), Some(KEEP)).map_err(StoreError::Refused)?;
                    store.update(&id, &changes, Some(in_secs(600))).await
                })
            })
            .collect();
        for task in tasks {
            match task.await {
                Ok(result) => assert_eq!(must("push", result), UpdateOutcome::Applied),
                Err(err) => panic!("a push task panicked: {err}"),
            }
        }
        let got = get(&*store, &id).await.unwrap_or_else(|| panic!("the session vanished under pushes"));
        let cart = got.data.get("cart").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut skus: Vec<u64> = cart.iter().filter_map(|item| item.get("sku").and_then(Value::as_u64)).collect();
        skus.sort_unstable();
        assert_eq!(skus, (0..WRITERS as u64).collect::<Vec<_>>(), "concurrent pushes were lost or duplicated");
        let recent = got.data.get("recent").and_then(Value::as_array).cloned().unwrap_or_default();
        assert_eq!(recent.len(), KEEP, "keep_last must hold under concurrency");
        assert!(
            recent.iter().all(|n| n.as_u64().is_some_and(|n| (n as usize) < WRITERS)),
            "keep_last must keep the newest elements: {recent:?}"
        );
    }

    /// A patch whose operation meets a value of the wrong type is refused
    /// whole: nothing of it is written.
    pub async fn a_failing_operation_refuses_the_whole_patch<S: SessionStore>(store: Arc<S>, _: Options) {
        let id = key();
        let at = in_secs(600);
        set(&*store, &id, json!({ "visits": "many", "cart": { "not": "a list" } }), Some(at)).await;
        let mut increment = Changes::new();
        increment.set("theme", json!("dark"));
        increment.increment("visits", 1).unwrap_or_else(|err| panic!("{err}"));
        match store.update(&id, &increment, Some(in_secs(900))).await {
            Err(StoreError::Refused(PatchError::NotAnInteger { key, .. })) => assert_eq!(key, "visits"),
            other => panic!("an increment of a string must be refused with NotAnInteger, got {other:?}"),
        }
        let mut push = Changes::new();
        push.set("theme", json!("dark"));
        push.push("cart", json!(1), None).unwrap_or_else(|err| panic!("{err}"));
        match store.update(&id, &push, Some(in_secs(900))).await {
            Err(StoreError::Refused(PatchError::NotAnArray { key, .. })) => assert_eq!(key, "cart"),
            other => panic!("a push onto an object must be refused with NotAnArray, got {other:?}"),
        }
        assert_eq!(
            get(&*store, &id).await,
            Some(record(json!({ "visits": "many", "cart": { "not": "a list" } }), Some(at))),
            "a refused patch must write nothing, not even its other keys or its expiry"
        );
    }

    /// The size limit holds on the stored result: concurrent pushes, each
    /// small enough alone, cannot together grow the session past it.
    pub async fn the_size_limit_holds_on_the_stored_result<S: SessionStore>(store: Arc<S>, _: Options) {
        const LIMIT: usize = 4_096;
        const WRITERS: usize = 64;
        let id = key();
        set(&*store, &id, json!({}), Some(in_secs(600))).await;
        let tasks: Vec<_> = (0..WRITERS)
            .map(|i| {
                let (store, id) = (Arc::clone(&store), id.clone());
                tokio::spawn(async move {
                    let mut changes = Changes::new();
                    changes
                        .push("items", json!(format!("{i:03}-{}", "x".repeat(200))), None)
                        .map_err(StoreError::Refused)?;
                    changes.limit_size(LIMIT);
                    store.update(&id, &changes, Some(in_secs(600))).await
                })
            })
            .collect();
        let (mut applied, mut refused) = (0, 0);
        for task in tasks {
            match task.await {
                Ok(Ok(UpdateOutcome::Applied)) => applied += 1,
                Ok(Err(StoreError::Refused(PatchError::TooLarge { .. }))) => refused += 1,
                Ok(other) => panic!("a push past the size limit must be refused with TooLarge, got {other:?}"),
                Err(err) => panic!("a push task panicked: {err}"),
            }
        }
        let got = get(&*store, &id).await.unwrap_or_else(|| panic!("the session vanished under pushes"));
        let size = crate::limits::serialized_len(&got.data);
        assert!(size <= LIMIT + LIMIT / 50, "the stored session is {size} bytes, past the limit of {LIMIT}");
        assert!(refused > 0, "64 pushes of 200 bytes must meet a 4 KiB limit");
        let items = got.data.get("items").and_then(Value::as_array).map_or(0, Vec::len);
        assert_eq!(items, applied, "each applied push must be stored, each refused one must not");
    }

    /// Whether the store grants leases; if it says `Unsupported`, it must
    /// say so for releasing too.
    async fn has_leases<S: SessionStore>(store: &S, id: &StoreKey, ttl: Duration) -> Option<Lease> {
        match store.try_lease(id, ttl).await {
            Err(StoreError::Unsupported { .. }) => {
                let release = store.release_lease(id, LeaseToken::generate()).await;
                assert!(
                    matches!(release, Err(StoreError::Unsupported { .. })),
                    "a store without leases must answer Unsupported to release_lease too"
                );
                None
            }
            other => Some(must("try_lease", other).unwrap_or_else(|| panic!("a lease nobody holds must be granted"))),
        }
    }

    /// A lease excludes every other taker until it is released or runs
    /// out; a patch fenced by a lease that is no longer live is refused; an
    /// unfenced write never waits for a lease.
    pub async fn leases_exclude_expire_and_fence<S: SessionStore>(store: Arc<S>, _: Options) {
        let id = key();
        set(&*store, &id, json!({ "n": 0 }), Some(in_secs(600))).await;
        let Some(first) = has_leases(&*store, &id, Duration::from_secs(30)).await else {
            return;
        };
        assert!(first.expires_at > expiry::now(), "a granted lease expires in the future");
        assert_eq!(
            must("try_lease", store.try_lease(&id, Duration::from_secs(30)).await),
            None,
            "a held lease must exclude"
        );
        must("release_lease", store.release_lease(&id, LeaseToken::generate()).await);
        assert_eq!(
            must("try_lease", store.try_lease(&id, Duration::from_secs(30)).await),
            None,
            "releasing with another token must not end the lease"
        );

        let fenced = |token, n| {
            let mut changes = Changes::new();
            changes.set("n", json!(n));
            changes.fence(token);
            changes
        };
        assert_eq!(
            must("fenced update", store.update(&id, &fenced(first.token, 1), Some(in_secs(600))).await),
            UpdateOutcome::Applied
        );
        match store.update(&id, &fenced(LeaseToken::generate(), 2), Some(in_secs(600))).await {
            Err(StoreError::Refused(PatchError::LeaseLost)) => {}
            other => panic!("a patch fenced by a lease nobody holds must be refused with LeaseLost, got {other:?}"),
        }
        let mut unfenced = Changes::new();
        unfenced.set("other", json!(true));
        assert_eq!(
            must("unfenced update", store.update(&id, &unfenced, Some(in_secs(600))).await),
            UpdateOutcome::Applied,
            "an unfenced write must not wait for, or be refused by, a lease"
        );

        must("release_lease", store.release_lease(&id, first.token).await);
        let second = must("try_lease", store.try_lease(&id, Duration::from_millis(300)).await)
            .unwrap_or_else(|| panic!("a released lease must be granted again"));
        tokio::time::sleep(Duration::from_millis(400)).await;
        let third = must("try_lease", store.try_lease(&id, Duration::from_secs(30)).await)
            .unwrap_or_else(|| panic!("a lease that ran out must be granted again"));
        assert_ne!(second.token, third.token, "every grant has its own token");
        match store.update(&id, &fenced(second.token, 3), Some(in_secs(600))).await {
            Err(StoreError::Refused(PatchError::LeaseLost)) => {}
            other => panic!("a holder whose lease ran out must not write (fencing), got {other:?}"),
        }
        let to = key();
        match store.rename(&id, &to, &fenced(second.token, 4), Some(in_secs(600))).await {
            Err(StoreError::Refused(PatchError::LeaseLost)) => {}
            other => panic!("a rename fenced by a lost lease must be refused, got {other:?}"),
        }
        assert_eq!(get(&*store, &to).await, None, "a refused rename writes nothing");
        assert_eq!(must("rename", store.rename(&id, &to, &fenced(third.token, 5), None).await), UpdateOutcome::Applied);
        let moved =
            get(&*store, &to).await.unwrap_or_else(|| panic!("a fenced rename by the holder must move the record"));
        assert_eq!(moved.data, data(json!({ "n": 5, "other": true })), "the refused patches must have written nothing");

        // Many takers at once: exactly one wins.
        let contested = key();
        let takers: Vec<_> = (0..16)
            .map(|_| {
                let (store, contested) = (Arc::clone(&store), contested.clone());
                tokio::spawn(async move { store.try_lease(&contested, Duration::from_secs(30)).await })
            })
            .collect();
        let mut granted = 0;
        for taker in takers {
            match taker.await {
                Ok(result) => granted += usize::from(must("try_lease", result).is_some()),
                Err(err) => panic!("a lease task panicked: {err}"),
            }
        }
        assert_eq!(granted, 1, "concurrent takers of one lease: exactly one must win");
    }

    /// A scan returns every record that lives throughout it exactly once,
    /// while other records come and go, and never an expired one.
    pub async fn scan_returns_every_live_record_once<S: SessionStore>(store: Arc<S>, _: Options) {
        match store.scan(&ScanCursor::start(), 10).await {
            Err(StoreError::Unsupported { .. }) => return,
            other => drop(must("scan", other)),
        }
        const STABLE: usize = 300;
        let stable: Vec<StoreKey> = (0..STABLE).map(|_| key()).collect();
        for (i, id) in stable.iter().enumerate() {
            set(&*store, id, json!({ "i": i }), if i % 3 == 0 { None } else { Some(in_secs(600)) }).await;
        }
        let expired = key();
        set(&*store, &expired, json!({}), Some(expiry::now() - Duration::from_secs(1))).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = {
            let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut written = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let id = key();
                    store.set(&id, &data(json!({ "churn": true })), Some(in_secs(600))).await?;
                    written.push(id);
                    if written.len() % 3 == 0
                        && let Some(gone) = written.first().cloned()
                    {
                        store.delete(&gone).await?;
                        written.remove(0);
                    }
                    tokio::task::yield_now().await;
                }
                Ok::<_, StoreError>(())
            })
        };
        let mut seen = std::collections::HashMap::<StoreKey, usize>::new();
        let mut cursor = ScanCursor::start();
        let mut pages = 0;
        loop {
            let page = must("scan", store.scan(&cursor, 37).await);
            assert!(page.records.len() <= 37, "a scan page must hold at most the limit");
            for (id, record) in page.records {
                assert!(!record.is_expired_at(expiry::now()), "a scan must not return an expired record");
                *seen.entry(id).or_default() += 1;
            }
            pages += 1;
            assert!(pages < 100_000, "the scan never ends");
            match page.next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        match churn.await {
            Ok(result) => must("writes during the scan", result),
            Err(err) => panic!("the writer task panicked: {err}"),
        }
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "a scan returned {} records more than once", twice.len());
        let missed = stable.iter().filter(|id| !seen.contains_key(*id)).count();
        assert_eq!(missed, 0, "a scan missed {missed} of {STABLE} records that lived throughout it");
        assert!(!seen.contains_key(&expired), "a scan must not return an expired record");
    }
}
