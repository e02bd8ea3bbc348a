use sessionkit::SessionData;

#[derive(SessionData)]
struct Cart {
    load: u32,
    visits: u32,
    set_visits: u32,
    #[session(rename = "keys")]
    KEYS: u32,
}

fn main() {}
