use sessionkit::SessionData;

#[derive(SessionData)]
#[session(skip)]
struct Cart {
    #[session(prefix = "cart.")]
    items: Vec<u32>,
    #[session(crate = "sessionkit")]
    visits: u32,
}

fn main() {}
