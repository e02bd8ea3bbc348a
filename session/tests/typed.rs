//! `#[derive(SessionData)]`: the generated code, through a real
//! `SessionLayer` and a store that records what it is asked to write.

#![cfg(feature = "derive")]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use http::{Request, Response, header};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sessionkit::{
    Changes, LazySession, Session, SessionConfig, SessionData, SessionError, SessionLayer, SessionMap, SessionRecord,
    SessionStore, StoreError, StoreKey, UpdateOutcome,
};
use sessionkit_stores::MemoryStore;
use tower::{Layer as _, ServiceExt as _, service_fn};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Item {
    sku: String,
    quantity: u32,
}

/// The example of DESIGN.md.
#[derive(SessionData, Clone, Debug, PartialEq)]
#[session(prefix = "cart.")]
struct Cart {
    items: Vec<Item>,
    #[session(default)]
    visits: u32,
    coupon: Option<String>,
}

fn default_theme() -> String {
    "light".to_owned()
}

/// Every attribute at once.
#[derive(SessionData, Debug, PartialEq)]
#[session(prefix = "user.", rename_all = "camelCase")]
struct Profile {
    display_name: String,
    #[session(rename = "ID")]
    user_id: u64,
    #[session(default = "default_theme")]
    theme: String,
    #[session(skip)]
    cached: Vec<u8>,
    r#type: Option<String>,
}

/// Generic, with a lifetime, a where clause and a skipped marker.
#[derive(SessionData, Debug, PartialEq)]
#[session(prefix = "pair.")]
struct Pair<'a, T, U = u8>
where
    U: Copy,
{
    first: T,
    #[session(default)]
    rest: Vec<U>,
    #[session(skip)]
    marker: PhantomData<&'a ()>,
}

/// Sorts after `Cart` and shares no key with it.
#[derive(SessionData, Debug, PartialEq)]
#[session(prefix = "prefs.")]
struct Prefs {
    #[session(default)]
    visits: u32,
    theme: Option<String>,
}

#[derive(SessionData, Debug)]
struct Unserializable {
    fine: u32,
    // serde_json refuses maps whose keys are not strings.
    broken: BTreeMap<(u8, u8), u8>,
}

#[derive(SessionData, Debug, PartialEq, Default)]
struct Empty {}

/// An integer too small for much, and a list: their atomic operations.
#[derive(SessionData, Debug, PartialEq)]
#[session(prefix = "game.")]
struct Game {
    #[session(default)]
    level: u8,
    #[session(default)]
    recent: Vec<String>,
}

// ---------------------------------------------------------------- harness --

type Job = Box<dyn FnOnce(&Session) + Send>;

/// A store that records every write it is asked for.
#[derive(Clone, Default)]
struct RecordingStore {
    inner: Arc<MemoryStore>,
    writes: Arc<Mutex<Vec<Write>>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Write {
    Set(Vec<String>),
    Update(Vec<String>),
}

/// The handler's keys among `keys`: sessionkit's own bookkeeping
/// (`__sessionkit.*`) travels with every write and is not what these tests
/// are about.
fn unreserved<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<String> {
    keys.filter(|key| !sessionkit::reserved::is_reserved(key)).map(str::to_owned).collect()
}

impl RecordingStore {
    fn take_writes(&self) -> Vec<Write> {
        std::mem::take(&mut *self.writes.lock().expect("lock"))
    }
}

#[async_trait::async_trait]
impl SessionStore for RecordingStore {
    async fn get(&self, id: &StoreKey) -> Result<Option<SessionRecord>, StoreError> {
        self.inner.get(id).await
    }
    async fn set(&self, id: &StoreKey, data: &SessionMap, expires_at: Option<SystemTime>) -> Result<(), StoreError> {
        self.writes.lock().expect("lock").push(Write::Set(unreserved(data.keys().map(String::as_str))));
        self.inner.set(id, data, expires_at).await
    }
    async fn delete(&self, id: &StoreKey) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }
    async fn update(
        &self,
        id: &StoreKey,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        let keys = unreserved(changes.iter().map(|change| change.key()));
        self.writes.lock().expect("lock").push(Write::Update(keys));
        self.inner.update(id, changes, expires_at).await
    }
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.inner.delete_expired().await
    }
}

/// One browser: each `run` is a request through a `SessionLayer` whose
/// handler runs the closure on the request's session.
struct Client {
    layer: SessionLayer,
    store: RecordingStore,
    cookie: Option<String>,
}

impl Client {
    fn new() -> Self {
        let store = RecordingStore::default();
        let layer = SessionLayer::new(SessionConfig::builder(store.clone()));
        Self { layer, store, cookie: None }
    }

    async fn run<R: Send + 'static>(&mut self, job: impl FnOnce(&Session) -> R + Send + 'static) -> R {
        let out = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&out);
        let job: Job = Box::new(move |session| *slot.lock().expect("lock") = Some(job(session)));
        let service = self.layer.layer(service_fn(|request: Request<Job>| async move {
            let lazy = request.extensions().get::<LazySession>().cloned().expect("the layer runs");
            let session = lazy.load().await.expect("load");
            (request.into_body())(&session);
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
        let mut request = Request::builder();
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let response = service.oneshot(request.body(job).expect("request")).await.expect("infallible");
        assert!(response.status().is_success(), "{}", response.status());
        if let Some(set_cookie) = response.headers().get(header::SET_COOKIE) {
            let set_cookie = set_cookie.to_str().expect("ascii");
            self.cookie = Some(set_cookie.split(';').next().unwrap_or_default().to_owned());
        }
        let result = out.lock().expect("lock").take();
        result.expect("the handler ran")
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
}

/// Runs `job` on a fresh session, in one request.
fn with_session<R: Send + 'static>(job: impl FnOnce(&Session) -> R + Send + 'static) -> R {
    block_on(Client::new().run(job))
}

fn cart() -> Cart {
    Cart { items: vec![Item { sku: "tea".into(), quantity: 2 }], visits: 3, coupon: Some("SPRING".into()) }
}

fn data(session: &Session) -> Value {
    Value::Object(session.data())
}

// ------------------------------------------------------------------ keys --

#[test]
fn keys_are_prefix_plus_renamed_or_cased_field_names() {
    assert_eq!(Cart::KEYS, ["cart.items", "cart.visits", "cart.coupon"]);
    assert_eq!(<Cart as SessionData>::KEYS, Cart::KEYS);
    assert_eq!(Profile::KEYS, ["user.displayName", "user.ID", "user.theme", "user.type"]);
    assert_eq!(Pair::<String>::KEYS, ["pair.first", "pair.rest"]);
    assert!(Empty::KEYS.is_empty());
}

// ------------------------------------------------------------------ load --

#[test]
fn load_reads_every_field() {
    let loaded = with_session(|session| {
        session.set("cart.items", json!([{ "sku": "tea", "quantity": 2 }])).expect("set");
        session.set("cart.visits", 3).expect("set");
        session.set("cart.coupon", "SPRING").expect("set");
        Cart::load(session).expect("load")
    });
    assert_eq!(loaded, cart());
}

#[test]
fn a_missing_required_key_is_an_error_naming_key_and_type() {
    let err = with_session(|session| Cart::load(session).expect_err("no items"));
    match &err {
        SessionError::Missing { key, expected } => {
            assert_eq!(key, "cart.items");
            assert!(expected.contains("Vec") && expected.contains("Item"), "{expected}");
        }
        other => panic!("expected Missing, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("`cart.items`") && text.contains("Vec"), "{text}");
}

#[test]
fn a_value_of_the_wrong_shape_is_an_error_naming_key_and_type() {
    let err = with_session(|session| {
        session.set("cart.items", json!([])).expect("set");
        session.set("cart.visits", "many").expect("set");
        Cart::load(session).expect_err("wrong shape")
    });
    match &err {
        SessionError::Deserialize { key, expected, .. } => {
            assert_eq!(key, "cart.visits");
            assert_eq!(*expected, "u32");
        }
        other => panic!("expected Deserialize, got {other:?}"),
    }
    assert!(std::error::Error::source(&err).is_some(), "serde's error is kept as the source");
}

#[test]
fn option_fields_read_missing_keys_as_none_and_defaults_fall_back() {
    let loaded = with_session(|session| {
        session.set("cart.items", json!([])).expect("set");
        Cart::load(session).expect("load")
    });
    assert_eq!(loaded, Cart { items: vec![], visits: 0, coupon: None });

    let profile = with_session(|session| {
        session.set("user.displayName", "Ada").expect("set");
        session.set("user.ID", 7).expect("set");
        Profile::load(session).expect("load")
    });
    assert_eq!(
        profile,
        Profile { display_name: "Ada".into(), user_id: 7, theme: "light".into(), cached: vec![], r#type: None }
    );
}

#[test]
fn a_stored_null_reads_as_none() {
    let coupon = with_session(|session| {
        session.set_value("cart.coupon", Value::Null).expect("set");
        Cart::coupon(session).expect("get")
    });
    assert_eq!(coupon, None);
}

// ------------------------------------------------------------------ save --

#[test]
fn save_then_load_gives_the_struct_back() {
    let (loaded, stored) = with_session(|session| {
        cart().save(session).expect("save");
        (Cart::load(session).expect("load"), data(session))
    });
    assert_eq!(loaded, cart());
    assert_eq!(
        stored,
        json!({ "cart.items": [{ "sku": "tea", "quantity": 2 }], "cart.visits": 3, "cart.coupon": "SPRING" })
    );
}

#[test]
fn skipped_fields_are_not_stored_and_load_as_default() {
    let (loaded, stored) = with_session(|session| {
        let profile =
            Profile { display_name: "Ada".into(), user_id: 1, theme: "dark".into(), cached: vec![9], r#type: None };
        profile.save(session).expect("save");
        (Profile::load(session).expect("load"), data(session))
    });
    assert_eq!(loaded.cached, Vec::<u8>::new());
    assert_eq!(stored, json!({ "user.displayName": "Ada", "user.ID": 1, "user.theme": "dark" }));
}

#[test]
fn an_unchanged_struct_causes_no_store_write() {
    block_on(async {
        let mut client = Client::new();
        client.run(|session| cart().save(session).expect("save")).await;
        assert_eq!(
            client.store.take_writes(),
            [Write::Set(vec!["cart.coupon".into(), "cart.items".into(), "cart.visits".into()])]
        );

        client.run(|session| Cart::load(session).expect("load").save(session).expect("save")).await;
        client.run(|session| cart().save(session).expect("save")).await;
        assert_eq!(client.store.take_writes(), [], "saving what the session holds is not a change");
    });
}

#[test]
fn save_writes_only_the_keys_that_changed() {
    block_on(async {
        let mut client = Client::new();
        client.run(|session| cart().save(session).expect("save")).await;
        client.store.take_writes();

        client
            .run(|session| {
                let mut cart = Cart::load(session).expect("load");
                cart.visits += 1;
                cart.save(session).expect("save");
            })
            .await;
        assert_eq!(client.store.take_writes(), [Write::Update(vec!["cart.visits".into()])]);
    });
}

#[test]
fn absent_keys_holding_what_load_would_read_are_not_written() {
    // A struct loaded from a session without its optional keys, saved as
    // is, must not add `visits: 0` or `coupon: null`.
    block_on(async {
        let mut client = Client::new();
        client.run(|session| session.set("cart.items", json!([])).expect("set")).await;
        client.store.take_writes();
        let stored = client
            .run(|session| {
                let cart = Cart::load(session).expect("load");
                assert_eq!(cart, Cart { items: vec![], visits: 0, coupon: None });
                cart.save(session).expect("save");
                data(session)
            })
            .await;
        assert_eq!(stored, json!({ "cart.items": [] }));
        assert_eq!(client.store.take_writes(), []);
    });
}

#[test]
fn none_removes_an_option_key_instead_of_storing_null() {
    let stored = with_session(|session| {
        cart().save(session).expect("save");
        Cart { coupon: None, ..cart() }.save(session).expect("save");
        data(session)
    });
    assert!(stored.get("cart.coupon").is_none(), "{stored}");
}

#[test]
fn the_default_value_is_written_over_an_existing_key() {
    let stored = with_session(|session| {
        cart().save(session).expect("save");
        Cart::set_visits(session, 0).expect("set");
        data(session)
    });
    assert_eq!(stored["cart.visits"], json!(0));
}

#[test]
fn a_field_that_fails_to_serialize_leaves_the_session_untouched() {
    let (err, stored) = with_session(|session| {
        let value = Unserializable { fine: 1, broken: BTreeMap::from([((1, 2), 3)]) };
        (value.save(session).expect_err("tuple keys"), data(session))
    });
    match err {
        SessionError::Serialize { key, .. } => assert_eq!(key, "broken"),
        other => panic!("expected Serialize, got {other:?}"),
    }
    assert_eq!(stored, json!({}), "`fine` was not written either");
}

// ------------------------------------------------------------- accessors --

#[test]
fn typed_getters_setters_and_removers() {
    let result = with_session(|session| {
        assert!(matches!(Cart::items(session), Err(SessionError::Missing { .. })));
        assert_eq!(Cart::visits(session).expect("default"), 0);
        assert_eq!(Cart::coupon(session).expect("option"), None);

        Cart::set_visits(session, 3).expect("set");
        Cart::set_coupon(session, Some("SPRING".into())).expect("set");
        Cart::set_items(session, vec![]).expect("set");
        let v: u32 = Cart::visits(session).expect("get");
        assert_eq!(v, 3);
        assert_eq!(Cart::coupon(session).expect("get").as_deref(), Some("SPRING"));

        Cart::remove_visits(session);
        Cart::remove_coupon(session);
        assert_eq!(Cart::visits(session).expect("default"), 0);
        data(session)
    });
    assert_eq!(result, json!({ "cart.items": [] }));
}

#[test]
fn raw_identifiers_get_plain_accessor_names() {
    let value = with_session(|session| {
        Profile::set_type(session, Some("admin".into())).expect("set");
        let value = Profile::r#type(session).expect("get");
        Profile::remove_type(session);
        (value, data(session))
    });
    assert_eq!(value, (Some("admin".to_owned()), json!({})));
}

#[test]
fn clear_removes_exactly_the_structs_keys() {
    let stored = with_session(|session| {
        cart().save(session).expect("save");
        session.set("cart.other", 1).expect("set");
        session.set("user", "ada").expect("set");
        Cart::clear(session);
        data(session)
    });
    assert_eq!(stored, json!({ "cart.other": 1, "user": "ada" }));
}

// ------------------------------------------------------------ operations --

#[test]
fn integer_and_list_fields_get_atomic_operations_the_store_applies() {
    block_on(async {
        let mut client = Client::new();
        client.run(|session| cart().save(session).expect("save")).await;
        client.store.take_writes();
        let (visits, removed, absent) = client
            .run(|session| {
                let visits = Cart::increment_visits(session, 2).expect("increment");
                Cart::push_items(session, Item { sku: "jam".into(), quantity: 1 }).expect("push");
                let tea = Item { sku: "tea".into(), quantity: 2 };
                let removed = Cart::remove_first_items(session, &tea).expect("remove");
                let absent = Cart::remove_first_items(session, &tea).expect("remove");
                // Read-your-writes within the request.
                assert_eq!(Cart::items(session).expect("items"), [Item { sku: "jam".into(), quantity: 1 }]);
                (visits, removed, absent)
            })
            .await;
        assert_eq!((visits, removed, absent), (5, true, false));
        assert_eq!(client.store.take_writes(), [Write::Update(vec!["cart.items".into(), "cart.visits".into()])]);
        let loaded = client.run(|session| Cart::load(session).expect("load")).await;
        assert_eq!(loaded.visits, 5);
        assert_eq!(loaded.items, [Item { sku: "jam".into(), quantity: 1 }]);
    });
}

#[test]
fn push_keep_last_keeps_the_newest_elements() {
    let recent = with_session(|session| {
        for game in ["a", "b", "c", "d"] {
            Game::push_recent_keep_last(session, game.to_owned(), 2).expect("push");
        }
        Game::recent(session).expect("recent")
    });
    assert_eq!(recent, ["c", "d"]);
}

#[test]
fn a_sum_the_field_cannot_hold_is_refused_and_changes_nothing() {
    block_on(async {
        let mut client = Client::new();
        client.run(|session| Game::set_level(session, 250).expect("set")).await;
        client.store.take_writes();
        let err = client.run(|session| Game::increment_level(session, 10).expect_err("past u8")).await;
        assert!(matches!(err, SessionError::Patch(sessionkit::PatchError::Overflow { .. })), "{err:?}");
        assert_eq!(client.store.take_writes(), [], "a refused increment records nothing");
        let level = client.run(|session| Game::increment_level(session, -50).expect("decrement")).await;
        assert_eq!(level, 200);
    });
}

// ------------------------------------------------------ several structs --

#[test]
fn structs_with_different_prefixes_coexist_without_touching_each_others_keys() {
    block_on(async {
        let mut client = Client::new();
        client
            .run(|session| {
                cart().save(session).expect("save");
                Prefs { visits: 10, theme: Some("dark".into()) }.save(session).expect("save");
            })
            .await;
        client.store.take_writes();

        // Same field name (`visits`) in both; each struct moves its own key.
        client
            .run(|session| {
                let mut prefs = Prefs::load(session).expect("load");
                prefs.visits += 1;
                prefs.save(session).expect("save");
                Cart::set_visits(session, 1).expect("set");
            })
            .await;
        assert_eq!(client.store.take_writes(), [Write::Update(vec!["cart.visits".into(), "prefs.visits".into()])]);

        let (cart_after, prefs_after, stored) = client
            .run(|session| {
                Prefs::clear(session);
                (Cart::load(session).expect("load"), Prefs::load(session).expect("load"), data(session))
            })
            .await;
        assert_eq!(cart_after, Cart { visits: 1, ..cart() });
        assert_eq!(prefs_after, Prefs { visits: 0, theme: None }, "cleared");
        let keys: BTreeSet<&str> = stored.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(keys, Cart::KEYS.iter().copied().collect());
    });
}

// ---------------------------------------------------------------- generics --

#[test]
fn generic_structs_work() {
    let loaded = with_session(|session| {
        let pair: Pair<'_, String, u16> = Pair { first: "a".into(), rest: vec![1, 2], marker: PhantomData };
        pair.save(session).expect("save");
        assert_eq!(Pair::<String, u16>::first(session).expect("get"), "a");
        Pair::<'_, String, u16>::load(session).expect("load")
    });
    assert_eq!(loaded, Pair { first: "a".to_owned(), rest: vec![1u16, 2], marker: PhantomData });
}

#[test]
fn an_empty_struct_loads_saves_and_clears() {
    let stored = with_session(|session| {
        session.set("a", 1).expect("set");
        assert_eq!(Empty::load(session).expect("load"), Empty {});
        Empty {}.save(session).expect("save");
        Empty::clear(session);
        data(session)
    });
    assert_eq!(stored, json!({ "a": 1 }));
}

#[test]
fn the_trait_is_usable_generically() {
    fn round_trip<T: SessionData>(value: &T, session: &Session) -> T {
        value.save(session).expect("save");
        T::load(session).expect("load")
    }
    let loaded = with_session(|session| round_trip(&cart(), session));
    assert_eq!(loaded, cart());
}

// -------------------------------------------------------------- proptest --

fn item() -> impl Strategy<Value = Item> {
    (".{0,8}", any::<u32>()).prop_map(|(sku, quantity)| Item { sku, quantity })
}

fn any_cart() -> impl Strategy<Value = Cart> {
    (prop::collection::vec(item(), 0..4), any::<u32>(), prop::option::of(".{0,8}"))
        .prop_map(|(items, visits, coupon)| Cart { items, visits, coupon })
}

fn any_prefs() -> impl Strategy<Value = Prefs> {
    (any::<u32>(), prop::option::of(".{0,8}")).prop_map(|(visits, theme)| Prefs { visits, theme })
}

fn any_pair() -> impl Strategy<Value = Pair<'static, Option<i64>, u8>> {
    (any::<Option<i64>>(), prop::collection::vec(any::<u8>(), 0..4)).prop_map(|(first, rest)| Pair {
        first,
        rest,
        marker: PhantomData,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the session held before (another value of the same struct
    /// and a neighbour's keys), `load(save(x)) == x`, and the neighbour is
    /// untouched.
    #[test]
    fn load_after_save_gives_back_what_was_saved(
        before in any_cart(),
        cart in any_cart(),
        prefs in any_prefs(),
        pair in any_pair(),
    ) {
        let (loaded, loaded_prefs, loaded_pair) = with_session({
            let (cart, prefs) = (cart.clone(), prefs.clone_via_keys());
            let pair = Pair { first: pair.first, rest: pair.rest.clone(), marker: PhantomData };
            move |session| {
                before.save(session).expect("save");
                prefs.save(session).expect("save");
                cart.save(session).expect("save");
                pair.save(session).expect("save");
                (
                    Cart::load(session).expect("load"),
                    Prefs::load(session).expect("load"),
                    Pair::<Option<i64>, u8>::load(session).expect("load"),
                )
            }
        });
        prop_assert_eq!(loaded, cart);
        prop_assert_eq!(loaded_prefs, prefs);
        prop_assert_eq!(loaded_pair, pair);
    }

    /// Field by field, through the setters and getters.
    #[test]
    fn getters_read_what_setters_wrote(cart in any_cart()) {
        let loaded = with_session({
            let cart = cart.clone();
            move |session| {
                Cart::set_items(session, cart.items).expect("set");
                Cart::set_visits(session, cart.visits).expect("set");
                Cart::set_coupon(session, cart.coupon).expect("set");
                Cart {
                    items: Cart::items(session).expect("get"),
                    visits: Cart::visits(session).expect("get"),
                    coupon: Cart::coupon(session).expect("get"),
                }
            }
        });
        prop_assert_eq!(loaded, cart);
    }
}

impl Prefs {
    /// `Prefs` deliberately does not derive `Clone`: generated code must not
    /// need it.
    fn clone_via_keys(&self) -> Self {
        Self { visits: self.visits, theme: self.theme.clone() }
    }
}
