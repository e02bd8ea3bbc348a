use sessionkit::SessionData;

// A list field generates `push_items`; an integer field `increment_visits`.
#[derive(SessionData)]
struct Cart {
    items: Vec<String>,
    push_items: u32,
    visits: u32,
    increment_visits: bool,
}

fn main() {}
