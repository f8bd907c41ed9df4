use carafe::{Session, SessionData};

#[derive(Session)]
#[session(auto, namespace = "visit")]
struct Visit {
    count: u32,
    #[session(rename = "uid")]
    user_id: Option<u64>,
    #[session(skip)]
    scratch: Vec<u8>,
    #[session(default)]
    tags: Vec<String>,
    #[session(default = "default_theme")]
    theme: String,
    r#type: String,
}

fn default_theme() -> String {
    "light".to_owned()
}

fn main() {
    assert!(Visit::AUTO);
    assert_eq!(
        Visit::KEYS,
        [
            "visit.count",
            "visit.uid",
            "visit.tags",
            "visit.theme",
            "visit.type"
        ]
    );
    let _ = fields;
}

fn fields(visit: &Visit) -> (&[u8], Option<u64>) {
    (&visit.scratch, visit.user_id)
}
