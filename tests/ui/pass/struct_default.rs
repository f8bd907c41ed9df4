use carafe::{Session, SessionData};

#[derive(Session)]
#[session(default, namespace = "prefs")]
struct Prefs {
    theme: String,
    page_size: u32,
    #[session(default)]
    recent: Vec<String>,
    #[session(default = "no_tags")]
    tags: Vec<String>,
    #[session(skip)]
    cache: Option<String>,
}

fn no_tags() -> Vec<String> {
    Vec::new()
}

impl Default for Prefs {
    fn default() -> Self {
        Prefs {
            theme: "light".to_owned(),
            page_size: 20,
            recent: Vec::new(),
            tags: Vec::new(),
            cache: None,
        }
    }
}

// Every field has its own default: the struct's `Default` is not needed.
#[derive(Session)]
#[session(default)]
struct AllFieldDefaults {
    #[session(default)]
    count: u32,
}

fn main() {
    assert_eq!(
        Prefs::KEYS,
        ["prefs.theme", "prefs.page_size", "prefs.recent", "prefs.tags"]
    );
    assert_eq!(AllFieldDefaults::KEYS, ["count"]);
    let _: fn(&Prefs) -> Option<&String> = |prefs| prefs.cache.as_ref();
}
