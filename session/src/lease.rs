//! Exclusive leases: requests of one session run one at a time, from load to
//! persist, when a route asks for it.
//!
//! Atomic operations ([`Changes::increment`](crate::Changes::increment),
//! [`push`](crate::Changes::push)) cover counters and lists; anything else
//! that reads a value and writes one computed from it (move an item from
//! the cart to a wish list, change a quantity) needs the session to itself.
//! A store that supports leases grants one holder per session at a time
//! ([`SessionStore::try_lease`](crate::SessionStore::try_lease)); each lease
//! has an expiry, so a crashed holder cannot block the session for longer
//! than that, and a *fencing* check: a write carrying a lease's token (see
//! [`Changes::fence`](crate::Changes::fence)) is applied only while that very
//! lease is live, so a holder whose lease ran out (a stalled request, a GC
//! pause) cannot overwrite what the next holder did.

use std::fmt;
use std::time::SystemTime;

/// Names one grant of a lease. Random, so that no two grants share one, in
/// one process or across app servers.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseToken(u128);

impl LeaseToken {
    /// A fresh token from the operating system's CSPRNG.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes (as
    /// [`SessionId::generate`](crate::SessionId::generate)).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        if let Err(err) = getrandom::fill(&mut bytes) {
            panic!("the operating system's random number generator failed: {err}");
        }
        Self(u128::from_le_bytes(bytes))
    }

    /// The token as a number, for stores that persist it.
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// The token from its number (the inverse of [`LeaseToken::as_u128`]).
    pub fn from_u128(value: u128) -> Self {
        Self(value)
    }
}

/// 32 hexadecimal digits: the form stores that keep text persist.
impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeaseToken({self})")
    }
}

impl std::str::FromStr for LeaseToken {
    type Err = std::num::ParseIntError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        u128::from_str_radix(text, 16).map(Self)
    }
}

/// A granted lease: who holds it and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The grant's token; fence writes with it.
    pub token: LeaseToken,
    /// When the lease runs out unless released before.
    pub expires_at: SystemTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_and_round_trip_through_text() {
        let a = LeaseToken::generate();
        assert_ne!(a, LeaseToken::generate());
        assert_eq!(a.to_string().parse::<LeaseToken>(), Ok(a));
        assert_eq!(LeaseToken::from_u128(a.as_u128()), a);
        assert_eq!(a.to_string().len(), 32);
    }
}
