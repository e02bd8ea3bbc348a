//! The layer's cookie handling on arbitrary `Cookie` headers (several per
//! request, any bytes a header may hold), with and without signing: never a
//! panic, never anything but a fresh session, never an id the client sent,
//! never another client's session.
#![no_main]

use std::sync::OnceLock;

use http::{HeaderValue, Request, Response, header};
use libfuzzer_sys::fuzz_target;
use sessionkit::{LazySession, SessionConfig, SessionConfigBuilder, SessionLayer};
use sessionkit::cookie::Key;
use sessionkit_stores::MemoryStore;
use tower::{Layer, ServiceExt, service_fn};

type App = sessionkit::layer::SessionService<
    tower::util::ServiceFn<
        fn(
            Request<()>,
        )
            -> std::pin::Pin<Box<dyn Future<Output = Result<Response<String>, std::convert::Infallible>> + Send>>,
    >,
>;

/// Answers with the id of the request's session, writing to it first when
/// asked to (only the setup does).
fn handler(
    request: Request<()>,
) -> std::pin::Pin<Box<dyn Future<Output = Result<Response<String>, std::convert::Infallible>> + Send>> {
    Box::pin(async move {
        let Some(lazy) = request.extensions().get::<LazySession>().cloned() else {
            return Ok(Response::new("no layer".to_owned()));
        };
        let body = match lazy.load().await {
            Ok(session) => {
                if request.headers().contains_key("x-write") {
                    let _ = session.set("owner", "victim");
                }
                session.id().to_string()
            }
            Err(err) => format!("load failed: {err}"),
        };
        Ok(Response::new(body))
    })
}

struct Target {
    runtime: tokio::runtime::Runtime,
    app: App,
    victim_cookie: String,
    victim_id: String,
}

impl Target {
    fn new(config: SessionConfigBuilder) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let app = SessionLayer::new(config).layer(service_fn(handler as fn(_) -> _));
        let request = Request::builder().header("x-write", "1").body(()).expect("request");
        let response = runtime.block_on(app.clone().oneshot(request)).expect("infallible");
        let set_cookie = response.headers()[header::SET_COOKIE].to_str().expect("ascii").to_owned();
        let victim_cookie = set_cookie.split(';').next().expect("pair").to_owned();
        let victim_id = response.into_body();
        Self { runtime, app, victim_cookie, victim_id }
    }

    fn check(&self, input: &[u8]) {
        // libFuzzer lifts bytes out of the program's comparisons, so it can
        // learn the victim's real cookie; presenting it is the victim's own
        // access, not an attack.
        let victim_value = self.victim_cookie.trim_start_matches("id=").as_bytes();
        if input.windows(victim_value.len()).any(|w| w == victim_value) {
            return;
        }
        let mut request = Request::new(());
        for part in input.split(|&b| b == b'\n') {
            if let Ok(value) = HeaderValue::from_bytes(part) {
                request.headers_mut().append(header::COOKIE, value);
            }
        }
        let response = self.runtime.block_on(self.app.clone().oneshot(request)).expect("infallible");
        assert_eq!(response.status(), 200);
        let id = response.into_body();
        assert_eq!(id.len(), 43, "the handler saw no valid session: {id}");
        assert_ne!(id, self.victim_id, "handed out another client's session");
        assert!(!input.windows(id.len()).any(|w| w == id.as_bytes()), "adopted a client-supplied id");
    }
}

fn targets() -> &'static [Target; 2] {
    static TARGETS: OnceLock<[Target; 2]> = OnceLock::new();
    TARGETS.get_or_init(|| {
        let plain = SessionConfig::builder(MemoryStore::new());
        let signed = SessionConfig::builder(MemoryStore::new()).signing_key(Key::from(&[7u8; 64]));
        [Target::new(plain), Target::new(signed)]
    })
}

fuzz_target!(|input: &[u8]| {
    for target in targets() {
        target.check(input);
    }
});
