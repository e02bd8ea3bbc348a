//! One mistake in an attribute is reported once: the struct is still a
//! `SessionData`, an extractor, and has every accessor, so the code that
//! uses it reports nothing more.

use sessionkit::{Session, SessionData, SessionError};

#[derive(SessionData)]
struct Cart {
    #[session(renamed = "cart.items")]
    items: Vec<u32>,
    visits: u32,
}

fn load_any<T: SessionData>(session: &Session) -> Result<T, SessionError> {
    T::load(session)
}

fn extractor<T: axum::extract::FromRequestParts<()>>() {}

fn use_it(session: &Session) -> Result<(), SessionError> {
    let visits: u32 = Cart::increment_visits(session, 1)?;
    Cart::push_items(session, visits)?;
    Cart::push_items_keep_last(session, 2, 10)?;
    let _seen: bool = Cart::remove_first_items(session, &2)?;
    let items: Vec<u32> = Cart::items(session)?;
    Cart::set_items(session, items)?;
    Cart::remove_visits(session);
    let cart: Cart = load_any(session)?;
    cart.save(session)?;
    <Cart as SessionData>::clear(session);
    let _keys: &[&str] = Cart::KEYS;
    extractor::<Cart>();
    Ok(())
}

fn main() {
    let _ = use_it;
}
