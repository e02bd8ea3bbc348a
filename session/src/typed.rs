//! Typed sessions: structs over the session map, with `#[derive(SessionData)]`.
//!
//! The session stores JSON values under string keys. A [`SessionData`] type
//! names a group of those keys once, with Rust types, so handlers never
//! spell a key or touch a `serde_json::Value`:
//!
#![cfg_attr(all(feature = "axum", feature = "derive"), doc = "```rust")]
#![cfg_attr(not(all(feature = "axum", feature = "derive")), doc = "```rust,ignore")]
//! use axum::{Router, body::Body, extract::Path, http::{Request, StatusCode, header}, routing::{get, post}};
//! use serde::{Deserialize, Serialize};
//! use sessionkit::{Session, SessionConfig, SessionData, SessionError, SessionLayer};
//! use sessionkit_stores::MemoryStore;
//! use tower::ServiceExt as _;
//!
//! #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
//! struct Item {
//!     sku: String,
//!     quantity: u32,
//! }
//!
//! /// Keys `cart.items`, `cart.visits` and `cart.coupon`.
//! #[derive(SessionData, Default)]
//! #[session(prefix = "cart.")]
//! struct Cart {
//!     items: Vec<Item>,
//!     #[session(default)]
//!     visits: u32,
//!     coupon: Option<String>,
//! }
//!
//! /// Appends one item, atomically: two tabs adding at the same moment both
//! /// keep their item.
//! async fn add(session: Session, Path(sku): Path<String>) -> Result<String, SessionError> {
//!     Cart::push_items(&session, Item { sku, quantity: 1 })?;
//!     Ok(format!("{} item(s)", Cart::items(&session)?.len()))
//! }
//!
//! /// One key at a time, typed; a counter incremented atomically.
//! async fn apply_coupon(session: Session, Path(code): Path<String>) -> Result<(), SessionError> {
//!     Cart::set_coupon(&session, Some(code))?;
//!     Cart::increment_visits(&session, 1).map(drop)
//! }
//!
//! /// Reads and writes the whole struct. `Option<Cart>` is `None` while the
//! /// session lacks a required key (here, before the first item).
//! async fn reset_visits(session: Session, cart: Option<Cart>) -> Result<(), SessionError> {
//!     let mut cart = cart.unwrap_or_default();
//!     cart.visits = 0;
//!     cart.save(&session) // writes `cart.visits` only: nothing else changed
//! }
//!
//! /// The struct as an extractor: a session without `cart.items` answers 400
//! /// before this handler runs.
//! async fn show(cart: Cart) -> String {
//!     let skus: Vec<&str> = cart.items.iter().map(|item| item.sku.as_str()).collect();
//!     format!("{} with coupon {:?}", skus.join(","), cart.coupon)
//! }
//!
//! /// Removes the cart's keys and leaves the rest of the session alone.
//! async fn empty(session: Session) {
//!     Cart::clear(&session);
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let app = Router::new()
//!         .route("/cart", get(show).delete(empty))
//!         .route("/cart/{sku}", post(add))
//!         .route("/coupon/{code}", post(apply_coupon))
//!         .route("/visits/reset", post(reset_visits))
//!         .layer(SessionLayer::new(SessionConfig::builder(MemoryStore::new())));
//!
//!     // Serve it with `axum::serve(listener, app)`; here, requests by hand.
//!     let request = |method: &str, uri: &str, cookie: &str| {
//!         Request::builder().method(method).uri(uri).header(header::COOKIE, cookie).body(Body::empty())
//!     };
//!     let response = app.clone().oneshot(request("GET", "/cart", "")?).await?;
//!     assert_eq!(response.status(), StatusCode::BAD_REQUEST, "no cart yet");
//!
//!     let response = app.clone().oneshot(request("POST", "/cart/tea", "")?).await?;
//!     let set_cookie = response.headers()[header::SET_COOKIE].to_str()?;
//!     let cookie = set_cookie.split(';').next().unwrap_or_default().to_owned();
//!
//!     app.clone().oneshot(request("POST", "/cart/cake", &cookie)?).await?;
//!     app.clone().oneshot(request("POST", "/coupon/SPRING", &cookie)?).await?;
//!     let response = app.clone().oneshot(request("GET", "/cart", &cookie)?).await?;
//!     let body = axum::body::to_bytes(response.into_body(), 1024).await?;
//!     assert_eq!(body, r#"tea,cake with coupon Some("SPRING")"#);
//!     Ok(())
//! }
//! ```
//!
//! # Reading
//!
//! `load` reads every field. A required key that is absent is
//! [`SessionError::Missing`], a value of the wrong shape is
//! [`SessionError::Deserialize`]; both name the key and the expected type.
//! An `Option` field reads an absent key as `None`, and a field marked
//! `#[session(default)]` or `#[session(default = "path")]` reads it as its
//! default. The getter of one field (`Cart::visits(&session)`) reads that
//! key the same way.
//!
//! # Writing
//!
//! `save` writes only the keys whose values differ from what the session
//! holds, so a struct saved unchanged is not a change and causes no store
//! write, and two structs (or two requests) touching different keys do not
//! overwrite each other. An absent key counts as holding what `load` reads
//! for it: saving `visits: 0` over an absent `#[session(default)]` key, or
//! `coupon: None` over an absent `Option` key, writes nothing. An `Option`
//! field set to `None` removes its key instead of storing `null`. Every field
//! is serialized before anything is written, so a field that fails to
//! serialize leaves the session as it was. The setter of one field
//! (`Cart::set_visits(&session, 3)`) writes that key the same way.
//!
//! `clear` and the per-field `remove_*` functions remove this struct's keys
//! and no others.
//!
//! # Atomic operations
//!
//! Writing a value a request computed from what it read loses writes when
//! two requests do it at once (two tabs adding to the cart). Fields of some
//! types get functions that record an operation instead, which the store
//! performs on whatever it holds when it saves the session, so concurrent
//! requests all count (see [`Changes`](crate::Changes)):
//!
//! | field type | functions |
//! | --- | --- |
//! | a primitive integer (`u32`, `i64`, ...) | `increment_<field>(&session, by)`: returns the new value; a missing key counts from 0; a sum the type cannot hold is an error and changes nothing |
//! | `Vec<T>` | `push_<field>(&session, item)`, `push_<field>_keep_last(&session, item, n)`, `remove_first_<field>(&session, &item)` |
//!
//! Each reads its own writes within the request: `Cart::items(&session)`
//! after a push sees the item. The type is recognised by how it is spelled
//! (`u32`, `Vec<Item>`); a type alias for one gets none of these.
//!
//! # In axum handlers
//!
//! With the `axum` feature every `SessionData` type is an extractor that
//! loads itself from the request's session. When it cannot, the response is
//! a `SessionDataRejection`: **400** when a required key is absent (the
//! client's session is not in the state the route needs, say an expired
//! session or a skipped step: the client can change that, the server
//! cannot) and **500** when a stored value has the wrong shape (only the
//! server writes session data, so that is a server bug or a schema change)
//! or the session could not be loaded at all. A handler returning
//! `Result<_, SessionError>` that calls `Cart::load(&session)?` answers the
//! same way. Extract `Option<Cart>` to get `None` instead of a 400, or
//! `Result<Cart, SessionDataRejection>` to answer your own way.
#![cfg_attr(feature = "axum", doc = "See [`SessionDataRejection`](crate::extract::SessionDataRejection).")]
//!
//! # Methods
//!
//! `load`, `save`, `clear` and `KEYS` are generated both as the trait's and
//! as inherent items, so `Cart::load(&session)` works without importing
//! [`SessionData`]. Generated items have the struct's visibility.
#![cfg_attr(
    feature = "derive",
    doc = "The [derive macro](macro@crate::SessionData) lists every attribute and every compile-time check."
)]

use crate::{Session, SessionError};

/// A struct stored in the session under a fixed set of keys.
///
/// Derive it with `#[derive(SessionData)]` (see the [module docs](self)).
/// Implementing it by hand is possible, but the derive also generates the
/// typed per-field accessors and, with the `axum` feature, the extractor.
pub trait SessionData: Sized {
    /// Every session key this type reads and writes.
    const KEYS: &'static [&'static str];

    /// Reads the value from `session`; a required key that is missing or a
    /// value of the wrong shape is an error naming the key.
    fn load(session: &Session) -> Result<Self, SessionError>;

    /// Writes the value to `session`, key by key, touching only keys whose
    /// values differ from what the session holds.
    fn save(&self, session: &Session) -> Result<(), SessionError>;

    /// Removes exactly [`KEYS`](Self::KEYS) from `session`.
    fn clear(session: &Session);
}

/// The extractor impls for a derived type, when sessionkit has `axum`.
///
/// The derive emits a call to this macro because it cannot see
/// sessionkit's features: it passes the impl generics (with the state
/// parameter added), the self type and the where-clause predicates.
#[cfg(feature = "axum")]
#[doc(hidden)]
#[macro_export]
macro_rules! __impl_session_data_extractor {
    (impl [$($generics:tt)*] for [$self_ty:ty] where [$($predicates:tt)*] state [$state:ident]) => {
        #[automatically_derived]
        impl $($generics)* $crate::__private::axum_core::extract::FromRequestParts<$state> for $self_ty
        where
            $state: ::core::marker::Send + ::core::marker::Sync,
            $($predicates)*
        {
            type Rejection = $crate::extract::SessionDataRejection;

            fn from_request_parts(
                parts: &mut $crate::__private::http::request::Parts,
                state: &$state,
            ) -> impl ::core::future::Future<Output = ::core::result::Result<Self, Self::Rejection>>
                   + ::core::marker::Send {
                $crate::__private::extract::<Self, $state>(parts, state)
            }
        }

        #[automatically_derived]
        impl $($generics)* $crate::__private::axum_core::extract::OptionalFromRequestParts<$state> for $self_ty
        where
            $state: ::core::marker::Send + ::core::marker::Sync,
            $($predicates)*
        {
            type Rejection = $crate::extract::SessionDataRejection;

            fn from_request_parts(
                parts: &mut $crate::__private::http::request::Parts,
                state: &$state,
            ) -> impl ::core::future::Future<
                Output = ::core::result::Result<::core::option::Option<Self>, Self::Rejection>,
            > + ::core::marker::Send {
                $crate::__private::extract_optional::<Self, $state>(parts, state)
            }
        }
    };
}

/// Without the `axum` feature a derived type is no extractor.
#[cfg(not(feature = "axum"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __impl_session_data_extractor {
    ($($tokens:tt)*) => {};
}

/// What the derive's generated code calls. Not a public API: it changes
/// whenever the derive does.
#[doc(hidden)]
pub mod __private {
    #[cfg(feature = "axum")]
    pub use axum_core;
    pub use http;
    pub use serde;

    #[cfg(feature = "axum")]
    pub use crate::extract::{extract, extract_optional};

    use serde::Serialize;
    use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
    use serde_json::Value;

    use crate::{Session, SessionError};

    /// Reads `key` as a `T`. An absent key reads as whatever `T` makes of a
    /// missing field (serde's rule: `None` for an `Option`); for any other
    /// type it is [`SessionError::Missing`].
    pub fn load<T: DeserializeOwned>(session: &Session, key: &'static str) -> Result<T, SessionError> {
        match session.get::<T>(key)? {
            Some(value) => Ok(value),
            None => {
                absent::<T>().ok_or(SessionError::Missing { key: key.to_owned(), expected: std::any::type_name::<T>() })
            }
        }
    }

    /// Reads `key` as a `T`, or `default()` when it is absent.
    pub fn load_or<T: DeserializeOwned, F: FnOnce() -> T>(
        session: &Session,
        key: &'static str,
        default: F,
    ) -> Result<T, SessionError> {
        Ok(session.get::<T>(key)?.unwrap_or_else(default))
    }

    /// Serializes a field before anything is written.
    pub fn to_value<T: Serialize + ?Sized>(key: &'static str, value: &T) -> Result<Value, SessionError> {
        serde_json::to_value(value).map_err(|source| SessionError::Serialize { key: key.to_owned(), source })
    }

    /// Writes a field without a declared default: an absent key holds what
    /// `T` makes of a missing field, if anything.
    pub fn store<T: DeserializeOwned + Serialize>(
        session: &Session,
        key: &'static str,
        value: Value,
    ) -> Result<(), SessionError> {
        write(session, key, value, || absent::<T>().and_then(|absent| serde_json::to_value(absent).ok()))
    }

    /// Writes a field with a declared default: an absent key holds
    /// `default()`.
    pub fn store_or<T: Serialize, F: FnOnce() -> T>(
        session: &Session,
        key: &'static str,
        value: Value,
        default: F,
    ) -> Result<(), SessionError> {
        write(session, key, value, || serde_json::to_value(default()).ok())
    }

    /// Adds `by` to an integer key, refusing (before recording anything) a
    /// sum `T` cannot hold.
    pub fn increment<T: TryFrom<i64>>(session: &Session, key: &'static str, by: i64) -> Result<T, SessionError> {
        let overflow = || SessionError::Patch(crate::PatchError::Overflow { key: key.to_owned() });
        let current = match session.get_value(key) {
            None => Some(0),
            Some(value) => value.as_i64(),
        };
        let Some(current) = current else {
            // Not an `i64`: the handle says what the key holds, recording nothing.
            return session.increment(key, by).and_then(|n| T::try_from(n).map_err(|_| overflow()));
        };
        let next = current.checked_add(by).ok_or_else(overflow)?;
        let typed = T::try_from(next).map_err(|_| overflow())?;
        session.increment(key, by)?;
        Ok(typed)
    }

    /// Pushes one element onto a list key.
    pub fn push<T: Serialize + ?Sized>(
        session: &Session,
        key: &'static str,
        item: &T,
        keep_last: Option<usize>,
    ) -> Result<(), SessionError> {
        session.push(key, item, keep_last)
    }

    /// Removes the first element equal to `item` from a list key.
    pub fn remove_first<T: Serialize + ?Sized>(
        session: &Session,
        key: &'static str,
        item: &T,
    ) -> Result<bool, SessionError> {
        session.remove_first(key, item)
    }

    /// Removes one key.
    pub fn remove(session: &Session, key: &str) {
        session.delete(key);
    }

    /// Removes every key in `keys`.
    pub fn remove_all(session: &Session, keys: &[&str]) {
        for key in keys {
            session.delete(key);
        }
    }

    /// The write rule: the session changes only when what `load` would read
    /// changes. `absent` gives what an absent key reads as, serialized; it
    /// is computed only when needed.
    fn write(
        session: &Session,
        key: &'static str,
        value: Value,
        absent: impl FnOnce() -> Option<Value>,
    ) -> Result<(), SessionError> {
        let current = session.get_value(key);
        if current.as_ref() == Some(&value) {
            return Ok(());
        }
        if current.is_none() || value.is_null() {
            let absent = absent();
            // `None` removes an `Option` key rather than storing `null`.
            if value.is_null() && absent == Some(Value::Null) {
                session.delete(key);
                return Ok(());
            }
            if current.is_none() && absent.as_ref() == Some(&value) {
                return Ok(());
            }
        }
        session.set_value(key, value)
    }

    /// What `T` makes of a missing field, as serde does for a struct field
    /// without `#[serde(default)]`: `Some(None)` for an `Option`, `None`
    /// (no value) for anything else.
    fn absent<T: DeserializeOwned>() -> Option<T> {
        T::deserialize(MissingField).ok()
    }

    /// A deserializer for a value that is not there: only `Option` (and
    /// types deserializing through `deserialize_option`) can be made from it.
    struct MissingField;

    impl<'de> Deserializer<'de> for MissingField {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("missing"))
        }

        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            visitor.visit_none()
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
            unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
        }
    }
}
