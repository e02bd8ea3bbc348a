//! The DESIGN.md example in a crate that denies every warning (and missing
//! docs) and shadows the names generated code could wrongly rely on.

#![deny(warnings, missing_docs)]

/// Public, so that `missing_docs` checks the generated items too.
pub mod shadowing {
    #![allow(dead_code, non_camel_case_types, non_upper_case_globals)]

    // Everything a careless expansion might resolve relative to the caller.
    mod serde {}
    mod sessionkit {}
    mod core {}
    mod std {}
    mod axum_core {}
    mod http {}
    type Result<T> = ::core::result::Result<T, ()>;
    struct Option;
    struct Some;
    const None: () = ();
    struct Ok;
    struct Err;
    struct Vec;
    struct String;
    trait Default {}
    trait Send {}
    trait Sync {}
    trait Future {}
    trait Serialize {}
    trait DeserializeOwned {}
    struct Session;
    struct SessionError;
    struct SessionData;
    struct KEYS;
    // Not shadowed: lowercase unit structs or consts named like the
    // generated functions' parameters (`session`, `value`). Rust's naming
    // lints already flag those, and the generated docs read better for it.

    use ::sessionkit::SessionData as Derive;

    pub use super::items::Item;

    /// The example of DESIGN.md (fields made `pub` and documented).
    #[derive(Derive)]
    #[session(prefix = "cart.")]
    pub struct Cart {
        /// What is in the cart.
        pub items: ::std::vec::Vec<Item>,
        /// How often the cart was shown.
        #[session(default)]
        pub visits: u32,
        /// A discount code.
        pub coupon: ::std::option::Option<::std::string::String>,
    }

    /// Generic, with every attribute.
    #[derive(Derive)]
    #[session(prefix = "generic.", rename_all = "kebab-case", crate = "::sessionkit")]
    pub struct Generic<'a, T: ::core::clone::Clone, const N: usize>
    where
        T: ::core::fmt::Debug,
    {
        /// Required.
        pub some_value: T,
        /// Renamed, with a default function.
        #[session(rename = "Other", default = "fallback")]
        pub other: ::std::vec::Vec<T>,
        /// Not stored.
        #[session(skip)]
        pub borrowed: ::std::option::Option<&'a str>,
        /// An array, defaulted.
        #[session(default)]
        pub fixed: [u8; 4],
        /// Not stored either.
        #[session(skip)]
        pub marker: ::core::marker::PhantomData<[(); N]>,
    }

    /// A private struct: its generated items are private and unused.
    #[derive(Derive)]
    struct Private {
        unused: u8,
    }

    /// An empty struct stores nothing.
    #[derive(Derive)]
    pub struct Empty {}

    fn fallback<T>() -> ::std::vec::Vec<T> {
        ::std::vec::Vec::new()
    }

    /// The DESIGN.md calls.
    pub fn handler_body(session: &::sessionkit::Session) -> ::core::result::Result<u32, ::sessionkit::SessionError> {
        let cart = Cart::load(session)?; // whole struct; a missing required key is an error naming it
        cart.save(session)?; // writes only the keys whose values changed
        Cart::set_visits(session, 3)?; // one key, typed
        let v: u32 = Cart::visits(session)?; // one key, typed
        Cart::clear(session); // removes exactly this struct's keys
        let _ = (&cart.items, &cart.coupon, Cart::KEYS);
        ::core::result::Result::Ok(v)
    }

    /// The generic struct's calls.
    pub fn generic_body(session: &::sessionkit::Session) -> ::core::result::Result<(), ::sessionkit::SessionError> {
        let value = Generic::<'static, u8, 2>::load(session)?;
        let _ = (&value.some_value, &value.other, &value.borrowed, &value.fixed, &value.marker);
        value.save(session)
    }
}

mod items {
    use serde::{Deserialize, Serialize};

    /// A cart line (serde's own derive does not tolerate the shadowing above).
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Item {
        /// The product.
        pub sku: String,
        /// How many.
        pub quantity: u32,
    }
}

/// Derived types are axum extractors, plain and optional.
async fn show(cart: shadowing::Cart, maybe: Option<shadowing::Generic<'static, String, 1>>) -> String {
    format!("{} {}", cart.items.len(), maybe.is_some())
}

fn main() {
    let _app: axum::Router = axum::Router::new().route("/", axum::routing::get(show));
    let _ = (shadowing::handler_body, shadowing::generic_body, shadowing::Empty {});
}
