use sessionkit::SessionData;

// Every unknown attribute is reported, not only the first.
#[derive(SessionData)]
#[session(prefx = "cart.", default)]
struct Cart {
    #[session(rename = "list", renamed = "items")]
    items: Vec<u32>,
    #[session(optional)]
    coupon: Option<String>,
    #[session(with(module))]
    total: u64,
}

fn main() {}
