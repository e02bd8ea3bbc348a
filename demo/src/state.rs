//! What the demo keeps in a session, as typed structs.
//!
//! Each struct owns the keys under its prefix, so the counter, the account
//! and the cart never overwrite each other, even when two requests of one
//! browser race: each saves only its own keys, and the store applies them
//! as key-level patches. Preferences are open-ended, so each one is a key of
//! its own (`pref.<name>`) rather than a field.
//!
//! | struct | keys |
//! | --- | --- |
//! | [`Visits`] | `visits.count` |
//! | [`Account`] | `account.user` |
//! | [`Cart`] | `cart.items` |
//! | preferences | `pref.<name>` |

use serde::Serialize;
use serde_json::{Map, Value};
use sessionkit::{Session, SessionData, SessionError};

/// The longest user name, in characters.
pub const MAX_USER_CHARS: usize = 64;
/// The longest cart item name, in characters.
pub const MAX_ITEM_CHARS: usize = 100;
/// The most items a cart holds.
pub const MAX_CART_ITEMS: usize = 50;
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
    /// Counts one more visit and returns the new count.
    pub fn bump(session: &Session) -> Result<u64, SessionError> {
        let count = Self::count(session)?.saturating_add(1);
        Self::set_count(session, count)?;
        Ok(count)
    }
}

/// Who is logged in, if anyone.
#[derive(SessionData, Debug, Default)]
#[session(prefix = "account.")]
pub struct Account {
    /// The user name; absent until login.
    pub user: Option<String>,
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

/// Everything `GET /api/me` shows, and what the pages render from.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// The logged-in user, or `null`.
    pub user: Option<String>,
    /// The visit count.
    pub visits: u64,
    /// The cart's items.
    pub cart: Vec<String>,
    /// Every preference, by name.
    pub prefs: Map<String, Value>,
}

impl Snapshot {
    /// Reads the whole session through the typed structs.
    pub fn load(session: &Session) -> Result<Self, SessionError> {
        Ok(Self {
            user: Account::user(session)?,
            visits: Visits::count(session)?,
            cart: Cart::items(session)?,
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
/// the browser before login (session fixation) is worth nothing after it.
pub fn log_in(session: &Session, raw_user: &str) -> Result<String, ActionError> {
    let user = user_name(raw_user)?;
    session.regenerate();
    Account::set_user(session, Some(user.clone()))?;
    Ok(user)
}

/// Adds an item to the cart, within [`MAX_CART_ITEMS`]; the cart after.
pub fn add_to_cart(session: &Session, raw_item: &str) -> Result<Vec<String>, ActionError> {
    let item = item_name(raw_item)?;
    let mut cart = Cart::load(session)?;
    if cart.items.len() >= MAX_CART_ITEMS {
        return Err(ActionError::Invalid(format!("the cart is full ({MAX_CART_ITEMS} items)")));
    }
    cart.items.push(item);
    cart.save(session)?;
    Ok(cart.items)
}

/// Removes one `item` from the cart; the cart after.
pub fn remove_from_cart(session: &Session, item: &str) -> Result<Vec<String>, ActionError> {
    let mut cart = Cart::load(session)?;
    let Some(index) = cart.items.iter().position(|it| it == item) else {
        return Err(ActionError::NotFound(format!("{item:?} is not in the cart")));
    };
    cart.items.remove(index);
    cart.save(session)?;
    Ok(cart.items)
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
    fn preference_names_are_plain_identifiers() {
        for good in ["theme", "font-size", "a_1", &"x".repeat(MAX_PREF_NAME)] {
            assert!(pref_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a.b", "a b", "é", "a/b", &"x".repeat(MAX_PREF_NAME + 1)] {
            assert!(pref_name(bad).is_err(), "{bad}");
        }
    }
}
