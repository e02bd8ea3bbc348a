//! `crate = "..."` for a crate that reaches sessionkit through a re-export,
//! and fields named like the generated functions' parameters.

#![deny(warnings)]

mod reexport {
    pub use ::sessionkit as sk;
}

use reexport::sk::SessionData;

#[derive(SessionData)]
#[session(crate = "crate::reexport::sk", prefix = "io.")]
struct Io {
    session: u32,
    value: Option<String>,
    #[session(default)]
    r#type: u8,
}

async fn handler(io: Io) -> String {
    format!("{} {:?} {}", io.session, io.value, io.r#type)
}

fn calls(session: &reexport::sk::Session) -> Result<(), reexport::sk::SessionError> {
    Io::set_session(session, 1)?;
    Io::set_value(session, None)?;
    let io = Io { session: Io::session(session)?, value: Io::value(session)?, r#type: Io::r#type(session)? };
    io.save(session)?;
    Io::remove_type(session);
    Io::clear(session);
    Ok(())
}

fn main() {
    assert_eq!(Io::KEYS, ["io.session", "io.value", "io.type"]);
    let _app: axum::Router = axum::Router::new().route("/", axum::routing::get(handler));
    let _ = calls;
}
