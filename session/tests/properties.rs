//! Property tests (proptest) that run in the normal suite, mirroring the fuzz
//! targets in `fuzz/`: id parsing, `Changes::apply`, the session handle
//! against a model, and the layer's cookie handling on arbitrary headers.

use std::collections::BTreeMap;
use std::convert::Infallible;

use http::{HeaderValue, Request, Response, header};
use proptest::prelude::*;
use serde_json::Value;
use sessionkit::{Changes, LazySession, SessionConfig, SessionId, SessionLayer, SessionMap};
use sessionkit_stores::MemoryStore;
use tower::{Layer, ServiceExt, service_fn};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

proptest! {
    /// Whatever `parse` accepts prints back exactly as given.
    #[test]
    fn parse_accepts_only_canonical_text(text in ".{0,60}") {
        if let Some(id) = SessionId::parse(&text) {
            prop_assert_eq!(id.as_str(), text.as_str());
        }
    }

    /// Every 32-byte value has exactly one text form, and it parses back.
    #[test]
    fn every_id_round_trips(bytes in any::<[u8; 32]>()) {
        let id = SessionId::from_bytes(bytes);
        prop_assert_eq!(SessionId::parse(id.as_str()), Some(id.clone()));
        prop_assert_eq!(id.as_str().len(), 43);
    }

    /// 43 characters of the alphabet parse exactly when the last one leaves
    /// no stray low bits (so no id has two spellings).
    #[test]
    fn alphabet_strings_parse_iff_canonical(text in "[A-Za-z0-9_-]{43}") {
        let last = text.as_bytes()[42];
        let sextet = match last {
            b'A'..=b'Z' => last - b'A',
            b'a'..=b'z' => last - b'a' + 26,
            b'0'..=b'9' => last - b'0' + 52,
            b'-' => 62,
            _ => 63,
        };
        prop_assert_eq!(SessionId::parse(&text).is_some(), sextet & 0b11 == 0);
    }

    /// One patch applies like its operations one by one: sets, removes,
    /// clears, increments, pushes (with and without `keep_last`) and
    /// removals of an element. Integer keys and array keys are kept apart,
    /// so that no operation meets a value of the wrong type.
    #[test]
    fn changes_apply_like_a_model(
        initial in proptest::collection::btree_map(0u8..8, -1_000_000i64..1_000_000, 0..8),
        lists in proptest::collection::btree_map(0u8..8, proptest::collection::vec(0i64..4, 0..5), 0..8),
        ops in proptest::collection::vec((0u8..8, 0u8..8, -100i64..100), 0..40),
    ) {
        let int = |k: u8| format!("k{k}");
        let list = |k: u8| format!("a{k}");
        let mut start: SessionMap = initial.iter().map(|(k, v)| (int(*k), Value::from(*v))).collect();
        start.extend(lists.iter().map(|(k, v)| (list(*k), Value::from(v.clone()))));
        let mut model = start.clone();
        let mut changes = Changes::new();
        for (op, k, v) in ops {
            match op {
                0 => { model.insert(int(k), Value::from(v)); changes.set(int(k), Value::from(v)); }
                1 => { model.remove(&int(k)); changes.remove(int(k)); }
                2 => { model.remove(&list(k)); changes.remove(list(k)); }
                3 => {
                    let now = model.get(&int(k)).and_then(Value::as_i64).unwrap_or(0);
                    model.insert(int(k), Value::from(now + v));
                    changes.increment(int(k), v).expect("integer keys hold integers");
                }
                4 | 5 => {
                    let keep = (op == 5).then_some((v.unsigned_abs() % 4) as usize);
                    let mut items = model.get(&list(k)).and_then(Value::as_array).cloned().unwrap_or_default();
                    items.push(Value::from(v % 4));
                    if let Some(keep) = keep {
                        let excess = items.len().saturating_sub(keep);
                        items.drain(..excess);
                    }
                    model.insert(list(k), Value::Array(items));
                    changes.push(list(k), Value::from(v % 4), keep).expect("array keys hold arrays");
                }
                6 => {
                    let gone = Value::from(v % 4);
                    if let Some(Value::Array(items)) = model.get_mut(&list(k))
                        && let Some(at) = items.iter().position(|item| *item == gone)
                    {
                        items.remove(at);
                    }
                    changes.remove_first(list(k), Value::from(v % 4)).expect("array keys hold arrays");
                }
                _ => { model.clear(); changes.clear(); }
            }
        }
        prop_assert_eq!(changes.applied_to(start).expect("applies"), model);
    }
}

/// A handler op on the session, for the model test.
#[derive(Debug, Clone)]
enum Op {
    Set(u8, i64),
    Delete(u8),
    Clear,
    Regenerate,
    Increment(u8, i8),
    Push(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, any::<i64>()).prop_map(|(k, v)| Op::Set(k, v)),
        2 => (0u8..6).prop_map(Op::Delete),
        1 => Just(Op::Clear),
        1 => Just(Op::Regenerate),
        2 => (0u8..3, any::<i8>()).prop_map(|(k, by)| Op::Increment(k, by)),
        2 => (0u8..3).prop_map(Op::Push),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Through the real layer and store: whatever a sequence of requests does
    /// to the session, the next request reads exactly what a plain map
    /// would hold. This ties the handle's view, the `Changes` it sends and
    /// the store's `update` together.
    #[test]
    fn the_stored_session_follows_a_model(requests in proptest::collection::vec(proptest::collection::vec(op(), 1..6), 1..5)) {
        let runtime = runtime();
        let app = SessionLayer::new(SessionConfig::builder(MemoryStore::new())).layer(service_fn(
            |request: Request<Vec<Op>>| async move {
                let lazy = request.extensions().get::<LazySession>().cloned().expect("layer");
                let session = lazy.load().await.expect("load");
                // Keep the session alive whatever the ops do to it.
                session.set("anchor", true).expect("set");
                for op in request.body() {
                    match *op {
                        Op::Set(k, v) => session.set(format!("k{k}"), v).expect("set"),
                        Op::Delete(k) => { session.delete(&format!("k{k}")); }
                        Op::Clear => { session.clear(); session.set("anchor", true).expect("set"); }
                        Op::Regenerate => { session.regenerate(); }
                        // Counters and lists live under their own keys, so
                        // that sets never give them the wrong type.
                        Op::Increment(k, by) => { session.increment(format!("n{k}"), i64::from(by)).expect("increment"); }
                        Op::Push(k) => session.push(format!("l{k}"), k, Some(3)).expect("push"),
                    }
                }
                Ok::<_, Infallible>(Response::new(serde_json::to_string(&session.data()).expect("json")))
            },
        ));
        let mut model: BTreeMap<String, Value> = BTreeMap::new();
        let mut cookie: Option<String> = None;
        for ops in requests {
            for op in &ops {
                match *op {
                    Op::Set(k, v) => { model.insert(format!("k{k}"), Value::from(v)); }
                    Op::Delete(k) => { model.remove(&format!("k{k}")); }
                    Op::Clear => model.clear(),
                    Op::Regenerate => {}
                    Op::Increment(k, by) => {
                        let now = model.get(&format!("n{k}")).and_then(Value::as_i64).unwrap_or(0);
                        model.insert(format!("n{k}"), Value::from(now + i64::from(by)));
                    }
                    Op::Push(k) => {
                        let mut items = model.get(&format!("l{k}")).and_then(Value::as_array).cloned().unwrap_or_default();
                        items.push(Value::from(k));
                        let excess = items.len().saturating_sub(3);
                        items.drain(..excess);
                        model.insert(format!("l{k}"), Value::Array(items));
                    }
                }
            }
            model.insert("anchor".into(), Value::Bool(true));
            let mut request = Request::new(ops);
            if let Some(cookie) = &cookie {
                request.headers_mut().insert(header::COOKIE, HeaderValue::from_str(cookie).expect("cookie"));
            }
            let response = runtime.block_on(app.clone().oneshot(request)).expect("infallible");
            if let Some(set) = response.headers().get(header::SET_COOKIE) {
                cookie = set.to_str().ok().and_then(|v| v.split(';').next()).map(str::to_owned);
            }
            let seen: BTreeMap<String, Value> = serde_json::from_str(response.body()).expect("json");
            prop_assert_eq!(&seen, &model, "the handler's view diverged from the model");
        }
        // A fresh request reads back what the store holds.
        let mut request = Request::new(Vec::new());
        request.headers_mut().insert(header::COOKIE, HeaderValue::from_str(cookie.as_deref().expect("a session")).expect("cookie"));
        let response = runtime.block_on(app.oneshot(request)).expect("infallible");
        let stored: BTreeMap<String, Value> = serde_json::from_str(response.body()).expect("json");
        prop_assert_eq!(stored, model, "the stored session diverged from the model");
    }

    /// Arbitrary Cookie headers (any bytes a header may hold, several per
    /// request) give a fresh session and never an id from the request.
    #[test]
    fn arbitrary_cookie_headers_never_adopt(headers in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..4), with_id in any::<bool>()) {
        let runtime = runtime();
        let app = SessionLayer::new(SessionConfig::builder(MemoryStore::new())).layer(service_fn(|request: Request<()>| async move {
            let lazy = request.extensions().get::<LazySession>().cloned().expect("layer");
            Ok::<_, Infallible>(Response::new(lazy.load().await.expect("load").id().to_string()))
        }));
        let mut request = Request::new(());
        let mut sent = Vec::new();
        for mut bytes in headers {
            if with_id {
                bytes.extend_from_slice(format!("; id={}", SessionId::generate()).as_bytes());
            }
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                sent.extend_from_slice(&bytes);
                request.headers_mut().append(header::COOKIE, value);
            }
        }
        let response = runtime.block_on(app.oneshot(request)).expect("infallible");
        prop_assert_eq!(response.status(), 200);
        let id = response.into_body();
        prop_assert!(SessionId::parse(&id).is_some());
        prop_assert!(!sent.windows(id.len()).any(|w| w == id.as_bytes()), "adopted a client-supplied id");
    }
}
