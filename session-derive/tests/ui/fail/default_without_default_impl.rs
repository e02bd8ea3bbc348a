use serde::{Deserialize, Serialize};
use sessionkit::SessionData;

#[derive(Serialize, Deserialize)]
struct Money(u64);

#[derive(SessionData)]
struct Cart {
    #[session(default)]
    total: Money,
}

fn main() {}
