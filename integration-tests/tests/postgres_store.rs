//! `PostgresStore` against real PostgreSQL servers on loopback ports: the
//! conformance kit, the table at rest, table names, creation on demand and
//! migrations, bad rows, sweeps, a server crash; over HTTP, two app servers
//! sharing one session space, and a database restart under load.
//!
//! Most tests share one server per test binary (`PostgresServer::shared_or_skip`),
//! each in a schema of its own; tests that stop the server start their own.
//! Without PostgreSQL installed the tests say loudly that they were skipped,
//! and fail under `CI=true`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};
use sessionkit::testing::Guarded;
use sessionkit::{
    Changes, Session, SessionConfig, SessionError, SessionId, SessionLayer, SessionMap, SessionStore, StoreKey,
};
use sessionkit::{StoreError, UpdateOutcome, expiry};
use sessionkit_integration_tests::app as suite_app;
use sessionkit_integration_tests::postgres_server::{PostgresServer, unique_name};
use sessionkit_integration_tests::server::TestServer;
use sessionkit_integration_tests::support::{error_chain, in_secs, map};
use sessionkit_integration_tests::visitor::Visitor;
use sessionkit_stores::PostgresStore;
use sessionkit_stores::sqlx::{self, PgPool};

/// `<fresh schema>.http_sessions`: a table no other test uses.
fn fresh_table(prefix: &str) -> String {
    format!("{}.http_sessions", unique_name(prefix))
}

async fn store_in(server: &PostgresServer, table: &str) -> PostgresStore {
    match PostgresStore::builder().table(table).open(&server.url()).await {
        Ok(store) => store,
        Err(err) => panic!("cannot open a PostgresStore on table {table}: {}", error_chain(&err)),
    }
}

/// A plain pool, to look at and tamper with what the store left in the database.
async fn raw(server: &PostgresServer) -> PgPool {
    PgPool::connect(&server.url()).await.unwrap_or_else(|err| panic!("cannot connect: {err}"))
}

async fn rows_in(db: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(db).await.expect("count rows")
}

async fn table_exists(db: &PgPool, table: &str) -> bool {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(table).fetch_one(db).await.expect("to_regclass")
}

fn assert_config_error<T: std::fmt::Debug>(result: Result<T, StoreError>, needles: &[&str]) -> String {
    match result {
        Err(err @ StoreError::Config { .. }) => {
            let text = error_chain(&err);
            for needle in needles {
                assert!(text.contains(needle), "the error should mention {needle:?}: {text}");
            }
            text
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

mod conformance {
    use super::*;

    // The kit evaluates this factory inside each check's test body, so the
    // `return` ends that test: without PostgreSQL every check is skipped
    // loudly (or, under CI=true, `shared_or_skip` fails it). Each check gets
    // a schema of its own, created by the store.
    sessionkit::store_conformance_tests!({
        let Some(server) = PostgresServer::shared_or_skip() else { return };
        async move { Guarded::new(store_in(&server, &fresh_table("kit")).await, server) }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_one_row_of_key_json_and_expiry_in_milliseconds() {
    let Some(server) = PostgresServer::shared_or_skip() else { return };
    let schema = unique_name("layout");
    let table = format!("{schema}.http_sessions");
    let store = store_in(&server, &table).await;
    assert_eq!(store.table(), table);
    let db = raw(&server).await;
    let id = sessionkit_integration_tests::support::key();
    let expires_at = in_secs(3600);
    store.set(&id, &map(json!({ "user": "ana", "nul": "a\u{0}b" })), Some(expires_at)).await.expect("set");

    let (key, data, at): (String, String, Option<i64>) =
        sqlx::query_as(&format!("SELECT id, convert_from(data, 'UTF8'), expires_at FROM {table}"))
            .fetch_one(&db)
            .await
            .expect("the row");
    assert_eq!(key, id.as_str(), "the id column holds the 43-character key");
    assert_eq!(serde_json::from_str::<Value>(&data).expect("JSON"), json!({ "user": "ana", "nul": "a\u{0}b" }));
    assert_eq!(at, Some(expiry::to_unix_ms(expires_at)), "the expiry is Unix milliseconds");

    let later = in_secs(7200);
    assert!(store.touch(&id, Some(later)).await.expect("touch"));
    let at: Option<i64> =
        sqlx::query_scalar(&format!("SELECT expires_at FROM {table}")).fetch_one(&db).await.expect("row");
    assert_eq!(at, Some(expiry::to_unix_ms(later)));
    store.set(&id, &SessionMap::new(), None).await.expect("set without expiry");
    let at: Option<i64> =
        sqlx::query_scalar(&format!("SELECT expires_at FROM {table}")).fetch_one(&db).await.expect("row");
    assert_eq!(at, None, "a session without expiry has a NULL expiry");

    let indexes: Vec<String> = sqlx::query_scalar("SELECT indexdef FROM pg_indexes WHERE schemaname = $1")
        .bind(&schema)
        .fetch_all(&db)
        .await
        .expect("indexes");
    assert!(indexes.iter().any(|def| def.contains("(expires_at)")), "no expiry index: {indexes:?}");
    assert!(indexes.iter().any(|def| def.contains("UNIQUE") && def.contains("(id")), "no key index: {indexes:?}");
    assert!(
        indexes.iter().any(|def| def.contains("(user_id) WHERE (user_id IS NOT NULL)")),
        "no user index: {indexes:?}"
    );

    // The user column follows the data of every write.
    let user_of_row = || async {
        let user: Option<String> =
            sqlx::query_scalar(&format!("SELECT user_id FROM {table}")).fetch_one(&db).await.expect("row");
        user
    };
    assert_eq!(user_of_row().await, None, "a session without a user has a NULL user_id");
    store.set(&id, &map(json!({ (sessionkit::reserved::USER): "ana" })), None).await.expect("set");
    assert_eq!(user_of_row().await.as_deref(), Some("ana"));
    let mut changes = Changes::new();
    changes.set(sessionkit::reserved::USER, json!("bea"));
    assert_eq!(store.update(&id, &changes, None).await.expect("update"), UpdateOutcome::Applied);
    assert_eq!(user_of_row().await.as_deref(), Some("bea"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_table_names_are_refused_before_any_sql_runs() {
    let Some(server) = PostgresServer::shared_or_skip() else { return };
    let db = raw(&server).await;
    let victim = unique_name("victim");
    sqlx::raw_sql(&format!("CREATE TABLE {victim} (x int)")).execute(&db).await.expect("create the victim");
    let tables = "SELECT count(*) FROM pg_class WHERE relkind = 'r'";
    let before: i64 = sqlx::query_scalar(tables).fetch_one(&db).await.expect("count tables");

    let hostile = [
        format!("{victim}; DROP TABLE {victim}"),
        format!("x\"; DROP TABLE {victim}; --"),
        format!("{victim}\" (id int); --"),
        "sessions' OR '1'='1".to_owned(),
        "a.b.c".to_owned(),
        "Sessions".to_owned(),
        "pg_catalog.pg_class".to_owned(),
        String::new(),
        "x".repeat(64),
        "sess\u{0}ions".to_owned(),
        "séssions".to_owned(),
    ];
    for name in &hostile {
        let result = PostgresStore::builder().table(name.as_str()).open(&server.url()).await;
        assert_config_error(result, &[&format!("{name:?}")]);
    }
    let after: i64 = sqlx::query_scalar(tables).fetch_one(&db).await.expect("count tables");
    assert_eq!(after, before, "a refused table name still created or dropped a table");
    assert!(table_exists(&db, &victim).await, "the victim table was dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_qualified_tables_are_created_with_their_schema_and_kept_apart() {
    let Some(server) = PostgresServer::shared_or_skip() else { return };
    let db = raw(&server).await;
    let (shop, blog) = (unique_name("shop"), unique_name("blog"));
    let name = unique_name("sessions");
    let shop_store = store_in(&server, &format!("{shop}.{name}")).await;
    let blog_store = store_in(&server, &format!("{blog}.{name}")).await;
    let public_store = store_in(&server, &name).await;
    for table in [format!("{shop}.{name}"), format!("{blog}.{name}"), format!("public.{name}")] {
        assert!(table_exists(&db, &table).await, "{table} was not created");
    }

    let id = sessionkit_integration_tests::support::key();
    shop_store.set(&id, &map(json!({ "cart": [1] })), None).await.expect("set");
    for other in [&blog_store, &public_store] {
        assert_eq!(other.get(&id).await.expect("get"), None, "a store saw another schema's session");
        assert!(!other.touch(&id, None).await.expect("touch"));
        let mut changes = Changes::new();
        changes.set("post", json!(1));
        assert_eq!(other.update(&id, &changes, None).await.expect("update"), UpdateOutcome::Missing);
        other.delete(&id).await.expect("delete");
    }
    assert!(shop_store.get(&id).await.expect("get").is_some(), "another schema's delete reached this store");
    assert_eq!(rows_in(&db, &format!("{shop}.{name}")).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_creation_off_a_missing_table_is_a_config_error_and_a_migrated_one_works() {
    let Some(server) = PostgresServer::shared_or_skip() else { return };
    let db = raw(&server).await;
    let schema = unique_name("migrated");
    let table = format!("{schema}.web_sessions");
    let result = PostgresStore::builder().table(table.as_str()).create_table(false).open(&server.url()).await;
    assert_config_error(result, &[&format!("{table:?}"), "does not exist", "schema_sql"]);
    assert!(!table_exists(&db, &table).await, "creation was off, yet the table was created");

    // What a team's migration does: the schema, then the shipped SQL.
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}")).execute(&db).await.expect("create schema");
    let migration = PostgresStore::schema_sql(&table).expect("valid name");
    sqlx::raw_sql(&migration).execute(&db).await.expect("apply the migration");
    sqlx::raw_sql(&migration).execute(&db).await.expect("the migration is idempotent");
    let store = PostgresStore::builder()
        .table(table.as_str())
        .create_table(false)
        .open(&server.url())
        .await
        .expect("open on the migrated table");
    let id = sessionkit_integration_tests::support::key();
    store.set(&id, &map(json!({ "a": 1 })), Some(in_secs(60))).await.expect("set");
    assert_eq!(store.get(&id).await.expect("get").map(|r| Value::Object(r.data)), Some(json!({ "a": 1 })));
    assert!(PostgresStore::schema_sql("x; DROP TABLE y").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_table_of_another_shape_is_a_config_error_and_is_left_alone() {
    let Some(server) = PostgresServer::shared_or_skip() else { return };
    let db = raw(&server).await;
    let cases = [
        ("id TEXT PRIMARY KEY, data TEXT, expires_at BIGINT", "column data must be bytea"),
        ("id TEXT PRIMARY KEY, data BYTEA, expires_at INTEGER", "column expires_at must be bigint"),
        ("id TEXT PRIMARY KEY, payload BYTEA, expires_at BIGINT", "no such column"),
        ("id TEXT, data BYTEA, expires_at BIGINT", "does not work as a session table"),
    ];
    for (columns, why) in cases {
        let table = unique_name("foreign");
        sqlx::raw_sql(&format!("CREATE TABLE {table} ({columns}); INSERT INTO {table} (id) VALUES ('keep')"))
            .execute(&db)
            .await
            .expect("create a foreign table");
        let result = PostgresStore::builder().table(table.as_str()).open(&server.url()).await;
        assert_config_error(result, &[why, &format!("{table:?}")]);
        assert_eq!(rows_in(&db, &table).await, 1, "the foreign table {table} was changed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_servers_starting_together_create_the_table_once() {
    let Some(server) = PostgresServer::shared_or_skip() else { return };
    let table = fresh_table("together");
    let opening: Vec<_> = (0..8)
        .map(|_| {
            let (url, table) = (server.url(), table.clone());
            tokio::spawn(async move { PostgresStore::builder().table(table).open(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opening {
        match open.await.expect("task") {
            Ok(store) => stores.push(store),
            Err(err) => panic!("a store starting beside others failed: {}", error_chain(&err)),
        }
    }
    let id = sessionkit_integration_tests::support::key();
    stores[0].set(&id, &map(json!({ "a": 1 })), None).await.expect("set");
    for store in &stores {
        assert!(store.get(&id).await.expect("get").is_some(), "the stores are not on one table");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_runs_on_the_applications_own_pool() {
    let Some(server) = PostgresServer::shared_or_skip() else { return };
    let pool = raw(&server).await;
    let table = fresh_table("pool");
    let store =
        PostgresStore::builder().table(table.as_str()).from_pool(pool.clone()).await.expect("from the app's pool");
    let id = sessionkit_integration_tests::support::key();
    store.set(&id, &map(json!({ "a": 1 })), None).await.expect("set");
    // The application's queries and the store's share connections.
    assert_eq!(rows_in(&pool, &table).await, 1);
    let shown = format!("{store:?}");
    assert!(shown.contains(&table) && !shown.contains("postgres://"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_rows_read_as_absent_and_are_never_patched() {
    let Some(server) = PostgresServer::shared_or_skip() else { return };
    let table = fresh_table("corrupt");
    let store = store_in(&server, &table).await;
    let db = raw(&server).await;
    let mut ids = Vec::new();
    for bytes in [&b"{not json"[..], b"[1, 2]", b"\xff\xfe"] {
        let id = sessionkit_integration_tests::support::key();
        sqlx::query(&format!("INSERT INTO {table} (id, data, expires_at) VALUES ($1, $2, NULL)"))
            .bind(id.as_str())
            .bind(bytes)
            .execute(&db)
            .await
            .expect("insert a corrupt row");
        ids.push((id, bytes));
    }
    let mut changes = Changes::new();
    changes.set("a", json!(1));
    for (id, bytes) in &ids {
        assert_eq!(store.get(id).await.expect("a corrupt row must read as absent, not fail"), None);
        assert_eq!(store.update(id, &changes, None).await.expect("update"), UpdateOutcome::Missing);
        let left: Vec<u8> = sqlx::query_scalar(&format!("SELECT data FROM {table} WHERE id = $1"))
            .bind(id.as_str())
            .fetch_one(&db)
            .await
            .expect("the row is still there");
        assert_eq!(left, *bytes, "update patched a corrupt row");
    }
    // `set` is a whole-record write: it replaces whatever was there.
    store.set(&ids[0].0, &map(json!({ "a": 2 })), None).await.expect("set over a corrupt row");
    assert_eq!(store.get(&ids[0].0).await.expect("get").map(|r| Value::Object(r.data)), Some(json!({ "a": 2 })));
}

/// Inserts `count` rows expiring at `at` (ms) straight into `table`, ids
/// `<tag><zero-padded n>` of 43 characters.
async fn insert_rows(db: &PgPool, table: &str, tag: char, count: i64, at: i64) {
    sqlx::query(&format!(
        "INSERT INTO {table} (id, data, expires_at) \
         SELECT $1 || lpad(n::text, 42, '0'), '\\x7b7d'::bytea, $3 FROM generate_series(1, $2) AS n"
    ))
    .bind(tag.to_string())
    .bind(count)
    .bind(at)
    .execute(db)
    .await
    .expect("insert rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeps_remove_every_expired_row_in_batches_even_when_two_run_at_once() {
    let Some(server) = PostgresServer::shared_or_skip() else { return };
    let table = fresh_table("sweep");
    let (one, two) = (store_in(&server, &table).await, store_in(&server, &table).await);
    let db = raw(&server).await;
    let past = expiry::to_unix_ms(expiry::now()) - 1_000;
    let future = past + 3_600_000;

    // More than two batches of 1,000: the sweep goes on until a batch is short.
    insert_rows(&db, &table, 'e', 2_500, past).await;
    insert_rows(&db, &table, 'l', 10, future).await;
    assert_eq!(one.delete_expired().await.expect("sweep"), 2_500);
    assert_eq!(rows_in(&db, &table).await, 10, "the sweep removed live rows");
    assert_eq!(one.delete_expired().await.expect("sweep"), 0);

    // Two app servers sweeping together share the work: no row counted twice, none left.
    insert_rows(&db, &table, 'f', 6_000, past).await;
    let (a, b) = tokio::join!(one.delete_expired(), two.delete_expired());
    let (a, b) = (a.expect("sweep"), b.expect("sweep"));
    let left: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE expires_at <= $1"))
        .bind(past)
        .fetch_one(&db)
        .await
        .expect("count");
    // A row one sweep held when the other looked was skipped, not waited
    // for, so a second pass may be needed to finish.
    let rest = one.delete_expired().await.expect("sweep");
    assert_eq!(a + b + rest, 6_000, "sweeps counted {a} + {b} + {rest}");
    assert_eq!(u64::try_from(left).expect("count"), rest);
    assert_eq!(rows_in(&db, &table).await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_racing_a_logout_never_bring_the_session_back() {
    let Some(server) = PostgresServer::shared_or_skip() else { return };
    let store = Arc::new(store_in(&server, &fresh_table("race")).await);
    for round in 0..20 {
        let id = sessionkit_integration_tests::support::key();
        store.set(&id, &map(json!({ "user": "ana" })), Some(in_secs(60))).await.expect("set");
        let updates: Vec<_> = (0..32)
            .map(|i| {
                let (store, id) = (store.clone(), id.clone());
                tokio::spawn(async move {
                    let mut changes = Changes::new();
                    changes.set(format!("k{i}"), json!(i));
                    store.update(&id, &changes, Some(in_secs(60))).await
                })
            })
            .collect();
        store.delete(&id).await.expect("delete");
        for update in updates {
            // Applied or Missing, depending on which side of the delete it ran.
            let _ = update.await.expect("task").expect("update");
        }
        assert_eq!(store.get(&id).await.expect("get"), None, "round {round}: an update recreated a deleted session");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_within_the_timeout_and_a_bad_url_is_a_config_error() {
    let Some(mut server) = PostgresServer::start_or_skip() else { return };
    let url = server.url();
    server.stop();
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let result = PostgresStore::builder().timeout(timeout).open(&url).await;
    let waited = started.elapsed();
    assert!(
        matches!(result, Err(StoreError::Backend { .. } | StoreError::Timeout(_))),
        "expected a backend error or a timeout, got {result:?}"
    );
    assert!(waited < timeout + Duration::from_secs(3), "open waited {waited:?} despite a {timeout:?} timeout");

    let result = PostgresStore::open("postgres://app:hunter2@127.0.0.1:notaport/db").await;
    let text = assert_config_error(result, &["invalid PostgreSQL URL"]);
    assert!(!text.contains("hunter2"), "the error repeats the password: {text}");
    let result = PostgresStore::open("redis://127.0.0.1/").await;
    assert_config_error(result, &["invalid PostgreSQL URL", "postgres://"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_server_crash_and_the_store_reconnects() {
    let Some(mut server) = PostgresServer::start_or_skip() else { return };
    let store = Arc::new(store_in(&server, "http_sessions").await);
    let ids: Vec<StoreKey> = (0..200).map(|_| sessionkit_integration_tests::support::key()).collect();
    let writes: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                store.set(&id, &map(json!({ "n": i })), Some(in_secs(3600))).await?;
                let mut changes = Changes::new();
                changes.set("updated", json!(true));
                store.update(&id, &changes, Some(in_secs(3600))).await
            })
        })
        .collect();
    for write in writes {
        assert_eq!(write.await.expect("task").expect("write"), UpdateOutcome::Applied);
    }
    // No checkpoint, no flush of shared buffers: the commits survive only
    // through the write-ahead log.
    tokio::task::block_in_place(|| {
        server.crash();
        server.restart();
    });
    for (i, id) in ids.iter().enumerate() {
        let record = store.get(id).await.expect("the same store works after the restart").expect("survived");
        assert_eq!(Value::Object(record.data), json!({ "n": i, "updated": true }), "session {i}");
    }
}

// ---------------------------------------------------------------------------
// Over HTTP: real axum servers on loopback ports, real clients with cookie
// jars. Both app servers are on 127.0.0.1 and cookies ignore ports, so a
// client carries one session cookie to either server, as behind a load
// balancer.

fn app(store: PostgresStore) -> Router {
    Router::new()
        .route("/login/{user}", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .route("/visit", post(visit))
        .route("/keys", get(keys))
        .route("/keys/{key}/{value}", put(put_key))
        .layer(SessionLayer::new(SessionConfig::new(store).secure(false)))
}

async fn login(session: Session, Path(user): Path<String>) -> Result<StatusCode, SessionError> {
    session.regenerate();
    session.set("user", user)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(session: Session) -> Result<Response, SessionError> {
    Ok(match session.get::<String>("user")? {
        Some(user) => user.into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    })
}

async fn logout(session: Session) -> StatusCode {
    session.destroy();
    StatusCode::NO_CONTENT
}

async fn visit(session: Session) -> Result<String, SessionError> {
    let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
    session.set("visits", visits)?;
    Ok(visits.to_string())
}

async fn keys(session: Session) -> String {
    Value::Object(session.data()).to_string()
}

async fn put_key(session: Session, Path((key, value)): Path<(String, String)>) -> Result<StatusCode, SessionError> {
    // The session is loaded; hold it a moment so that concurrent requests
    // all load before any saves, the case where whole-record writes lose keys.
    tokio::time::sleep(Duration::from_millis(100)).await;
    session.set(key, value)?;
    Ok(StatusCode::NO_CONTENT)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).build().expect("client")
}

/// Sends a request, failing the test rather than hanging on a stuck server.
async fn send(request: reqwest::RequestBuilder) -> (StatusCode, String) {
    let response = match tokio::time::timeout(Duration::from_secs(20), request.send()).await {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => panic!("request failed: {err}"),
        Err(_) => panic!("no response within 20 s"),
    };
    let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
    (status, response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_app_servers_share_sessions_with_64_concurrent_clients() {
    const CLIENTS: usize = 64;
    const VISITS: u64 = 10;
    let Some(server) = PostgresServer::shared_or_skip() else { return };
    let table = fresh_table("two_apps");
    // Two stores, two pools: as two processes would have.
    let server_a = TestServer::start(app(store_in(&server, &table).await)).await;
    let server_b = TestServer::start(app(store_in(&server, &table).await)).await;
    let (a, b) = (Arc::new(server_a.url("")), Arc::new(server_b.url("")));
    let db = raw(&server).await;

    // Every client logs in on one server and visits both in turn; each
    // answer must be exactly the next count, whichever server saw the last.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (a, b) = (a.clone(), b.clone());
            tokio::spawn(async move {
                let http = client();
                let pick = |n: usize| if n.is_multiple_of(2) { a.as_str() } else { b.as_str() };
                assert_eq!(send(http.post(format!("{}/login/user{c}", pick(c)))).await.0, StatusCode::NO_CONTENT);
                for visit in 1..=VISITS {
                    let base = pick(c + usize::try_from(visit).expect("small"));
                    assert_eq!(
                        send(http.post(format!("{base}/visit"))).await,
                        (StatusCode::OK, visit.to_string()),
                        "client {c}, visit {visit}"
                    );
                }
                assert_eq!(send(http.get(format!("{}/me", pick(c + 1)))).await, (StatusCode::OK, format!("user{c}")));
                http
            })
        })
        .collect();
    let mut jars = Vec::new();
    for client in clients {
        jars.push(client.await.expect("a client failed"));
    }
    assert_eq!(rows_in(&db, &table).await, i64::try_from(CLIENTS).expect("small"), "one row per client's session");
    let visits: Vec<i64> =
        sqlx::query_scalar(&format!("SELECT (convert_from(data, 'UTF8')::jsonb ->> 'visits')::bigint FROM {table}"))
            .fetch_all(&db)
            .await
            .expect("visits at rest");
    assert!(visits.iter().all(|&v| v == i64::try_from(VISITS).expect("small")), "stored visit counts: {visits:?}");

    // Concurrent writes to different keys of one session, alternating
    // between A and B, all loading it before any saves: every key survives.
    let http = &jars[0];
    let writes: Vec<_> = (0..16)
        .map(|i| {
            let base = if i % 2 == 0 { &a } else { &b };
            tokio::spawn(send(http.put(format!("{base}/keys/k{i}/v{i}"))))
        })
        .collect();
    for write in writes {
        assert_eq!(write.await.expect("task").0, StatusCode::NO_CONTENT);
    }
    let data: Value = serde_json::from_str(&send(http.get(format!("{b}/keys"))).await.1).expect("JSON");
    for i in 0..16 {
        assert_eq!(data[format!("k{i}")], json!(format!("v{i}")), "the write of k{i} was lost: {data}");
    }

    // Half the clients log out on B; A sees exactly that.
    for (c, http) in jars.iter().enumerate().filter(|(c, _)| c.is_multiple_of(2)) {
        assert_eq!(send(http.post(format!("{b}/logout"))).await.0, StatusCode::NO_CONTENT, "client {c}");
    }
    for (c, http) in jars.iter().enumerate() {
        let expected = if c.is_multiple_of(2) {
            (StatusCode::UNAUTHORIZED, String::new())
        } else {
            (StatusCode::OK, format!("user{c}"))
        };
        assert_eq!(send(http.get(format!("{a}/me"))).await, expected, "client {c} on A after the logouts");
    }
    assert_eq!(rows_in(&db, &table).await, i64::try_from(CLIENTS / 2).expect("small"));
}

/// What one request of the load saw.
#[derive(Debug)]
struct Seen {
    started: Instant,
    took: Duration,
    status: StatusCode,
    body: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_answers_500s_then_the_same_sessions_resume() {
    const CLIENTS: usize = 8;
    let Some(mut server) = PostgresServer::start_or_skip() else { return };
    let store = store_in(&server, "http_sessions").await;
    let timeout = store.timeout();
    let app_server = TestServer::start(app(store)).await;
    let base = Arc::new(app_server.url(""));
    let jars: Vec<reqwest::Client> = (0..CLIENTS).map(|_| client()).collect();
    for (c, http) in jars.iter().enumerate() {
        assert_eq!(send(http.post(format!("{base}/login/user{c}"))).await.0, StatusCode::NO_CONTENT);
    }

    // Every client visits in a loop until told to stop (or for a minute at most).
    let stop = Arc::new(tokio::sync::Notify::new());
    let load: Vec<_> = jars
        .iter()
        .map(|http| {
            let (http, base, stop) = (http.clone(), base.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(60);
                let stopped = stop.notified();
                tokio::pin!(stopped);
                while Instant::now() < deadline {
                    let started = Instant::now();
                    let (status, body) = tokio::select! {
                        () = &mut stopped => break,
                        answer = send(http.post(format!("{base}/visit"))) => answer,
                    };
                    seen.push(Seen { started, took: started.elapsed(), status, body });
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                seen
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    // The harness blocks while the server stops and starts: off the runtime's workers.
    let stopping_at = Instant::now();
    tokio::task::block_in_place(|| server.stop());
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    tokio::task::block_in_place(|| server.restart());
    let back_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.notify_waiters();
    let mut seen = Vec::new();
    for client in load {
        seen.push(client.await.expect("a load client panicked"));
    }

    let mut recoveries = Vec::new();
    let mut failed_waits = Vec::new();
    for (c, seen) in seen.iter().enumerate() {
        let mut last = 0;
        for s in seen {
            match s.status {
                StatusCode::OK => {
                    let count: u64 = s.body.parse().expect("a count");
                    assert!(count > last, "client {c}: the count went from {last} to {count}: the session was lost");
                    last = count;
                }
                StatusCode::INTERNAL_SERVER_ERROR => {
                    assert_eq!(s.body, "", "a 500 must be empty");
                    failed_waits.push(s.took);
                }
                other => panic!("client {c}: unexpected {other} during the restart"),
            }
        }
        let during: Vec<&Seen> =
            seen.iter().filter(|s| s.started >= down_at && s.started + s.took <= back_at).collect();
        assert!(!during.is_empty(), "client {c} sent nothing while the database was down");
        assert!(during.iter().all(|s| s.status == StatusCode::INTERNAL_SERVER_ERROR), "client {c}: {during:?}");
        let first_ok_after = seen
            .iter()
            .find(|s| s.started + s.took > back_at && s.status == StatusCode::OK)
            .unwrap_or_else(|| panic!("client {c} never got a 200 after the restart: {seen:?}"));
        recoveries.push((first_ok_after.started + first_ok_after.took).duration_since(back_at));
        let before = seen.iter().filter(|s| s.started + s.took < stopping_at);
        assert!(before.clone().all(|s| s.status == StatusCode::OK), "client {c} failed before the restart");
        assert!(before.count() > 0, "client {c} sent nothing before the restart");
    }
    for wait in &failed_waits {
        assert!(*wait < timeout + Duration::from_secs(3), "a request hung {wait:?} with a {timeout:?} timeout");
    }
    // The same sessions, without restarting the app.
    for (c, http) in jars.iter().enumerate() {
        assert_eq!(send(http.get(format!("{base}/me"))).await, (StatusCode::OK, format!("user{c}")), "client {c}");
    }
    let max = |waits: &[Duration]| waits.iter().max().copied().unwrap_or_default();
    eprintln!(
        "restart under load: the fast shutdown took {:?}; {} requests, {} answered 500 (slowest {:?}, timeout {timeout:?}); \
         every client's first 200 came within {:?} of the server being back",
        down_at.duration_since(stopping_at),
        seen.iter().map(Vec::len).sum::<usize>(),
        failed_waits.len(),
        max(&failed_waits),
        max(&recoveries),
    );
}

// ---------------------------------------------------------------------------
// Upgrading a table of the first layout (id, data, expires_at), made by the
// previous version of the store.

/// The first version's schema, as it shipped.
const FIRST_LAYOUT: &str = r#"
    CREATE TABLE {table} (id TEXT COLLATE "C" NOT NULL PRIMARY KEY, data BYTEA NOT NULL, expires_at BIGINT);
    CREATE INDEX ON {table} (expires_at);
"#;

/// What the old table holds: keys with the data bytes as the first
/// version wrote them, and the user each should be indexed under.
struct OldRows {
    rows: Vec<(String, Vec<u8>, Option<String>)>,
}

impl OldRows {
    /// Sessions of every kind an upgrade meets, and enough of them to take
    /// several batches.
    fn new() -> Self {
        let mut rows = Vec::new();
        let mut add = |value: Value, user: Option<&str>| {
            let bytes = serde_json::to_vec(&value).expect("JSON");
            rows.push((
                sessionkit_integration_tests::support::key().as_str().to_owned(),
                bytes,
                user.map(str::to_owned),
            ));
        };
        let user = sessionkit::reserved::USER;
        add(json!({ (user): "ada", "cart": [1, 2] }), Some("ada"));
        // U+0000 elsewhere in the data: JSONB would refuse the document.
        add(json!({ "A\u{0}": "x\u{0}y", (user): "bob" }), Some("bob"));
        add(json!({ (user): "bob", "z": "\u{0}" }), Some("bob"));
        add(json!({ (user): "名前 \"quoted\" \\ back" }), Some("名前 \"quoted\" \\ back"));
        add(json!({ "anonymous": true }), None);
        add(json!({ (user): 42 }), None);
        add(json!({ "nested": { (user): "mallory" } }), None);
        // A user name text cannot hold: left out, on either path.
        add(json!({ (user): "nul\u{0}user" }), None);
        for n in 0..2_500 {
            add(json!({ (user): format!("user{}", n % 3), "n": n }), Some(["user0", "user1", "user2"][n % 3]));
        }
        // Not JSON, not UTF-8: such rows read as absent.
        rows.push((sessionkit_integration_tests::support::key().as_str().to_owned(), b"\xff{not json".to_vec(), None));
        Self { rows }
    }

    /// Creates `table` in the first layout and fills it.
    async fn write(&self, db: &PgPool, table: &str) {
        sqlx::raw_sql(&FIRST_LAYOUT.replace("{table}", table)).execute(db).await.expect("the first layout");
        let (ids, data): (Vec<&str>, Vec<&[u8]>) =
            self.rows.iter().map(|(id, bytes, _)| (id.as_str(), bytes.as_slice())).unzip();
        sqlx::query(&format!(
            "INSERT INTO {table} (id, data, expires_at) SELECT id, data, NULL FROM unnest($1::text[], $2::bytea[]) AS r (id, data)"
        ))
        .bind(&ids)
        .bind(&data)
        .execute(db)
        .await
        .expect("old rows");
    }

    /// Every key with the user it should be indexed under, in key order.
    fn expected(&self) -> Vec<(String, Option<String>)> {
        let mut expected: Vec<_> = self.rows.iter().map(|(id, _, user)| (id.clone(), user.clone())).collect();
        expected.sort();
        expected
    }
}

async fn user_column(db: &PgPool, table: &str) -> Vec<(String, Option<String>)> {
    sqlx::query_as(&format!("SELECT id, user_id FROM {table} ORDER BY id")).fetch_all(db).await.expect("user_id")
}

async fn has_column(db: &PgPool, table: &str, column: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2)")
        .bind(table)
        .bind(column)
        .fetch_one(db)
        .await
        .expect("pg_attribute")
}

/// What every upgraded table must offer: listings of the old sessions,
/// revocation, leases.
async fn assert_upgraded(store: &PostgresStore, old: &OldRows) {
    let listed = |user: &'static str| async move {
        let mut keys: Vec<String> = store
            .sessions_of(user)
            .await
            .expect("sessions_of")
            .into_iter()
            .map(|(k, _)| k.as_str().to_owned())
            .collect();
        keys.sort();
        keys
    };
    let of = |user: &str| {
        let mut keys: Vec<String> =
            old.rows.iter().filter(|(_, _, u)| u.as_deref() == Some(user)).map(|(id, _, _)| id.clone()).collect();
        keys.sort();
        keys
    };
    assert_eq!(listed("ada").await, of("ada"));
    assert_eq!(listed("bob").await, of("bob"), "sessions holding U+0000 must be indexed too");
    assert_eq!(listed("user1").await.len(), 833);
    assert_eq!(listed("mallory").await, Vec::<String>::new(), "a nested key is not the session's user");
    let bob = StoreKey::parse(&of("bob")[0]).expect("a key");
    assert!(store.revoke("bob", &bob).await.expect("revoke"), "an old session is revocable by its user");
    assert_eq!(store.revoke_all("user2", None).await.expect("revoke_all"), 833);
    let lease = store.try_lease(&bob, Duration::from_secs(5)).await.expect("the leases table is there");
    assert!(lease.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_layout_table_is_upgraded_on_open_once_by_servers_starting_together() {
    let Some(server) = PostgresServer::shared_or_skip() else { return };
    let db = raw(&server).await;
    let table = fresh_table("upgrade");
    sqlx::raw_sql(&format!("CREATE SCHEMA {}", table.split('.').next().expect("schema")))
        .execute(&db)
        .await
        .expect("schema");
    let old = OldRows::new();
    old.write(&db, &table).await;

    // Four app servers of the new version start at once on the old table.
    let opening: Vec<_> = (0..4)
        .map(|_| {
            let (url, table) = (server.url(), table.clone());
            tokio::spawn(async move { PostgresStore::builder().table(table).open(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opening {
        match open.await.expect("task") {
            Ok(store) => stores.push(store),
            Err(err) => panic!("a store opening the old table failed: {}", error_chain(&err)),
        }
    }
    assert_eq!(user_column(&db, &table).await, old.expected(), "the backfill must read each user as writes do");
    let indexes: Vec<String> =
        sqlx::query_scalar("SELECT indexdef FROM pg_indexes WHERE tablename = 'http_sessions' AND schemaname = $1")
            .bind(table.split('.').next().expect("schema"))
            .fetch_all(&db)
            .await
            .expect("indexes");
    assert!(indexes.iter().any(|def| def.contains("(user_id)")), "no user index: {indexes:?}");
    assert_upgraded(&stores[0], &old).await;
    // A store opened later finds nothing left to do and changes nothing.
    let before = user_column(&db, &table).await;
    drop(store_in(&server, &table).await);
    assert_eq!(user_column(&db, &table).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_creation_off_a_first_layout_table_is_refused_until_the_shipped_upgrade_ran() {
    let Some(server) = PostgresServer::shared_or_skip() else { return };
    let db = raw(&server).await;
    let schema = unique_name("manual_upgrade");
    let table = format!("{schema}.web_sessions");
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}")).execute(&db).await.expect("schema");
    let old = OldRows::new();
    old.write(&db, &table).await;

    let url = server.url();
    let closed = || PostgresStore::builder().table(table.as_str()).create_table(false).open(&url);
    assert_config_error(closed().await, &[&format!("{table:?}"), "user_id", "upgrade_sql", "postgres_upgrade_2.sql"]);
    assert!(!has_column(&db, &table, "user_id").await, "creation was off, yet the table was altered");

    // What a team's migration does: the shipped SQL, twice (it is idempotent).
    let upgrade = PostgresStore::upgrade_sql(&table).expect("valid name");
    for _ in 0..2 {
        sqlx::raw_sql(&upgrade).execute(&db).await.expect("the shipped upgrade runs");
    }
    assert_eq!(
        user_column(&db, &table).await,
        old.expected(),
        "the SQL backfill must index the same users as the store's own"
    );
    let store = match closed().await {
        Ok(store) => store,
        Err(err) => panic!("the upgraded table must open with creation off: {}", error_chain(&err)),
    };
    assert_upgraded(&store, &old).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_name_text_cannot_hold_is_refused_not_left_out_of_the_index() {
    let Some(server) = PostgresServer::shared_or_skip() else { return };
    let store = store_in(&server, &fresh_table("nul_user")).await;
    let id = sessionkit_integration_tests::support::key();
    let data = map(json!({ (sessionkit::reserved::USER): "a\u{0}b" }));
    let err = store.set(&id, &data, None).await.expect_err("a user with U+0000 cannot be indexed");
    assert!(matches!(err, StoreError::Encode(_)), "{err:?}");
    assert_eq!(store.get(&id).await.expect("get"), None, "nothing was written");
}

// ---------------------------------------------------------------------------
// One key, two app servers: the suite's app (`sessionkit_integration_tests::app`)
// on two axum servers, each with its own PostgresStore (its own pool) on one
// table, as two processes behind a load balancer would be.

/// Two app servers on one table, and the configuration they share.
struct TwoServers {
    a: TestServer,
    b: TestServer,
    config: SessionConfig,
    table: String,
}

impl TwoServers {
    async fn start(server: &PostgresServer, prefix: &str) -> Self {
        let table = fresh_table(prefix);
        // Generous: fifty exclusive requests queue for one session here, and
        // this test is about what they write, not how long they wait.
        let configure =
            |store: PostgresStore| SessionConfig::new(store).secure(false).exclusive_wait(Duration::from_secs(30));
        let config = configure(store_in(server, &table).await);
        let serve = |config: SessionConfig| {
            let layer = SessionLayer::try_new(config).expect("valid configuration");
            TestServer::start(suite_app::router(layer, Arc::new(suite_app::Gates::default())))
        };
        let a = serve(config.clone()).await;
        let b = serve(configure(store_in(server, &table).await)).await;
        Self { a, b, config, table }
    }

    /// A visitor holding a stored session, made on server A.
    async fn visitor(&self) -> Visitor {
        let mut visitor = Visitor::new(&self.a.url(""));
        assert_eq!(visitor.post("/set/anchor/1").await.status, StatusCode::OK);
        visitor
    }

    /// The store key of the visitor's session.
    fn key_of(&self, visitor: &Visitor) -> StoreKey {
        let cookie = visitor.cookie.as_deref().unwrap_or_default().trim_start_matches("id=");
        self.config.store_key(&SessionId::parse(cookie).expect("a session id"))
    }

    /// Sends `requests` POSTs to `path` (`{i}` replaced by the request's
    /// number) from `connections` connections of the same visitor, each
    /// connection on server A or B in turn; returns every status.
    async fn spread(&self, visitor: &Visitor, path: &str, requests: usize, connections: usize) -> Vec<StatusCode> {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let workers: Vec<_> = (0..connections)
            .map(|c| {
                let base = if c % 2 == 0 { self.a.url("") } else { self.b.url("") };
                let connection = visitor.new_connection().on(&base);
                let (next, path) = (next.clone(), path.to_owned());
                tokio::spawn(async move {
                    let mut statuses = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if i >= requests {
                            return statuses;
                        }
                        let request = connection.request(reqwest::Method::POST, &path.replace("{i}", &i.to_string()));
                        match tokio::time::timeout(Duration::from_secs(60), request.send()).await {
                            Ok(Ok(response)) => {
                                statuses.push(StatusCode::from_u16(response.status().as_u16()).expect("status"))
                            }
                            Ok(Err(err)) => panic!("request failed: {err}"),
                            Err(_) => panic!("no response within 60 s"),
                        }
                    }
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for worker in workers {
            statuses.extend(worker.await.expect("a worker panicked"));
        }
        statuses
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_app_servers_count_200_concurrent_increments_of_one_key_exactly() {
    let Some(server) = PostgresServer::shared_or_skip() else { return };
    let two = TwoServers::start(&server, "two_incr").await;
    let mut visitor = two.visitor().await;
    let statuses = two.spread(&visitor, "/increment/visits", 200, 32).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    assert_eq!(visitor.get("/get/visits").await.body, "200", "increments through two app servers were lost");
    assert_eq!(visitor.on(&two.b.url("")).get("/get/visits").await.body, "200");
    let db = raw(&server).await;
    assert_eq!(rows_in(&db, &two.table).await, 1, "one session, one row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_app_servers_keep_all_of_100_concurrent_pushes_onto_one_key() {
    let Some(server) = PostgresServer::shared_or_skip() else { return };
    let two = TwoServers::start(&server, "two_push").await;
    let mut visitor = two.visitor().await;
    let statuses = two.spread(&visitor, "/push/cart/item-{i}", 100, 32).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    let cart: Vec<String> = serde_json::from_str(&visitor.get("/get/cart").await.body).expect("a list");
    let mut items = cart.clone();
    items.sort();
    items.dedup();
    assert_eq!((cart.len(), items.len()), (100, 100), "pushes through two app servers were lost or doubled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_app_servers_run_50_exclusive_read_modify_writes_one_at_a_time() {
    let Some(server) = PostgresServer::shared_or_skip() else { return };
    let two = TwoServers::start(&server, "two_excl").await;
    let mut visitor = two.visitor().await;
    let statuses = two.spread(&visitor, "/exclusive/bump/counter", 50, 16).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    let object = visitor.get("/get/counter").await.json();
    assert_eq!(object["n"], 50, "an exclusive read-modify-write through two app servers was lost: {object}");
    let seen: Vec<u64> = object["seen"].as_array().expect("seen").iter().filter_map(Value::as_u64).collect();
    assert_eq!(seen, (1..=50).collect::<Vec<_>>(), "exclusive requests on two app servers overlapped");
    let db = raw(&server).await;
    let leases: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}_leases", two.table))
        .fetch_one(&db)
        .await
        .expect("count leases");
    assert_eq!(leases, 0, "every exclusive request released its lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lease_holder_delays_the_next_exclusive_request_only_until_its_lease_runs_out() {
    let Some(server) = PostgresServer::shared_or_skip() else { return };
    let two = TwoServers::start(&server, "dead_holder").await;
    let mut visitor = two.visitor().await;
    let key = two.key_of(&visitor);

    // Another app server takes the session's lease and dies holding it:
    // its pool closes, nothing releases the lease.
    let doomed = store_in(&server, &two.table).await;
    let lease = doomed.try_lease(&key, Duration::from_millis(1_500)).await.expect("try_lease");
    let lease = lease.expect("nobody held the lease");
    doomed.pool().close().await;
    drop(doomed);

    for base in [two.a.url(""), two.b.url("")] {
        assert_eq!(
            visitor.on(&base).post("/increment/free").await.status,
            StatusCode::OK,
            "a route without exclusivity does not wait for the lease"
        );
    }
    let answer = visitor.on(&two.b.url("")).post("/exclusive/bump/counter").await;
    let answered_at = std::time::SystemTime::now();
    assert_eq!(answer.status, StatusCode::OK, "the exclusive request proceeds once the dead holder's lease ran out");
    assert_eq!(answer.body, "1");
    assert!(answered_at >= lease.expires_at, "the exclusive request ran while the dead holder's lease was live");
    assert_eq!(visitor.get("/get/free").await.body, "2");
    assert_eq!(visitor.get("/get/counter").await.json()["n"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeps_remove_leases_that_ran_out_in_batches_and_keep_live_ones() {
    let Some(server) = PostgresServer::shared_or_skip() else { return };
    let table = fresh_table("lease_sweep");
    let store = store_in(&server, &table).await;
    let db = raw(&server).await;
    let leases = format!("{table}_leases");
    let past = expiry::to_unix_ms(expiry::now()) - 1_000;
    // Holders that died: more than two sweep batches of leases that ran out.
    sqlx::query(&format!(
        "INSERT INTO {leases} (id, token, expires_at) \
         SELECT 'x' || lpad(n::text, 42, '0'), md5(n::text), $1 FROM generate_series(1, 2500) AS n"
    ))
    .bind(past)
    .execute(&db)
    .await
    .expect("leases that ran out");
    let live = sessionkit_integration_tests::support::key();
    let held = store.try_lease(&live, Duration::from_secs(60)).await.expect("try_lease").expect("granted");
    insert_rows(&db, &table, 'e', 3, past).await;

    assert_eq!(store.delete_expired().await.expect("sweep"), 3, "the count is of sessions, not leases");
    assert_eq!(rows_in(&db, &leases).await, 1, "leases that ran out must be swept, a live one kept");
    assert_eq!(store.try_lease(&live, Duration::from_secs(60)).await.expect("try_lease"), None, "the live lease holds");
    store.release_lease(&live, held.token).await.expect("release");
    assert_eq!(rows_in(&db, &leases).await, 0, "a released lease leaves no row");
}
