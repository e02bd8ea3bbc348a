//! `#[derive(SessionData)]` for sessionkit: typed structs over the session map.
//!
//! Use it through `sessionkit`, which re-exports it next to the
//! `SessionData` trait it implements (feature `derive`, on by default).
//!
//! The macro parses the struct into an intermediate representation
//! (`ast`), collecting every error with its span, and generates code
//! (`expand`) only from a representation that passed every check. It never
//! panics: any input it cannot handle becomes a compile error.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod ast;
mod attr;
mod case;
mod expand;
mod fallback;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `sessionkit::SessionData`: typed access to a group of session keys.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sessionkit::SessionData;
///
/// #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// struct Item {
///     sku: String,
///     quantity: u32,
/// }
///
/// #[derive(SessionData)]
/// #[session(prefix = "cart.")]
/// struct Cart {
///     items: Vec<Item>,          // key "cart.items", required
///     #[session(default)]
///     visits: u32,               // key "cart.visits", 0 when absent
///     coupon: Option<String>,    // key "cart.coupon", None when absent
/// }
///
/// assert_eq!(Cart::KEYS, ["cart.items", "cart.visits", "cart.coupon"]);
/// ```
///
/// # What it generates
///
/// On the struct, both as an implementation of the `SessionData` trait and
/// as inherent items (so `Cart::load(&session)` works without importing the
/// trait):
///
/// - `KEYS`: every key the struct stores, in field order.
/// - `load(&Session) -> Result<Self, SessionError>`: reads every field. A
///   missing key is `SessionError::Missing` and a value of the wrong shape is
///   `SessionError::Deserialize`, both naming the key and the expected type.
///   An `Option` field reads a missing key as `None`; a `default` field
///   falls back to its default.
/// - `save(&self, &Session) -> Result<(), SessionError>`: serializes every
///   field first (a field that fails to serialize leaves the session
///   untouched), then writes only the keys whose values differ from what the
///   session holds. An absent key counts as holding what `load` would read
///   for it, so saving a struct that was just loaded changes nothing and
///   causes no store write. An `Option` field set to `None` removes its key
///   rather than storing `null`.
/// - `clear(&Session)`: removes exactly the struct's keys.
///
/// For every stored field `name` of type `T`, inherent associated functions:
/// `name(&Session) -> Result<T, SessionError>` (reads the key as `load`
/// does), `set_name(&Session, T) -> Result<(), SessionError>` (writes it as
/// `save` does) and `remove_name(&Session)`. Fields whose type is a
/// primitive integer also get `increment_name(&Session, by: i64) ->
/// Result<T, SessionError>`, and fields of type `Vec<E>` get
/// `push_name(&Session, E)`, `push_name_keep_last(&Session, E, usize)` and
/// `remove_first_name(&Session, &E) -> Result<bool, SessionError>`: atomic
/// operations the store applies to what it holds (see sessionkit's
/// `typed` module, "Atomic operations").
///
/// With sessionkit's `axum` feature, the struct is also an axum extractor
/// (`FromRequestParts`, and `OptionalFromRequestParts` for `Option<Cart>`);
/// see `sessionkit::extract::SessionDataRejection` for the status codes.
///
/// Generated items have the struct's visibility.
///
/// # Attributes
///
/// On the struct, `#[session(...)]` takes:
///
/// - `prefix = "cart."`: prepended to every key.
/// - `rename_all = "camelCase"`: the casing of keys derived from field names,
///   with serde's names and rules: `lowercase`, `UPPERCASE`, `PascalCase`,
///   `camelCase`, `snake_case`, `SCREAMING_SNAKE_CASE`, `kebab-case`,
///   `SCREAMING-KEBAB-CASE`.
/// - `crate = "path"`: where generated code finds sessionkit, for crates that
///   re-export it (default `::sessionkit`).
///
/// On a field:
///
/// - `rename = "key"`: the key's name, used as written (the prefix still
///   applies, `rename_all` does not).
/// - `default`: a missing key reads as `Default::default()`.
/// - `default = "path"`: a missing key reads as `path()`.
/// - `skip`: the field is not stored; `load` gives it `Default::default()`.
///
/// # Compile errors
///
/// Enums, unions, tuple and unit structs, unknown or repeated attributes,
/// attribute values of the wrong kind, `skip` combined with `rename` or
/// `default`, two fields with one key, accessor names that clash (a field
/// named `load`, or fields `x` and `set_x`), and fields whose type lacks
/// `Serialize`, `DeserializeOwned` or (for `skip` and `default`) `Default`
/// are compile errors pointing at the offending token. All of them are
/// reported at once, and each only once: beside the errors the derive still
/// implements `SessionData` and declares the accessors of every field it
/// could read, so code using the struct reports no errors of its own.
///
/// Generic structs work: each field type that mentions a type parameter is
/// bounded by `Serialize + DeserializeOwned` (and `Default` where needed).
#[proc_macro_derive(SessionData, attributes(session))]
pub fn derive_session_data(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match ast::Container::from_input(&input) {
        Ok(container) => expand::expand(&container).into(),
        // The errors, plus the items the struct would have had, so that
        // each mistake is reported once and not again at every use.
        Err(invalid) => fallback::expand(invalid).into(),
    }
}
