use carafe::{Session, SessionData};

mod defaults {
    pub fn theme() -> String {
        "light".to_owned()
    }

    pub struct Limits;

    impl Limits {
        pub fn page_size() -> u32 {
            20
        }
    }
}

fn generic_default<T: Default>() -> T {
    T::default()
}

#[derive(Session)]
struct Prefs {
    #[session(default = "defaults::theme")]
    theme: String,
    #[session(default = "defaults::Limits::page_size")]
    page_size: u32,
    #[session(default = "generic_default")]
    tags: Vec<String>,
    #[session(default = "::std::string::String::new")]
    note: String,
}

fn main() {
    assert_eq!(Prefs::KEYS, ["theme", "page_size", "tags", "note"]);
}
