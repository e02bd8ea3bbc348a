use sessionkit::SessionData;

struct Connection;

#[derive(SessionData)]
struct Cart {
    items: Vec<u32>,
    #[session(skip)]
    connection: Connection,
}

fn main() {}
