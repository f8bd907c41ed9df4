use carafe::{Session, SessionData};

#[derive(Session)]
struct Prefs {
    #[session(default)]
    theme: String,
    #[session(default)]
    font_size: u8,
    #[session(default)]
    recent: Vec<String>,
}

fn main() {
    assert_eq!(Prefs::KEYS, ["theme", "font_size", "recent"]);
}
