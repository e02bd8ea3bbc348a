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

    /// One patch applies like its operations one by one.
    #[test]
    fn changes_apply_like_a_model(
        initial in proptest::collection::btree_map(0u8..16, any::<i64>(), 0..8),
        ops in proptest::collection::vec((0u8..3, 0u8..16, any::<i64>()), 0..32),
    ) {
        let key = |k: u8| format!("k{k}");
        let start: SessionMap = initial.iter().map(|(k, v)| (key(*k), Value::from(*v))).collect();
        let mut model = start.clone();
        let mut changes = Changes::new();
        for (op, k, v) in ops {
            match op {
                0 => { model.insert(key(k), Value::from(v)); changes.set(key(k), Value::from(v)); }
                1 => { model.remove(&key(k)); changes.remove(key(k)); }
                _ => { model.clear(); changes.clear(); }
            }
        }
        prop_assert_eq!(changes.applied_to(start), model);
    }
}

/// A handler op on the session, for the model test.
#[derive(Debug, Clone)]
enum Op {
    Set(u8, i64),
    Delete(u8),
    Clear,
    Regenerate,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, any::<i64>()).prop_map(|(k, v)| Op::Set(k, v)),
        2 => (0u8..6).prop_map(Op::Delete),
        1 => Just(Op::Clear),
        1 => Just(Op::Regenerate),
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
        let app = SessionLayer::new(SessionConfig::new(MemoryStore::new())).layer(service_fn(
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
        let app = SessionLayer::new(SessionConfig::new(MemoryStore::new())).layer(service_fn(|request: Request<()>| async move {
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
