use sessionkit::SessionData;

#[derive(SessionData)]
#[session(prefix = cart, rename_all = 1, crate = sessionkit)]
struct Cart {
    #[session(rename = 5)]
    items: Vec<u32>,
    #[session(rename = items_key)]
    coupon: Option<String>,
    #[session(rename)]
    visits: u32,
}

fn main() {}
