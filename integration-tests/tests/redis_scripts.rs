//! The `RedisStore`'s Lua scripts through a real `redis-server`: the patch
//! engine against `Changes::apply` (the reference), exact integers and
//! untouched JSON text, the size bookkeeping, the windows of the rename
//! protocol and of the user index, and the server-side work per operation
//! (`INFO commandstats`).
//!
//! Each test starts its own server (see `redis_server`). Without
//! `redis-server` installed the tests say loudly that they were skipped, and
//! fail under `CI=true`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::{Value, json};
use sessionkit::{
    Changes, PatchError, SessionMap, SessionStore, StoreError, StoreKey, UpdateOutcome, expiry, reserved,
};
use sessionkit_integration_tests::redis_server::RedisServer;
use sessionkit_integration_tests::support::{in_secs, key, map};
use sessionkit_stores::RedisStore;

const MARKER: &[u8] = b"\xffsessionkit";
const SIZE: &[u8] = b"\xffsize";

async fn store_on(server: &RedisServer) -> RedisStore {
    match RedisStore::open(&server.url()).await {
        Ok(store) => store,
        Err(err) => panic!("cannot open a RedisStore on {}: {err:?}", server.url()),
    }
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(server.url()).unwrap_or_else(|err| panic!("bad URL: {err}"));
    client.get_multiplexed_async_connection().await.unwrap_or_else(|err| panic!("cannot connect: {err}"))
}

fn owned(user: &str, value: Value) -> SessionMap {
    let mut data = map(value);
    data.insert(reserved::USER.to_owned(), Value::from(user));
    data
}

/// The session hash's size bookkeeping must equal the serialized JSON.
async fn assert_size_field(redis: &mut redis::aio::MultiplexedConnection, store: &RedisStore, id: &StoreKey) {
    let field: String = redis.hget(store.key(id), SIZE).await.expect("HGET size");
    let (sum, count) = field.split_once(' ').expect("two numbers");
    let (sum, count): (usize, usize) = (sum.parse().expect("sum"), count.parse().expect("count"));
    let data = store.get(id).await.expect("get").expect("present").data;
    assert_eq!(count, data.len(), "the size field counts the fields");
    let expected = if count == 0 { 2 } else { sum + 1 };
    assert_eq!(expected, sessionkit::limits::serialized_len(&data), "the size field is the serialized size: {data:?}");
}

// ---------------------------------------------------------------------------
// The patch engine.

/// A small deterministic generator (xorshift64*), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const NAMES: [&str; 6] = ["a", "cart", "quote\"d", "ü,]", "tab\t", "ctl\u{1}"];

fn integer(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 => json!(*rng.pick(&[i64::MIN, i64::MAX, -1, 0, 9_007_199_254_740_993, -9_007_199_254_740_993])),
        1 => json!(*rng.pick(&[u64::MAX, u64::MAX - 1, 1u64 << 63, 18_000_000_000_000_000_000])),
        2 => json!(rng.next() as i64),
        _ => json!(rng.below(100) as i64 - 50),
    }
}

fn value(rng: &mut Rng, depth: u32) -> Value {
    let kinds = if depth > 2 { 6 } else { 8 };
    match rng.below(kinds) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 | 3 => integer(rng),
        4 => json!(*rng.pick(&[0.1, -2.5e-300, 1e300, 3.0, 1.5, 123_456.789])),
        5 => json!(*rng.pick(&["", "x", "a,b]c", "q\"uo\\te", "ü 😀", "}{][", "line\nbreak", "nul\u{0}"])),
        6 => Value::Array((0..rng.below(5)).map(|_| value(rng, depth + 1)).collect()),
        _ => {
            let mut object = SessionMap::new();
            for _ in 0..rng.below(3) {
                object.insert(rng.pick(&["k", "z", "a b", "\""]).to_string(), value(rng, depth + 1));
            }
            Value::Object(object)
        }
    }
}

/// A value for a session key: mostly arrays and integers, so that the
/// operations have something to work on, sometimes anything.
fn stored(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0..=3 => Value::Array((0..rng.below(6)).map(|_| value(rng, 1)).collect()),
        4..=6 => integer(rng),
        _ => value(rng, 0),
    }
}

fn random_patch(rng: &mut Rng, base: &SessionMap) -> Changes {
    let mut changes = Changes::new();
    if rng.below(10) == 0 {
        changes.clear();
    }
    for _ in 0..1 + rng.below(4) {
        let name = *rng.pick(&NAMES);
        // Recording can fail (an operation folded into a known value of the
        // wrong type): that is the handle's business, not the store's.
        let _ = match rng.below(8) {
            0 => {
                changes.set(name, value(rng, 0));
                Ok(())
            }
            1 => {
                changes.remove(name);
                Ok(())
            }
            2 | 3 => {
                let by = match rng.below(4) {
                    0 => *rng.pick(&[i64::MAX, i64::MIN, 1 << 53, -(1 << 53)]),
                    1 => rng.next() as i64,
                    _ => rng.below(7) as i64 - 3,
                };
                changes.increment(name, by)
            }
            4 | 5 => {
                let keep = *rng.pick(&[None, None, Some(0), Some(1), Some(3)]);
                changes.push(name, value(rng, 1), keep)
            }
            _ => {
                let element = match base.get(name) {
                    Some(Value::Array(items)) if !items.is_empty() && rng.below(3) > 0 => rng.pick(items).clone(),
                    _ => value(rng, 1),
                };
                changes.remove_first(name, element)
            }
        };
    }
    if rng.below(4) == 0 {
        let size = sessionkit::limits::serialized_len(base);
        changes.limit_size((size + rng.below(60) as usize).saturating_sub(30));
    }
    changes
}

/// The update script, and step 1 of a rename, do what `Changes::apply`
/// does, on two thousand random sessions and patches: the same result,
/// the same refusal (with nothing written), the same size, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripts_apply_patches_as_changes_apply_does() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let store = store_on(&server).await;
    let mut redis = raw(&server).await;
    let mut rng = Rng(0x5EED_CAFE_F00D_0001);
    let (mut applied, mut refused) = (0, BTreeMap::<&str, usize>::new());
    for round in 0..2_000 {
        let mut base = SessionMap::new();
        for name in NAMES {
            if rng.below(3) > 0 {
                base.insert(name.to_owned(), stored(&mut rng));
            }
        }
        let changes = random_patch(&mut rng, &base);
        let (id, to) = (key(), key());
        store.set(&id, &base, Some(in_secs(600))).await.expect("set");
        let expected = changes.applied_to(base.clone());
        let renaming = round % 2 == 1;
        let got = if renaming {
            store.rename(&id, &to, &changes, Some(in_secs(600))).await
        } else {
            store.update(&id, &changes, Some(in_secs(600))).await
        };
        let written = if renaming && got.is_ok() { &to } else { &id };
        let stored = store.get(written).await.expect("get").expect("present").data;
        let what = if renaming { "rename" } else { "update" };
        match (expected, got) {
            (Ok(data), Ok(UpdateOutcome::Applied)) => {
                assert_eq!(stored, data, "round {round} ({what}): {base:?} patched by {changes:?}");
                applied += 1;
            }
            (Err(expected), Err(StoreError::Refused(got))) => {
                assert_eq!(got, expected, "round {round} ({what}): {base:?} patched by {changes:?}");
                assert_eq!(stored, base, "round {round} ({what}): a refused patch wrote something");
                assert_eq!(store.get(&to).await.expect("get"), None, "round {round}: a refused rename wrote");
                let kind = match got {
                    PatchError::NotAnInteger { .. } => "not an integer",
                    PatchError::NotAnArray { .. } => "not an array",
                    PatchError::Overflow { .. } => "overflow",
                    PatchError::TooLarge { .. } => "too large",
                    _ => "other",
                };
                *refused.entry(kind).or_default() += 1;
            }
            (expected, got) => {
                panic!("round {round} ({what}): {base:?} patched by {changes:?}: expected {expected:?}, got {got:?}")
            }
        }
        assert_size_field(&mut redis, &store, written).await;
    }
    eprintln!("random patches: {applied} applied, refused {refused:?}");
    assert!(applied > 600, "too few patches applied ({applied}) for the comparison to mean much");
    assert!(refused.len() >= 4, "every kind of refusal must have been met: {refused:?}");
}

/// Increments are exact over the whole i64 and u64 range, where a Lua
/// number (a double) would round past 2^53.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_are_exact_over_the_whole_integer_range() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let store = store_on(&server).await;
    let mut redis = raw(&server).await;
    let cases: [(Value, i64, &str); 9] = [
        (json!(9_007_199_254_740_993_i64), 2, "9007199254740995"),
        (json!(u64::MAX - 1), 1, "18446744073709551615"),
        (json!(10_000_000_000_000_000_000_u64), i64::MIN, "776627963145224192"),
        (json!(i64::MIN + 1), -1, "-9223372036854775808"),
        (json!(-3), 3, "0"),
        (json!(-5), 3, "-2"),
        (json!(5), -8, "-3"),
        (json!(i64::MAX), i64::MAX, "18446744073709551614"),
        (json!(0), i64::MIN, "-9223372036854775808"),
    ];
    for (start, by, expected) in cases {
        let id = key();
        store.set(&id, &map(json!({ "n": start })), None).await.expect("set");
        let mut changes = Changes::new();
        changes.increment("n", by).expect("increment");
        assert_eq!(store.update(&id, &changes, None).await.expect("update"), UpdateOutcome::Applied);
        let text: String = redis.hget(store.key(&id), "n").await.expect("HGET");
        assert_eq!(text, expected, "{start} + {by}");
    }
    for (start, by) in [(json!(u64::MAX), 1), (json!(i64::MIN), -1), (json!(u64::MAX), i64::MAX)] {
        let id = key();
        store.set(&id, &map(json!({ "n": start })), None).await.expect("set");
        let mut changes = Changes::new();
        changes.increment("n", by).expect("increment");
        match store.update(&id, &changes, None).await {
            Err(StoreError::Refused(PatchError::Overflow { key })) => assert_eq!(key, "n"),
            other => panic!("{start} + {by} must overflow, got {other:?}"),
        }
    }
}

/// Pushes and removals work on the stored text: other elements keep their
/// exact bytes (no cjson round trip reformatting numbers), and elements
/// holding commas, brackets and escaped quotes split correctly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_and_removals_leave_other_elements_byte_for_byte() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let store = store_on(&server).await;
    let mut redis = raw(&server).await;
    let id = key();
    store.set(&id, &map(json!({ "list": [] })), None).await.expect("set");
    // Written by hand: valid JSON, but not as serde_json would write it.
    let hand = r#"[ 1.0e2 , 12345678901234567890, {"k": "x,]\"y"} ,"a,b]" ]"#;
    let () = redis.hset(store.key(&id), "list", hand).await.expect("HSET");

    let mut push = Changes::new();
    push.push("list", json!(5), None).expect("push");
    assert_eq!(store.update(&id, &push, None).await.expect("update"), UpdateOutcome::Applied);
    let text: String = redis.hget(store.key(&id), "list").await.expect("HGET");
    assert_eq!(text, r#"[ 1.0e2 , 12345678901234567890, {"k": "x,]\"y"} ,"a,b]" ,5]"#);

    let mut keep = Changes::new();
    keep.push("list", json!("z"), Some(5)).expect("push");
    assert_eq!(store.update(&id, &keep, None).await.expect("update"), UpdateOutcome::Applied);
    let text: String = redis.hget(store.key(&id), "list").await.expect("HGET");
    assert_eq!(text, r#"[12345678901234567890,{"k": "x,]\"y"},"a,b]",5,"z"]"#, "keep_last keeps the last 5 verbatim");

    let mut remove = Changes::new();
    remove.remove_first("list", json!({ "k": "x,]\"y" })).expect("remove_first");
    assert_eq!(store.update(&id, &remove, None).await.expect("update"), UpdateOutcome::Applied);
    let text: String = redis.hget(store.key(&id), "list").await.expect("HGET");
    assert_eq!(text, r#"[12345678901234567890,"a,b]",5,"z"]"#, "equal once whitespace between tokens is dropped");

    let record = store.get(&id).await.expect("get").expect("present");
    assert_eq!(record.data["list"], json!([12_345_678_901_234_567_890_u64, "a,b]", 5, "z"]));
}

/// A session at the size limit refuses the push that would pass it, and
/// nothing of that patch is written; a patch that shrinks it passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_limit_is_checked_on_the_result_from_the_running_total() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let store = store_on(&server).await;
    let mut redis = raw(&server).await;
    let id = key();
    let data = map(json!({ "items": ["0123456789"], "name": "ü" }));
    let size = sessionkit::limits::serialized_len(&data);
    store.set(&id, &data, None).await.expect("set");
    let mut grow = Changes::new();
    grow.push("items", json!("x"), None).expect("push");
    grow.set("other", json!(1));
    grow.limit_size(size + 4);
    match store.update(&id, &grow, None).await {
        Err(StoreError::Refused(PatchError::TooLarge { size: got, limit })) => {
            assert_eq!((got, limit), (size + 14, size + 4), "the size is exact: `,\"x\"` and `,\"other\":1`");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(store.get(&id).await.expect("get").expect("present").data, data, "nothing written");
    let mut fits = Changes::new();
    fits.push("items", json!("x"), None).expect("push");
    fits.limit_size(size + 4);
    assert_eq!(store.update(&id, &fits, None).await.expect("update"), UpdateOutcome::Applied);
    assert_size_field(&mut redis, &store, &id).await;
}

// ---------------------------------------------------------------------------
// The rename protocol.

/// A logout with the old cookie that arrives just after a login (the old
/// key still holds the rename's marker) ends the new session too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_old_key_of_a_rename_ends_the_new_session() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let store = store_on(&server).await;
    for revoke in [false, true] {
        let (from, to) = (key(), key());
        store.set(&from, &owned("ada", json!({ "cart": [1] })), Some(in_secs(600))).await.expect("set");
        let outcome = store.rename(&from, &to, &Changes::new(), Some(in_secs(600))).await.expect("rename");
        assert_eq!(outcome, UpdateOutcome::Applied);
        assert!(store.get(&to).await.expect("get").is_some());
        if revoke {
            assert!(store.revoke("ada", &from).await.expect("revoke"), "revoking the old key ends the session");
        } else {
            store.delete(&from).await.expect("delete");
        }
        assert_eq!(store.get(&to).await.expect("get"), None, "the renamed session survived a delete of its old key");
        assert!(store.sessions_of("ada").await.expect("sessions_of").is_empty());
    }
}

/// "Sign out my other sessions" shortly after a regenerate: the old key
/// still holds the rename's marker, and the user's index still lists it
/// (within the grace period). Revoking it must not follow the marker into
/// the session spared, the one it moved to, however long the chain of
/// renames; nor count it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_all_but_the_current_session_spares_it_after_a_regenerate() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let store = store_on(&server).await;
    let (first, second, third, other) = (key(), key(), key(), key());
    store.set(&first, &owned("ada", json!({ "n": 1 })), Some(in_secs(600))).await.expect("set");
    store.set(&other, &owned("ada", json!({ "n": 2 })), Some(in_secs(600))).await.expect("set");
    for (from, to) in [(&first, &second), (&second, &third)] {
        let outcome = store.rename(from, to, &Changes::new(), Some(in_secs(600))).await.expect("rename");
        assert_eq!(outcome, UpdateOutcome::Applied);
    }
    let listed: Vec<StoreKey> =
        store.sessions_of("ada").await.expect("sessions_of").into_iter().map(|(k, _)| k).collect();
    assert_eq!(listed.len(), 2, "the current session and the other one: {listed:?}");

    assert_eq!(store.revoke_all("ada", Some(&third)).await.expect("revoke_all"), 1, "only the other session ends");
    assert!(store.get(&third).await.expect("get").is_some(), "revoking the others ended the current session");
    assert_eq!(store.get(&other).await.expect("get"), None);
    let listed: Vec<StoreKey> =
        store.sessions_of("ada").await.expect("sessions_of").into_iter().map(|(k, _)| k).collect();
    assert_eq!(listed, vec![third.clone()]);
}

/// A delete that meets a session between the two steps of a rename (the
/// state step 1 leaves, built here by hand) tombstones the new key, and
/// step 2 then writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_between_the_steps_of_a_rename_stops_it() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let store = store_on(&server).await;
    let mut redis = raw(&server).await;
    let (from, to) = (key(), key());
    let () = redis
        .hset_multiple(store.key(&from), &[(MARKER, b"moved".as_slice()), (b"\xffto", to.as_str().as_bytes())])
        .await
        .expect("HSET");
    assert_eq!(store.get(&from).await.expect("get"), None, "a moved marker is no session");
    store.delete(&from).await.expect("delete");
    let marker: Vec<u8> = redis.hget(store.key(&to), MARKER).await.expect("HGET");
    assert_eq!(marker, b"gone", "the new key is tombstoned");
    let ttl: i64 = redis.pttl(store.key(&to)).await.expect("PTTL");
    assert!(ttl > 0, "a tombstone expires by itself");

    // Step 2 into the tombstoned key: a rename of another session there.
    let other = key();
    store.set(&other, &map(json!({ "a": 1 })), None).await.expect("set");
    let outcome = store.rename(&other, &to, &Changes::new(), None).await.expect("rename");
    assert_eq!(outcome, UpdateOutcome::Missing, "a rename into a tombstone writes nothing and says so");
    assert_eq!(store.get(&to).await.expect("get"), None);
    assert!(store.touch(&to, None).await.is_ok_and(|found| !found), "a tombstone is no session");
}

/// A logout racing a login (a rename of the same session) always wins:
/// afterwards neither key holds a session, whichever ran first, and a
/// `revoke_all` racing a login does the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_racing_a_login_always_ends_the_session() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let store = Arc::new(store_on(&server).await);
    let (mut stopped, mut followed) = (0, 0);
    for round in 0..200 {
        let (from, to) = (key(), key());
        store.set(&from, &owned("ada", json!({ "round": round })), Some(in_secs(600))).await.expect("set");
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let renamer = {
            let (store, barrier, from, to) = (Arc::clone(&store), Arc::clone(&barrier), from.clone(), to.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let mut login = Changes::new();
                login.set(reserved::USER, json!("ada"));
                store.rename(&from, &to, &login, Some(in_secs(600))).await
            })
        };
        let logout = {
            let (store, barrier, from) = (Arc::clone(&store), Arc::clone(&barrier), from.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                if round % 2 == 0 { store.delete(&from).await } else { store.revoke_all("ada", None).await.map(drop) }
            })
        };
        let renamed = renamer.await.expect("task").expect("rename");
        logout.await.expect("task").expect("logout");
        match renamed {
            UpdateOutcome::Missing => stopped += 1,
            UpdateOutcome::Applied => followed += 1,
        }
        assert_eq!(store.get(&from).await.expect("get"), None, "round {round}: the old key survived");
        assert_eq!(store.get(&to).await.expect("get"), None, "round {round}: a login undid a concurrent logout");
        assert!(store.sessions_of("ada").await.expect("sessions_of").is_empty(), "round {round}");
    }
    eprintln!("logout vs login: {stopped} renames stopped, {followed} renamed sessions ended after the move");
}

// ---------------------------------------------------------------------------
// The user index.

fn index_key(user: &str) -> String {
    format!("session:user:{{{user}}}")
}

/// Entries whose session is gone or someone else's are removed by a
/// listing, unless they were added within the grace period (their
/// session may be about to be written); lapsed entries are trimmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_repair_stale_index_entries_but_spare_recent_ones() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let store = store_on(&server).await;
    let mut redis = raw(&server).await;
    let live = key();
    store.set(&live, &owned("ada", json!({})), Some(in_secs(600))).await.expect("set");
    let bobs = key();
    store.set(&bobs, &owned("bob", json!({})), Some(in_secs(600))).await.expect("set");
    let (crashed, pending, lapsed) = (key(), key(), key());
    let future = expiry::to_unix_ms(in_secs(3600));
    let now = expiry::to_unix_ms(expiry::now());
    let index = index_key("ada");
    // A writer that crashed between index and session long ago; one that
    // is between them now; an entry whose bound passed two minutes ago;
    // bob's session listed under ada.
    let () = redis.zadd(&index, crashed.as_str(), future).await.expect("ZADD");
    let () = redis.zadd(&index, pending.as_str(), future).await.expect("ZADD");
    let () = redis.zadd(&index, format!("+{}", pending.as_str()), now + 600_000).await.expect("ZADD");
    let () = redis.zadd(&index, lapsed.as_str(), now - 120_000).await.expect("ZADD");
    let () = redis.zadd(&index, bobs.as_str(), future).await.expect("ZADD");

    let listed: Vec<StoreKey> =
        store.sessions_of("ada").await.expect("sessions_of").into_iter().map(|(k, _)| k).collect();
    assert_eq!(listed, vec![live.clone()], "only ada's live session is listed");
    let score = |member: String| {
        let mut redis = redis.clone();
        let index = index.clone();
        async move { redis.zscore::<_, _, Option<f64>>(&index, member).await.expect("ZSCORE") }
    };
    assert!(score(live.as_str().to_owned()).await.is_some(), "the live entry stays");
    assert!(score(pending.as_str().to_owned()).await.is_some(), "a recent entry is spared: its write may follow");
    assert_eq!(score(crashed.as_str().to_owned()).await, None, "a crashed writer's entry is repaired");
    assert_eq!(score(bobs.as_str().to_owned()).await, None, "another user's session is dropped from the index");
    assert_eq!(score(lapsed.as_str().to_owned()).await, None, "a lapsed entry is trimmed");

    // The pending writer completes: its session shows up.
    store.set(&pending, &owned("ada", json!({})), Some(in_secs(600))).await.expect("set");
    let mut listed: Vec<StoreKey> =
        store.sessions_of("ada").await.expect("sessions_of").into_iter().map(|(k, _)| k).collect();
    listed.sort();
    let mut expected = vec![live, pending];
    expected.sort();
    assert_eq!(listed, expected);
}

/// An index entry's score bounds its session's expiry, with slack; a
/// `touch` past the bound raises it before moving the expiry; the index
/// key expires with its last entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_bounds_follow_the_expiry_and_the_index_expires() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let store = store_on(&server).await;
    let mut redis = raw(&server).await;
    let id = key();
    let index = index_key("ada");
    let soon = in_secs(10);
    store.set(&id, &owned("ada", json!({})), Some(soon)).await.expect("set");
    let score: f64 = redis.zscore(&index, id.as_str()).await.expect("ZSCORE");
    let soon_ms = expiry::to_unix_ms(soon) as f64;
    assert!(score >= soon_ms && score <= soon_ms + 11_000.0, "bound {score} for expiry {soon_ms}");
    let key_expiry: i64 = redis::cmd("PEXPIRETIME").arg(&index).query_async(&mut redis).await.expect("PEXPIRETIME");
    assert!(key_expiry as f64 >= score, "the index key outlives its last entry");

    let later = in_secs(7200);
    assert!(store.touch(&id, Some(later)).await.expect("touch"));
    let raised: f64 = redis.zscore(&index, id.as_str()).await.expect("ZSCORE");
    assert!(raised >= expiry::to_unix_ms(later) as f64, "a touch past the bound raised it first: {raised}");
    assert_eq!(store.sessions_of("ada").await.expect("sessions_of").len(), 1);

    assert!(store.touch(&id, None).await.expect("touch"));
    let unbounded: f64 = redis.zscore(&index, id.as_str()).await.expect("ZSCORE");
    assert!(unbounded.is_infinite(), "a session without expiry is bounded by +inf");
    let key_expiry: i64 = redis::cmd("PEXPIRETIME").arg(&index).query_async(&mut redis).await.expect("PEXPIRETIME");
    assert_eq!(key_expiry, -1, "an index with an endless session does not expire");
}

// ---------------------------------------------------------------------------
// Server-side work.

/// `INFO commandstats` call counts, by command name.
async fn command_calls(redis: &mut redis::aio::MultiplexedConnection) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(redis).await.expect("INFO");
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|stat| stat.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// What `op` costs the server per call: commands sent (round trips) and
/// commands the scripts ran, averaged over `n` calls.
async fn measure<F, Fut>(
    redis: &mut redis::aio::MultiplexedConnection,
    n: u32,
    mut op: F,
) -> (f64, BTreeMap<String, f64>)
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(redis).await.expect("RESETSTAT");
    for i in 0..n {
        op(i).await;
    }
    let mut calls = command_calls(redis).await;
    // Our own probes.
    calls.remove("config|resetstat");
    calls.remove("info");
    // Round trips: a script call, a plain command, or one transaction
    // (MULTI ... EXEC, counted by its EXEC).
    let sent = ["evalsha", "eval", "set", "scan", "script|load", "exec"]
        .iter()
        .filter_map(|name| calls.get(*name))
        .sum::<u64>();
    let per_op = calls.into_iter().map(|(name, count)| (name, count as f64 / f64::from(n))).collect();
    (sent as f64 / f64::from(n), per_op)
}

/// The work each operation puts on Redis, as Redis counts it, printed for
/// the benchmark report; `get`, `update` and `touch` are one round trip
/// each: `get` a transaction of two plain reads, the others a script call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_work_per_operation() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let store = store_on(&server).await;
    let mut redis = raw(&server).await;
    const N: u32 = 50;
    let anon: Vec<StoreKey> = (0..N).map(|_| key()).collect();
    let users: Vec<StoreKey> = (0..N).map(|_| key()).collect();
    let renamed: Vec<StoreKey> = (0..N).map(|_| key()).collect();
    for id in &anon {
        store.set(id, &map(json!({ "visits": 1, "cart": [] })), Some(in_secs(3600))).await.expect("set");
    }
    // Every script once, so that loading them is not counted.
    let (warm, warmer) = (key(), key());
    store.set(&warm, &owned("cy", json!({})), Some(in_secs(60))).await.expect("set");
    let _ = store.get(&warm).await.expect("get");
    let _ = store.touch(&warm, Some(in_secs(60))).await.expect("touch");
    let _ = store.update(&warm, &Changes::new(), Some(in_secs(60))).await.expect("update");
    let mut with_operation = Changes::new();
    with_operation.increment("n", 1).expect("increment");
    let _ = store.update(&warm, &with_operation, Some(in_secs(60))).await.expect("update");
    let _ = store.rename(&warm, &warmer, &Changes::new(), Some(in_secs(60))).await.expect("rename");
    let _ = store.sessions_of("cy").await.expect("sessions_of");
    let lease = store.try_lease(&warm, Duration::from_secs(1)).await.expect("lease").expect("granted");
    store.release_lease(&warm, lease.token).await.expect("release");
    store.delete(&warmer).await.expect("delete");
    let _ = store.revoke_all("cy", None).await.expect("revoke_all");
    let mut report = Vec::new();
    let mut row = |name: &str, (sent, per_op): (f64, BTreeMap<String, f64>)| {
        let inner: f64 = per_op
            .iter()
            .filter(|(n, _)| !["evalsha", "script|load", "multi", "exec"].contains(&n.as_str()))
            .map(|(_, c)| c)
            .sum();
        report.push(format!("{name:<34} {sent:>4.1} sent {inner:>5.1} run   {per_op:?}"));
        sent
    };
    let get = row(
        "get",
        measure(&mut redis, N, |i| {
            let (s, id) = (&store, &anon[i as usize]);
            async move {
                s.get(id).await.expect("get").expect("present");
            }
        })
        .await,
    );
    let update = row(
        "update (increment + push, rolling)",
        measure(&mut redis, N, |i| {
            let (s, id) = (&store, &anon[i as usize]);
            async move {
                let mut changes = Changes::new();
                changes.increment("visits", 1).expect("increment");
                changes.push("cart", json!({ "sku": i }), Some(20)).expect("push");
                changes.set(reserved::LAST_ACTIVE, json!(expiry::to_unix_ms(expiry::now())));
                changes.limit_size(1 << 20);
                assert_eq!(s.update(id, &changes, Some(in_secs(3600))).await.expect("update"), UpdateOutcome::Applied);
            }
        })
        .await,
    );
    let update_sets = row(
        "update (sets only, rolling)",
        measure(&mut redis, N, |i| {
            let (s, id) = (&store, &anon[i as usize]);
            async move {
                let mut changes = Changes::new();
                changes.set("counter", json!(i));
                changes.set(reserved::LAST_ACTIVE, json!(expiry::to_unix_ms(expiry::now())));
                changes.limit_size(1 << 20);
                assert_eq!(s.update(id, &changes, Some(in_secs(3600))).await.expect("update"), UpdateOutcome::Applied);
            }
        })
        .await,
    );
    let touch = row(
        "touch",
        measure(&mut redis, N, |i| {
            let (s, id) = (&store, &anon[i as usize]);
            async move {
                assert!(s.touch(id, Some(in_secs(3000))).await.expect("touch"));
            }
        })
        .await,
    );
    row(
        "set (no user)",
        measure(&mut redis, N, |_| {
            let s = &store;
            async move {
                s.set(&key(), &map(json!({ "a": 1 })), Some(in_secs(60))).await.expect("set");
            }
        })
        .await,
    );
    row(
        "set (with a user)",
        measure(&mut redis, N, |i| {
            let (s, id) = (&store, &users[i as usize]);
            async move {
                s.set(id, &owned("ada", json!({})), Some(in_secs(60))).await.expect("set");
            }
        })
        .await,
    );
    row(
        "rename (login of a user)",
        measure(&mut redis, N, |i| {
            let (s, from, to) = (&store, &anon[i as usize], &renamed[i as usize]);
            async move {
                let mut login = Changes::new();
                login.set(reserved::USER, json!("bob"));
                assert_eq!(
                    s.rename(from, to, &login, Some(in_secs(3600))).await.expect("rename"),
                    UpdateOutcome::Applied
                );
            }
        })
        .await,
    );
    row(
        "sessions_of (50 sessions)",
        measure(&mut redis, 1, |_| {
            let s = &store;
            async move {
                assert_eq!(s.sessions_of("bob").await.expect("list").len(), 50);
            }
        })
        .await,
    );
    row(
        "try_lease + release_lease",
        measure(&mut redis, N, |i| {
            let (s, id) = (&store, &anon[i as usize]);
            async move {
                let lease = s.try_lease(id, Duration::from_secs(5)).await.expect("lease").expect("granted");
                s.release_lease(id, lease.token).await.expect("release");
            }
        })
        .await,
    );
    row(
        "delete (with a user)",
        measure(&mut redis, N, |i| {
            let (s, id) = (&store, &renamed[i as usize]);
            async move {
                s.delete(id).await.expect("delete");
            }
        })
        .await,
    );
    eprintln!("server-side work per operation ({N} calls each; sent = commands sent, run = commands the scripts ran):");
    for line in &report {
        eprintln!("  {line}");
    }
    assert_eq!(get, 1.0, "get is one round trip");
    assert_eq!(update, 1.0, "update is one script call");
    assert_eq!(update_sets, 1.0, "an update of sets only is one script call");
    assert_eq!(touch, 1.0, "touch is one script call");
}
