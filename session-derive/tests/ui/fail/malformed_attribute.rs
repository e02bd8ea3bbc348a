use sessionkit::SessionData;

#[derive(SessionData)]
struct Cart {
    #[session]
    items: Vec<u32>,
    #[session = "visits"]
    visits: u32,
    #[session(rename = "a" "b")]
    coupon: Option<String>,
}

fn main() {}
