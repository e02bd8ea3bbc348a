use sessionkit::SessionData;

#[derive(SessionData)]
struct Pair(u32, String);

fn main() {}
