//! `#[derive(SessionData)]` for sessionkit: typed structs over the session map.

#![forbid(unsafe_code)]
