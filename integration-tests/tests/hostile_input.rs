//! Hostile input over HTTP, table-driven: every case must end in a fresh
//! session or a clear 4xx, never adopt a client-supplied id, never hand out
//! another client's session, and leave other sessions exactly as they were.

use std::sync::Arc;

use serde_json::json;
use sessionkit::cookie::Key;
use sessionkit::{SessionConfig, SessionConfigBuilder, SessionId, SessionLayer, SessionRecord, SessionStore};
use sessionkit_integration_tests::app::{self, Gates};
use sessionkit_integration_tests::raw_http::{self, RawResponse, cookie_header};
use sessionkit_integration_tests::server::TestServer;
use sessionkit_stores::MemoryStore;

/// One hostile request.
struct Case {
    name: String,
    method: &'static str,
    path: String,
    headers: Vec<Vec<u8>>,
    body: Vec<u8>,
}

impl Case {
    /// `GET /id` (loads the session, never writes it) with one raw Cookie header.
    fn cookie(name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        Self::cookies(name, vec![cookie_header(value.as_ref())])
    }

    fn cookies(name: impl Into<String>, headers: Vec<Vec<u8>>) -> Self {
        Self { name: name.into(), method: "GET", path: "/id".into(), headers, body: Vec::new() }
    }

    fn json(name: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            method: "PUT",
            path: "/json/payload".into(),
            headers: vec![b"Content-Type: application/json".to_vec()],
            body: body.into(),
        }
    }
}

/// A server on a shared MemoryStore, holding one victim session.
struct Target {
    server: TestServer,
    store: Arc<MemoryStore>,
    victim: String,
    config: SessionConfig,
    /// The victim's record as first stored, bookkeeping included.
    victim_record: SessionRecord,
}

impl Target {
    async fn start(configure: impl FnOnce(SessionConfigBuilder) -> SessionConfigBuilder) -> Self {
        let store = Arc::new(MemoryStore::new());
        let config = configure(SessionConfig::shared_builder(store.clone()).secure(false).max_size(64 * 1024));
        let layer = SessionLayer::new(config);
        let config = layer.config().clone();
        let server = TestServer::start(app::router(layer, Arc::new(Gates::default()))).await;
        let response = raw_http::send(server.addr(), "POST", "/set/k/v", &[], b"").await;
        let victim = response.set_cookie_value("id").expect("the victim's session cookie");
        let mut target = Self { server, store, victim, config, victim_record: SessionRecord::default() };
        target.victim_record = target.stored_victim().await;
        assert_eq!(target.victim_record.data.get("k"), Some(&json!("v")));
        target
    }

    async fn stored_victim(&self) -> SessionRecord {
        let stored = self.store.get(&self.config.store_key(&self.victim_id())).await.expect("read");
        stored.expect("the victim's record")
    }

    /// The victim's bare id (the cookie value minus a signature, if any).
    fn victim_id(&self) -> SessionId {
        SessionId::parse(&self.victim[self.victim.len() - 43..]).expect("victim id")
    }

    async fn send(&self, case: &Case) -> RawResponse {
        raw_http::send(self.server.addr(), case.method, &case.path, &case.headers, &case.body).await
    }

    /// The case ended in a clear 4xx, or in a fresh session that is neither
    /// the victim's nor any id the request carried.
    fn check(&self, case: &Case, response: &RawResponse) {
        let name = &case.name;
        match response.status {
            400..=499 => {}
            200 => {
                let request: Vec<u8> = case.headers.concat();
                let issued = match case.path.as_str() {
                    "/id" => String::from_utf8(response.body.clone()).expect("utf-8 id"),
                    _ => response.set_cookie_value("id").unwrap_or_default(),
                };
                if issued.is_empty() {
                    return;
                }
                assert_ne!(issued, self.victim, "{name}: handed out the victim's session");
                assert_ne!(issued, self.victim_id().to_string(), "{name}: handed out the victim's session");
                assert!(
                    request.windows(issued.len()).all(|w| w != issued.as_bytes()),
                    "{name}: adopted an id the client sent"
                );
            }
            status => panic!("{name}: expected a fresh session or a 4xx, got status {status}"),
        }
    }

    /// The victim's session is exactly as it was, and no hostile request left
    /// a record behind.
    async fn assert_victim_untouched(&self, records: usize) {
        let response = raw_http::send(
            self.server.addr(),
            "GET",
            "/get/k",
            &[cookie_header(format!("id={}", self.victim).as_bytes())],
            b"",
        )
        .await;
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"\"v\"", "the victim's session changed");
        assert_eq!(self.stored_victim().await, self.victim_record, "the victim's record changed");
        assert_eq!(self.store.len(), records, "a hostile request left a record in the store");
    }
}

fn unknown_id() -> String {
    SessionId::generate().to_string()
}

fn cases(victim: &str) -> Vec<Case> {
    let mut cases = Vec::new();

    // Ids of every wrong length, from the victim's own characters.
    for len in (0..=100).filter(|&len| len != 43) {
        let text: String = victim.chars().cycle().take(len).collect();
        cases.push(Case::cookie(format!("id of length {len}"), format!("id={text}")));
    }
    // One foreign character in an otherwise valid id, at the start, middle and end.
    for bad in ['+', '/', '=', '.', '%', ' ', '~', '!', '*', '\\', 'é', 'Ａ', '\t'] {
        for at in [0, 21, 42] {
            let mut text: Vec<char> = victim.chars().collect();
            text[at] = bad;
            let text: String = text.into_iter().collect();
            cases.push(Case::cookie(format!("id with {bad:?} at {at}"), format!("id={text}")));
        }
    }
    // Traversal shapes.
    for text in [
        "../../../../../../../../../../../etc/passwd".to_string(),
        "..%2F..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd".to_string(),
        format!("{}a", "../".repeat(14)),
        "/etc/passwd".to_string(),
        "..\\..\\..\\windows\\win.ini".to_string(),
        format!("{}/../{}", &victim[..20], &victim[..19]),
    ] {
        cases.push(Case::cookie(format!("traversal {text}"), format!("id={text}")));
    }
    // Ids in other libraries' formats.
    for (format, text) in [
        ("uuid", "67e55044-10b1-426f-9247-bb680e5fe0c8".to_string()),
        ("tower-sessions i128 base64", "KbGPDnhpamY5Gyk3xxYdgg".to_string()),
        ("express-session signed", "s%3Aw1XhGCZ4Nl7bJH6oGkNVlG.0zkJkQ1S9WQxY8mG3x9".to_string()),
        ("actix-session", "bTfEjqXcPk1Ef36TD8gGy0x5U6mzVOY9".to_string()),
        ("php", "r2t5uvjq435r4q7ib3vtdjq120".to_string()),
        ("hex sha-256", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_string()),
        ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl".to_string()),
        ("standard base64 with padding", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_string()),
    ] {
        cases.push(Case::cookie(format!("{format} id"), format!("id={text}")));
    }
    // Oversized and numerous cookies.
    cases.push(Case::cookie("one 64 KiB cookie value", format!("id={}", "A".repeat(64 * 1024))));
    let junk: String = (0..4_000).map(|i| format!("c{i}=v; ")).collect();
    cases.push(Case::cookie("64 KiB of other cookies, then an unknown id", format!("{junk}id={}", unknown_id())));
    let many_ids: String = (0..3_000).map(|i| format!("id=bad{i}; ")).collect();
    cases.push(Case::cookie("3,000 invalid cookies of our name", many_ids));
    cases.push(Case::cookies(
        "500 Cookie headers",
        (0..500).map(|i| cookie_header(format!("id=bad{i}").as_bytes())).collect(),
    ));
    // Raw bytes.
    cases.push(Case::cookie("non-UTF-8 value", [b"id=".as_slice(), &[0xff, 0xfe, 0xfd]].concat()));
    cases.push(Case::cookie("43 non-UTF-8 bytes", [b"id=".as_slice(), &[0x80; 43]].concat()));
    cases.push(Case::cookie("NUL inside the id", format!("id={}\0{}", &victim[..21], &victim[22..])));
    cases.push(Case::cookie("NUL before the name", format!("\0id={}", unknown_id())));
    cases.push(Case::cookie("control bytes", b"id=\x01\x02\x03\x1b[31m"));
    cases.push(Case::cookie("empty value", "id="));
    cases.push(Case::cookie("name without value", "id"));
    cases.push(Case::cookie("quoted unknown id", format!("id=\"{}\"", unknown_id())));
    cases.push(Case::cookie("percent-encoded unknown id", format!("id={}", unknown_id().replace('-', "%2D"))));
    cases.push(Case::cookie("unknown id then the victim's name in other case", format!("ID={victim}")));
    cases.push(Case::cookies("CR LF injection attempt", vec![b"Cookie: id=x\r\nX-Injected: 1".to_vec()]));
    // Session data a client may try to store.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    cases.push(Case::json("JSON nested 10,000 levels deep", deep));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    cases.push(Case::json("JSON objects nested 10,000 levels deep", deep_object));
    cases.push(Case::json("a number JSON cannot hold (1e999)", "1e999"));
    cases.push(Case::json("a 400-digit integer", "9".repeat(400)));
    cases.push(Case::json("NaN", "NaN"));
    cases.push(Case::json("Infinity", "-Infinity"));
    cases.push(Case::json("a lone surrogate", r#""\ud800""#));
    cases.push(Case::json("truncated JSON", r#"{"a": [1, 2"#));
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_cookies_and_data_get_a_fresh_session_or_a_4xx() {
    let target = Target::start(|c| c).await;
    let mut cases = cases(&target.victim);
    // A leaked store key (the SHA-256 of the victim's id) is not a cookie.
    let store_key = target.config.store_key(&target.victim_id());
    cases.push(Case::cookie("the victim's store key replayed as a cookie", format!("id={store_key}")));
    assert!(cases.len() >= 30);
    let mut statuses = std::collections::BTreeMap::new();
    for case in &cases {
        let response = target.send(case).await;
        target.check(case, &response);
        *statuses.entry(response.status).or_insert(0) += 1;
    }
    target.assert_victim_untouched(1).await;
    println!("{} hostile cases, by status: {statuses:?}", cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_or_huge_session_data_is_refused_and_nothing_earlier_is_lost() {
    let target = Target::start(|c| c).await;
    // The attacker's own session, then growth past the size limit.
    let response = raw_http::send(target.server.addr(), "POST", "/set/mine/1", &[], b"").await;
    let attacker = response.set_cookie_value("id").expect("attacker session");
    let cookie = vec![cookie_header(format!("id={attacker}").as_bytes())];
    let grown = raw_http::send(target.server.addr(), "POST", "/big/100000", &cookie, b"").await;
    assert_eq!(grown.status, 413, "a session past max_size is refused with 413");
    // Nesting that serde_json accepts (127 levels) but a store could not read back.
    let deep = format!("{}{}", "[".repeat(120), "]".repeat(120));
    let headers = [cookie.clone(), vec![b"Content-Type: application/json".to_vec()]].concat();
    let nested = raw_http::send(target.server.addr(), "PUT", "/json/deep", &headers, deep.as_bytes()).await;
    assert_eq!(nested.status, 413, "a session nested too deep to read back is refused");
    let read = raw_http::send(target.server.addr(), "GET", "/get/mine", &cookie, b"").await;
    assert_eq!(read.body, b"\"1\"", "the refused writes must leave the earlier state");
    let read = raw_http::send(target.server.addr(), "GET", "/get/big", &cookie, b"").await;
    assert_eq!(read.body, b"null");
    target.assert_victim_untouched(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_cookies_resist_forgery_and_replay() {
    let target = Target::start(|c| c.signing_key(Key::generate())).await;
    let signed = target.victim.clone();
    let bare = target.victim_id().to_string();
    let mut forged_signature = signed.clone();
    forged_signature.replace_range(0..1, if signed.starts_with('A') { "B" } else { "A" });
    let mut forged_id = signed.clone();
    let at = signed.len() - 5;
    forged_id.replace_range(at..at + 1, if signed[at..].starts_with('A') { "B" } else { "A" });
    let mut cases = vec![
        Case::cookie("the victim's id without its signature", format!("id={bare}")),
        Case::cookie("a forged signature on the victim's id", format!("id={forged_signature}")),
        Case::cookie("the victim's signature on another id", format!("id={forged_id}")),
        Case::cookie("a signature alone", format!("id={}", &signed[..44])),
        Case::cookie("an unsigned unknown id", format!("id={}", unknown_id())),
    ];
    for case in &cases {
        let response = target.send(case).await;
        target.check(case, &response);
    }
    target.assert_victim_untouched(1).await;

    // A signed cookie replayed after its session was destroyed.
    let response = raw_http::send(target.server.addr(), "POST", "/set/x/1", &[], b"").await;
    let doomed = response.set_cookie_value("id").expect("cookie");
    let header = vec![cookie_header(format!("id={doomed}").as_bytes())];
    let destroyed = raw_http::send(target.server.addr(), "POST", "/destroy", &header, b"").await;
    assert_eq!(destroyed.status, 200);
    cases = vec![Case::cookies("a signed cookie replayed after destroy", header)];
    let response = target.send(&cases[0]).await;
    target.check(&cases[0], &response);
    let doomed_id = &doomed[doomed.len() - 43..];
    assert_ne!(String::from_utf8_lossy(&response.body), doomed_id, "a destroyed session came back");
    target.assert_victim_untouched(1).await;
}
