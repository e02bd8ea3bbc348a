use sessionkit::SessionData;

fn wrong_type() -> String {
    String::new()
}

#[derive(SessionData)]
struct Cart {
    #[session(default = "no_such_function")]
    items: Vec<u32>,
    #[session(default = "wrong_type")]
    visits: u32,
}

fn main() {}
