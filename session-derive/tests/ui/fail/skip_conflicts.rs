use sessionkit::SessionData;

#[derive(SessionData)]
struct Cart {
    #[session(skip, rename = "cache")]
    cache: Vec<u8>,
    #[session(default)]
    #[session(skip)]
    scratch: Vec<u8>,
}

fn main() {}
