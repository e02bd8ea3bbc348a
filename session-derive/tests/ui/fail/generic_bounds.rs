use sessionkit::{Session, SessionData};

#[derive(SessionData)]
struct Wrapper<T> {
    value: T,
}

struct Opaque;

fn use_it(session: &Session) {
    let _ = Wrapper::<Opaque>::load(session);
}

fn main() {
    let _ = use_it;
}
