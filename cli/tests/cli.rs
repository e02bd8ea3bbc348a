//! The `sessionkit` binary, run as a user would: its help, its errors, the
//! inspection commands on a real store, and a migration of 100,000 sessions
//! from redb to PostgreSQL and to Redis after which the old cookies still
//! work, twice (the second run changes nothing), and once interrupted and
//! resumed.

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::json;
use sessionkit::{
    ScanCursor, SessionConfig, SessionId, SessionLayer, SessionMap, SessionRecord, SessionStore, StoreKey, expiry,
    reserved,
};
use sessionkit_integration_tests::postgres_server::PostgresServer;
use sessionkit_integration_tests::redis_server::RedisServer;
use sessionkit_integration_tests::server::TestServer;
use sessionkit_stores::{RedbStore, SqliteStore};

fn sessionkit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sessionkit")).args(args).output().expect("run sessionkit")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "sessionkit failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

fn failure(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "expected a failure: {output:?}");
    String::from_utf8(output.stderr.clone()).expect("utf-8")
}

fn data(value: serde_json::Value) -> SessionMap {
    value.as_object().cloned().expect("an object")
}

/// A session as the layer writes it: bookkeeping included, keyed by the
/// SHA-256 of `id`, bound to `user` when given.
fn session(id: &SessionId, user: Option<&str>, n: usize) -> (StoreKey, SessionMap) {
    let now = expiry::to_unix_ms(expiry::now());
    let mut map = data(json!({
        "n": n,
        "cart": ["tea"],
        reserved::CREATED_AT: now,
        reserved::LAST_ACTIVE: now,
        reserved::KEYED_BY: reserved::KEYED_BY_SHA256,
    }));
    if let Some(user) = user {
        map.insert(reserved::USER.into(), json!(user));
        map.insert(reserved::LINEAGE.into(), json!(format!("lineage-{n}")));
    }
    (StoreKey::hashed(id), map)
}

#[test]
fn help_explains_every_command_and_the_store_urls() {
    let help = stdout(&sessionkit(&["--help"]));
    for expected in
        ["list", "show", "revoke", "purge-expired", "migrate", "redb:PATH", "redis+cluster://", "postgres://"]
    {
        assert!(help.contains(expected), "--help lacks {expected:?}:\n{help}");
    }
    let migrate = stdout(&sessionkit(&["migrate", "--help"]));
    assert!(migrate.contains("--resume") && migrate.contains("redis+sentinel://"), "{migrate}");
}

#[test]
fn bad_urls_and_handles_fail_clearly_and_hide_passwords() {
    let err = failure(&sessionkit(&["list", "--store", "mongodb://ada:s3cret@db/"]));
    assert!(err.contains("unknown session store URL") && !err.contains("s3cret"), "{err}");
    let err = failure(&sessionkit(&["show", "--store", "memory:", "not-a-handle"]));
    assert!(err.contains("not a session handle"), "{err}");
    let usage = sessionkit(&["list"]);
    assert_eq!(usage.status.code(), Some(2), "a missing flag is a usage error");
}

/// `list`, `show`, `revoke` and `purge-expired` on a SQLite file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_revoke_and_purge_a_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sessions.db");
    let url = format!("sqlite:{}", path.display());
    let ids: Vec<SessionId> = (0..4).map(|_| SessionId::generate()).collect();
    {
        let store = SqliteStore::open(&path).await.expect("open");
        let in_an_hour = Some(expiry::now() + Duration::from_secs(3600));
        for (i, (id, user)) in ids.iter().zip([Some("ada"), Some("ada"), Some("bob"), None]).enumerate() {
            let (key, map) = session(id, user, i);
            store.set(&key, &map, in_an_hour).await.expect("set");
        }
        let past = Some(expiry::now() - Duration::from_secs(5));
        for i in 0..2 {
            let (key, map) = session(&SessionId::generate(), Some("ada"), 10 + i);
            store.set(&key, &map, past).await.expect("set");
        }
    }
    assert_eq!(stdout(&sessionkit(&["list", "--store", &url])).trim(), "4 live sessions, of 2 users");
    let listing = stdout(&sessionkit(&["list", "--store", &url, "--user", "ada"]));
    let handles: Vec<String> = ids[..2].iter().map(|id| StoreKey::hashed(id).to_string()).collect();
    assert!(listing.starts_with("2 live sessions of \"ada\""), "{listing}");
    for handle in &handles {
        assert!(listing.contains(handle.as_str()), "{listing}");
    }
    for id in &ids {
        assert!(!listing.contains(id.as_str()), "a listing must never print an id");
    }

    let shown: serde_json::Value =
        serde_json::from_str(&stdout(&sessionkit(&["show", "--store", &url, &handles[0]]))).expect("json");
    assert_eq!(shown["user"], "ada");
    assert_eq!(shown["data"], json!({ "n": 0, "cart": ["tea"] }), "handler data only, no bookkeeping");
    assert!(shown["expires_at"].as_str().is_some_and(|at| at.ends_with('Z')), "{shown}");
    let err = failure(&sessionkit(&["show", "--store", &url, &StoreKey::hashed(&SessionId::generate()).to_string()]));
    assert!(err.contains("no live session"), "{err}");

    let bob = StoreKey::hashed(&ids[2]).to_string();
    let err = failure(&sessionkit(&["revoke", "--store", &url, "--user", "ada", "--handle", &bob]));
    assert!(err.contains("no live session with that handle"), "another user's handle is refused: {err}");
    let done = stdout(&sessionkit(&["revoke", "--store", &url, "--user", "ada", "--handle", &handles[0]]));
    assert_eq!(done.trim(), "revoked 1 sessions of \"ada\"");
    let done = stdout(&sessionkit(&["revoke", "--store", &url, "--user", "ada"]));
    assert_eq!(done.trim(), "revoked 1 sessions of \"ada\"");
    assert_eq!(stdout(&sessionkit(&["list", "--store", &url])).trim(), "2 live sessions, of 1 users");
    assert_eq!(stdout(&sessionkit(&["purge-expired", "--store", &url])).trim(), "removed 2 expired sessions");
    assert_eq!(stdout(&sessionkit(&["purge-expired", "--store", &url])).trim(), "removed 0 expired sessions");
}

const SESSIONS: usize = 100_000;

/// What 100,000 seeded sessions should become after a migration.
struct Seeded {
    /// Cookie ids of sessions that must survive, with their user.
    cookies: Vec<(SessionId, Option<String>)>,
    /// Every key that must be in the destination, with its record.
    expected: BTreeMap<StoreKey, SessionRecord>,
    /// Keys that expire during or right after the copy: never live in the
    /// destination once their expiry is past.
    short_lived: Vec<(StoreKey, SystemTime)>,
}

/// 100,000 sessions in redb: a third bound to users, a tenth without
/// expiry, some already expired (never copied), some about to expire.
async fn seed(path: &std::path::Path) -> Seeded {
    let store = Arc::new(RedbStore::open(path).expect("open redb"));
    let hour = Some(expiry::now() + Duration::from_secs(3600));
    let soon = expiry::now() + Duration::from_secs(3);
    let past = Some(expiry::now() - Duration::from_secs(60));
    let mut seeded = Seeded { cookies: Vec::new(), expected: BTreeMap::new(), short_lived: Vec::new() };
    let mut writes = tokio::task::JoinSet::new();
    for n in 0..SESSIONS {
        let id = SessionId::generate();
        let user = (n % 3 == 0).then(|| format!("user-{}", n % 1_000));
        let (key, map) = session(&id, user.as_deref(), n);
        let expires_at = match n % 50 {
            0..=4 => None,
            5 => past,
            6 => Some(soon),
            _ => hour,
        };
        match n % 50 {
            5 => {}
            6 => seeded.short_lived.push((key.clone(), soon)),
            _ => {
                if n % 97 == 0 {
                    seeded.cookies.push((id, user));
                }
                seeded.expected.insert(key.clone(), SessionRecord::new(map.clone(), expires_at));
            }
        }
        let store = Arc::clone(&store);
        writes.spawn(async move { store.set(&key, &map, expires_at).await });
        while writes.len() >= 128 {
            writes.join_next().await.expect("a write").expect("no panic").expect("seeding redb");
        }
    }
    while let Some(write) = writes.join_next().await {
        write.expect("no panic").expect("seeding redb");
    }
    seeded
}

/// Every live record of `store`, by key.
async fn snapshot(store: &dyn SessionStore) -> BTreeMap<StoreKey, SessionRecord> {
    let mut all = BTreeMap::new();
    let mut cursor = ScanCursor::start();
    loop {
        let page = store.scan(&cursor, 5_000).await.expect("scan");
        for (key, record) in page.records {
            assert!(all.insert(key, record).is_none(), "a scan returned a session twice");
        }
        match page.next {
            Some(next) => cursor = next,
            None => return all,
        }
    }
}

/// The destination holds exactly what was expected (the short-lived
/// sessions aside), and the old cookies work against an app on it.
async fn check_destination(url: &str, seeded: &Seeded) {
    let store = sessionkit_stores::open(url).await.expect("open the destination");
    let mut held = snapshot(&*store).await;
    for (key, _) in &seeded.short_lived {
        held.remove(key);
    }
    assert_eq!(held.len(), seeded.expected.len(), "{url}: the number of sessions copied");
    assert!(held == seeded.expected, "{url}: the copied sessions differ from the source's");
    let sample_user = seeded.cookies.iter().find_map(|(_, user)| user.clone()).expect("a user");
    let listed = store.sessions_of(&sample_user).await.expect("listing");
    let expected_of_user = seeded.expected.values().filter(|r| r.user() == Some(sample_user.as_str())).count();
    assert_eq!(listed.len(), expected_of_user, "{url}: the user index followed the copied sessions");

    // An application on the new store recognises the old cookies.
    let layer = SessionLayer::new(SessionConfig::with_shared_store(store.clone()).secure(false));
    let app = axum::Router::new()
        .route(
            "/whoami",
            axum::routing::get(|session: sessionkit::Session| async move {
                format!("{}|{}", session.user().unwrap_or_default(), session.get::<usize>("n").ok().flatten().is_some())
            }),
        )
        .layer(layer);
    let server = TestServer::start(app).await;
    let client = reqwest::Client::new();
    for (id, user) in &seeded.cookies {
        let answer = client
            .get(server.url("/whoami"))
            .header("cookie", format!("id={id}"))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("body");
        assert_eq!(answer, format!("{}|true", user.clone().unwrap_or_default()), "{url}: an old cookie was logged out");
    }
    let latest = seeded.short_lived.iter().map(|(_, at)| *at).max().unwrap_or(SystemTime::UNIX_EPOCH);
    tokio::time::sleep(latest.duration_since(SystemTime::now()).unwrap_or_default()).await;
    for (key, _) in &seeded.short_lived {
        assert_eq!(store.get(key).await.expect("get"), None, "{url}: an expired session is live in the copy");
    }
}

fn migrate(from: &str, to: &str, extra: &[&str]) -> String {
    let mut args = vec!["migrate", "--from", from, "--to", to];
    args.extend_from_slice(extra);
    stdout(&sessionkit(&args))
}

/// The migration the issue asks for: 100,000 sessions from redb to
/// PostgreSQL and to Redis; the old cookies work on the new stores;
/// expired sessions are not copied; a second run changes nothing; a run
/// interrupted and resumed ends in the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_100k_sessions_from_redb_to_postgres_and_redis_without_logging_anyone_out() {
    let Some(postgres) = PostgresServer::start_or_skip() else { return };
    let Some(redis) = RedisServer::start_or_skip() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sessions.redb");
    let seeded = seed(&path).await;
    let from = format!("redb:{}", path.display());

    let to_postgres = postgres.url();
    let report = migrate(&from, &to_postgres, &[]);
    let copied: usize = report
        .strip_prefix("copied ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in the report: {report}"));
    let (at_least, at_most) = (seeded.expected.len(), seeded.expected.len() + seeded.short_lived.len());
    assert!((at_least..=at_most).contains(&copied), "copied {copied}, expected {at_least} to {at_most}: {report}");
    // Before the app below touches the copies (it caps sessions without
    // expiry to its ttl, a write of its own).
    let before = snapshot(&*sessionkit_stores::open(&to_postgres).await.expect("open")).await;
    migrate(&from, &to_postgres, &[]);
    let after = snapshot(&*sessionkit_stores::open(&to_postgres).await.expect("open")).await;
    let differing = |a: &BTreeMap<StoreKey, SessionRecord>, b: &BTreeMap<StoreKey, SessionRecord>| {
        a.iter().filter(|(key, record)| b.get(*key) != Some(*record)).map(|(key, _)| key.clone()).collect::<Vec<_>>()
    };
    let (changed, added) = (differing(&before, &after), differing(&after, &before));
    assert!(
        changed.is_empty() && added.is_empty(),
        "a second run must change nothing: {} of {} sessions changed or gone, {} added; e.g. {:?} -> {:?}",
        changed.len(),
        before.len(),
        added.len(),
        changed.first().and_then(|key| before.get(key)),
        changed.first().and_then(|key| after.get(key)),
    );
    check_destination(&to_postgres, &seeded).await;

    let to_redis = redis.url();
    migrate(&from, &to_redis, &[]);
    check_destination(&to_redis, &seeded).await;

    // Interrupted after a few pages, then resumed with the same file.
    let resumed_to = format!("redis://127.0.0.1:{}/1", redis.port());
    let resume = dir.path().join("migration.resume");
    let resume_arg = resume.display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessionkit"))
        .args(["migrate", "--from", &from, "--to", &resumed_to, "--batch", "500", "--resume", &resume_arg])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the migration");
    let started = std::time::Instant::now();
    while !resume.exists() && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(resume.exists(), "the migration saves its position after a page");
    child.kill().expect("interrupt the migration");
    child.wait().expect("reap it");
    let report = migrate(&from, &resumed_to, &["--batch", "500", "--resume", &resume_arg]);
    assert!(report.contains("resuming an interrupted run"), "{report}");
    assert!(!resume.exists(), "a finished migration removes its resume file");
    let partial = sessionkit_stores::open(&resumed_to).await.expect("open");
    let mut held = snapshot(&*partial).await;
    for (key, _) in &seeded.short_lived {
        held.remove(key);
    }
    assert!(held == seeded.expected, "an interrupted and resumed migration must end with every session");

    // The tool refuses a destination keyed the other way.
    let other = format!("redis://127.0.0.1:{}/2", redis.port());
    let raw = sessionkit_stores::open(&other).await.expect("open");
    let mut map = data(json!({ reserved::KEYED_BY: reserved::KEYED_BY_ID }));
    map.insert("n".into(), json!(1));
    raw.set(&StoreKey::unhashed(&SessionId::generate()), &map, None).await.expect("set");
    let err = failure(&sessionkit(&["migrate", "--from", &from, "--to", &other]));
    assert!(err.contains("keyed") && err.contains("hash_ids_at_rest"), "{err}");
}
