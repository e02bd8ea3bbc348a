use sessionkit::SessionData;

#[derive(SessionData)]
#[session(prefix = "a.", prefix = "b.")]
#[session(rename_all = "camelCase")]
#[session(rename_all = "kebab-case")]
struct Cart {
    #[session(rename = "x", rename = "y")]
    items: Vec<u32>,
    #[session(default)]
    #[session(default = "fallback")]
    visits: u32,
    #[session(skip, skip)]
    cache: Vec<u8>,
}

fn fallback() -> u32 {
    1
}

fn main() {}
