//! Two mistakes give two errors, and using the struct adds none.

use sessionkit::{Session, SessionData, SessionError};

#[derive(SessionData)]
#[session(prefx = "cart.")]
struct Cart {
    #[session(rename = 1)]
    visits: u32,
    coupon: Option<String>,
}

fn load_any<T: SessionData>(session: &Session) -> Result<T, SessionError> {
    T::load(session)
}

fn use_it(session: &Session) -> Result<(), SessionError> {
    let _visits: u32 = Cart::increment_visits(session, 1)?;
    let _coupon: Option<String> = Cart::coupon(session)?;
    let _cart: Cart = load_any(session)?;
    Ok(())
}

fn main() {
    let _ = use_it;
}
