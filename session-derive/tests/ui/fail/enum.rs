use sessionkit::SessionData;

#[derive(SessionData)]
enum Theme {
    Light,
    Dark,
}

fn main() {}
