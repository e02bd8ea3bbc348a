use sessionkit::SessionData;

struct Opaque;

#[derive(SessionData)]
struct Cart {
    items: Vec<u32>,
    handle: Opaque,
}

fn main() {}
