use carafe::{Session, SessionData};

#[derive(Session)]
struct Auth {
    #[session(rename = "uid")]
    user_id: Option<u64>,
    #[session(rename = "user name")]
    name: Option<String>,
    r#type: String,
    // `rename` may take a name another field gave up.
    #[session(rename = "kind")]
    r#ref: String,
    #[session(rename = "ref")]
    kind: String,
}

fn main() {
    assert_eq!(Auth::KEYS, ["uid", "user name", "type", "kind", "ref"]);
}
