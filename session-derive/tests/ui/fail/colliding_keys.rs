use sessionkit::SessionData;

#[derive(SessionData)]
#[session(rename_all = "camelCase")]
#[allow(non_snake_case)]
struct Profile {
    user_id: u64,
    // camelCase makes this `userId` too.
    #[session(rename = "userId")]
    legacy_id: u64,
    display_name: String,
    displayName: String,
}

fn main() {}
