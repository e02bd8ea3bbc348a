use sessionkit::SessionData;

#[derive(SessionData)]
#[session(rename_all = "camelcase", crate = "not a path")]
struct Cart {
    #[session(default = "not a path!")]
    items: Vec<u32>,
    #[session(skip = true)]
    cache: Vec<u8>,
    #[session(rename = "")]
    coupon: Option<String>,
}

fn main() {}
