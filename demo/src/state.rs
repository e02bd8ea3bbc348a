//! What the demo keeps in a session, as typed structs, and the rules for
//! changing it.
//!
//! Each struct owns the keys under its prefix, so the counter, the cart and
//! the saved-for-later list never overwrite each other, even when two
//! requests of one browser race: each saves only its own keys, and the
//! store applies them as key-level patches. Preferences are open-ended, so
//! each one is a key of its own (`pref.<name>`) rather than a field. The
//! signed-in user is no key of ours: [`Session::login`] binds it, and
//! [`Session::user`] reads it.
//!
//! | struct | keys |
//! | --- | --- |
//! | [`Visits`] | `visits.count` |
//! | [`Cart`] | `cart.items` |
//! | [`Saved`] | `saved.items` |
//! | [`Device`] | `device.user_agent` |
//! | preferences | `pref.<name>` |
//!
//! # Concurrent requests of one session
//!
//! Two tabs, or a script firing requests in parallel, must not lose each
//! other's changes:
//!
//! - the visit counter is an atomic increment, and adding to the cart an
//!   atomic push: the store applies them to whatever it holds, so every
//!   visit counts and every item lands;
//! - removing from the cart is an atomic remove-first: the store removes
//!   one equal item from what it holds, never an item another request just
//!   added;
//! - moving an item between the cart and the saved-for-later list
//!   ([`save_for_later`], [`move_to_cart`]) reads the list and writes it
//!   whole, which is only safe one request at a time: those routes run
//!   under an exclusive session ([`sessionkit::exclusive::ExclusiveLayer`]). The saved
//!   list is written nowhere else, so it loses nothing; the cart side uses
//!   the atomic operations, so adds running meanwhile (which do not wait
//!   for the exclusive session) are kept. A plain removal racing with a
//!   move of the item's last copy can both answer success: the item ends up
//!   saved, as if the move had come first and the removal found nothing.
//!
//! Limits are checked against the request's own view of the session, so
//! adds that race can together pass the cart limit by at most the number of
//! adds racing (each saw room for one more); the next add then sees the
//! full cart and is refused, and the session's size limit bounds what the
//! store keeps whatever happens.

use serde::Serialize;
use serde_json::{Map, Value};
use sessionkit::{Session, SessionData, SessionError};

/// The longest user name, in characters.
pub const MAX_USER_CHARS: usize = 64;
/// The longest cart item name, in characters.
pub const MAX_ITEM_CHARS: usize = 100;
/// The most items a cart (and the saved-for-later list) holds, unless
/// `--cart-limit` says otherwise.
pub const MAX_CART_ITEMS: usize = 50;
/// The longest user agent kept, in characters.
pub const MAX_USER_AGENT_CHARS: usize = 200;
/// The longest preference name, in bytes (ASCII only).
pub const MAX_PREF_NAME: usize = 40;
/// The largest preference value, serialized, in bytes.
pub const MAX_PREF_BYTES: usize = 4096;
/// The most preferences one session holds.
pub const MAX_PREFS: usize = 20;
/// The session key prefix of preferences.
pub const PREF_PREFIX: &str = "pref.";

/// How many times this session has seen the home page (or `GET /api/counter`).
#[derive(SessionData, Debug, Default)]
#[session(prefix = "visits.")]
pub struct Visits {
    /// The count; an absent key reads as 0.
    #[session(default)]
    pub count: u64,
}

impl Visits {
    /// Counts one more visit and returns the new count, as an atomic
    /// increment: concurrent visits all count.
    pub fn bump(session: &Session) -> Result<u64, SessionError> {
        Self::increment_count(session, 1)
    }
}

/// The shopping cart: item names in the order they were added; an item
/// added twice is there twice.
#[derive(SessionData, Debug, Default)]
#[session(prefix = "cart.")]
pub struct Cart {
    /// The items; an absent key reads as an empty cart.
    #[session(default)]
    pub items: Vec<String>,
}

/// Items saved for later, moved there from the cart (and back).
#[derive(SessionData, Debug, Default)]
#[session(prefix = "saved.")]
pub struct Saved {
    /// The items; an absent key reads as an empty list.
    #[session(default)]
    pub items: Vec<String>,
}

/// [`Device::user_agent`]'s session key, for reading it from a listing's
/// data (another session's, which has no typed handle).
pub const USER_AGENT_KEY: &str = "device.user_agent";

/// What the demo notes at login about the browser that signed in, so that
/// the "Your sessions" page can tell the user's sessions apart.
#[derive(SessionData, Debug, Default)]
#[session(prefix = "device.")]
pub struct Device {
    /// The `User-Agent` the browser sent at login, shortened.
    pub user_agent: Option<String>,
}

/// Everything `GET /api/me` shows, and what the pages render from.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// The logged-in user, or `null`.
    pub user: Option<String>,
    /// The visit count.
    pub visits: u64,
    /// The cart's items.
    pub cart: Vec<String>,
    /// The items saved for later.
    pub saved: Vec<String>,
    /// Every preference, by name.
    pub prefs: Map<String, Value>,
}

impl Snapshot {
    /// Reads the whole session through the typed structs.
    pub fn load(session: &Session) -> Result<Self, SessionError> {
        Ok(Self {
            user: session.user(),
            visits: Visits::count(session)?,
            cart: Cart::items(session)?,
            saved: Saved::items(session)?,
            prefs: prefs(session),
        })
    }
}

/// Every `pref.<name>` key, by name.
pub fn prefs(session: &Session) -> Map<String, Value> {
    session
        .data()
        .into_iter()
        .filter_map(|(key, value)| Some((key.strip_prefix(PREF_PREFIX)?.to_owned(), value)))
        .collect()
}

/// Why a request to change the session did not.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The input was refused (a 400); the message is shown as is.
    #[error("{0}")]
    Invalid(String),
    /// The thing to remove is not there (a 404); the message is shown as is.
    #[error("{0}")]
    NotFound(String),
    /// The session could not be read or written (a 500).
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// A user name: trimmed, 1 to [`MAX_USER_CHARS`] characters, no control
/// characters. Anything else (`<script>` included) is allowed: the pages
/// escape it.
pub fn user_name(raw: &str) -> Result<String, ActionError> {
    text(raw, "user name", MAX_USER_CHARS)
}

/// A cart item: trimmed, 1 to [`MAX_ITEM_CHARS`] characters, no control
/// characters.
pub fn item_name(raw: &str) -> Result<String, ActionError> {
    text(raw, "item", MAX_ITEM_CHARS)
}

fn text(raw: &str, what: &str, max_chars: usize) -> Result<String, ActionError> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(ActionError::Invalid(format!("the {what} must not be empty")));
    }
    if value.chars().count() > max_chars {
        return Err(ActionError::Invalid(format!("the {what} must be at most {max_chars} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(ActionError::Invalid(format!("the {what} must not contain control characters")));
    }
    Ok(value.to_owned())
}

/// A preference name: 1 to [`MAX_PREF_NAME`] ASCII letters, digits, `-`
/// or `_`, so that it reads well as a session key and in a URL.
pub fn pref_name(raw: &str) -> Result<&str, ActionError> {
    let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if raw.is_empty() || raw.len() > MAX_PREF_NAME || !raw.bytes().all(valid) {
        return Err(ActionError::Invalid(format!(
            "a preference name is 1 to {MAX_PREF_NAME} ASCII letters, digits, `-` or `_`"
        )));
    }
    Ok(raw)
}

/// Logs `user` in: the session gets a new id first, so an id planted in
/// the browser before login (session fixation) is worth nothing after it,
/// and is bound to the user, so that it appears among the user's sessions.
/// `user_agent` (the request's header) is kept to tell sessions apart.
pub fn log_in(session: &Session, raw_user: &str, user_agent: Option<&str>) -> Result<String, ActionError> {
    let user = user_name(raw_user)?;
    session.login(user.clone());
    Device::set_user_agent(session, user_agent.map(shorten_user_agent))?;
    Ok(user)
}

/// A user agent fit to keep and show: control characters dropped, at most
/// [`MAX_USER_AGENT_CHARS`] characters.
pub fn shorten_user_agent(raw: &str) -> String {
    raw.chars().filter(|c| !c.is_control()).take(MAX_USER_AGENT_CHARS).collect::<String>().trim().to_owned()
}

fn cart_full(limit: usize) -> ActionError {
    ActionError::Invalid(format!("the cart is full ({limit} items)"))
}

/// Adds an item to the cart, within `limit` items, as an atomic push (see
/// the [module docs](self) for what racing adds can do to the limit).
pub fn add_to_cart(session: &Session, raw_item: &str, limit: usize) -> Result<(), ActionError> {
    let item = item_name(raw_item)?;
    if Cart::items(session)?.len() >= limit {
        return Err(cart_full(limit));
    }
    Cart::push_items(session, item)?;
    Ok(())
}

/// Removes one `item` from the cart, as an atomic remove-first.
pub fn remove_from_cart(session: &Session, item: &str) -> Result<(), ActionError> {
    if !Cart::remove_first_items(session, &item.to_owned())? {
        return Err(ActionError::NotFound(format!("{item:?} is not in the cart")));
    }
    Ok(())
}

/// Moves one `item` from the cart to the saved-for-later list, within
/// `limit` items. Reads the list and writes it whole: call it only under an
/// exclusive session (see the [module docs](self)).
pub fn save_for_later(session: &Session, item: &str, limit: usize) -> Result<(), ActionError> {
    let mut saved = Saved::items(session)?;
    if !Cart::items(session)?.iter().any(|it| it == item) {
        return Err(ActionError::NotFound(format!("{item:?} is not in the cart")));
    }
    if saved.len() >= limit {
        return Err(ActionError::Invalid(format!("the saved-for-later list is full ({limit} items)")));
    }
    Cart::remove_first_items(session, &item.to_owned())?;
    saved.push(item.to_owned());
    Saved::set_items(session, saved)?;
    Ok(())
}

/// Moves one `item` from the saved-for-later list back to the cart, within
/// `limit` items. Like [`save_for_later`], only under an exclusive session.
pub fn move_to_cart(session: &Session, item: &str, limit: usize) -> Result<(), ActionError> {
    let mut saved = Saved::items(session)?;
    let Some(index) = saved.iter().position(|it| it == item) else {
        return Err(ActionError::NotFound(format!("{item:?} is not saved for later")));
    };
    if Cart::items(session)?.len() >= limit {
        return Err(cart_full(limit));
    }
    saved.remove(index);
    Saved::set_items(session, saved)?;
    Cart::push_items(session, item.to_owned())?;
    Ok(())
}

/// Sets the preference `name` to `value`, within [`MAX_PREFS`] and
/// [`MAX_PREF_BYTES`].
pub fn set_pref(session: &Session, name: &str, value: Value) -> Result<(), ActionError> {
    let key = format!("{PREF_PREFIX}{}", pref_name(name)?);
    if value.to_string().len() > MAX_PREF_BYTES {
        return Err(ActionError::Invalid(format!("a preference value must be at most {MAX_PREF_BYTES} bytes of JSON")));
    }
    if session.get_value(&key).is_none() && prefs(session).len() >= MAX_PREFS {
        return Err(ActionError::Invalid(format!("at most {MAX_PREFS} preferences per session")));
    }
    session.set_value(key, value)?;
    Ok(())
}

/// Removes the preference `name`.
pub fn remove_pref(session: &Session, name: &str) -> Result<(), ActionError> {
    let key = format!("{PREF_PREFIX}{}", pref_name(name)?);
    match session.delete(&key) {
        Some(_) => Ok(()),
        None => Err(ActionError::NotFound(format!("no preference named {name:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(user_name("  ada  ").expect("valid"), "ada");
        assert_eq!(user_name("<script>alert(1)</script>").expect("valid"), "<script>alert(1)</script>");
        assert!(user_name("   ").is_err());
        assert!(user_name("a\u{0}b").is_err());
        assert!(user_name(&"é".repeat(MAX_USER_CHARS)).is_ok(), "characters, not bytes");
        assert!(user_name(&"a".repeat(MAX_USER_CHARS + 1)).is_err());
        assert!(item_name(&"x".repeat(MAX_ITEM_CHARS + 1)).is_err());
        assert!(item_name("tea\n").is_ok(), "trailing whitespace is trimmed, not refused");
        assert!(item_name("te\na").is_err());
    }

    #[test]
    fn the_user_agent_key_is_the_structs() {
        assert_eq!(Device::KEYS, [USER_AGENT_KEY]);
    }

    #[test]
    fn user_agents_are_kept_short_and_printable() {
        assert_eq!(shorten_user_agent("Mozilla/5.0 (X11)\r\n"), "Mozilla/5.0 (X11)");
        assert_eq!(shorten_user_agent(&"é".repeat(500)).chars().count(), MAX_USER_AGENT_CHARS);
    }

    #[test]
    fn preference_names_are_plain_identifiers() {
        for good in ["theme", "font-size", "a_1", &"x".repeat(MAX_PREF_NAME)] {
            assert!(pref_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a.b", "a b", "é", "a/b", &"x".repeat(MAX_PREF_NAME + 1)] {
            assert!(pref_name(bad).is_err(), "{bad}");
        }
    }
}
