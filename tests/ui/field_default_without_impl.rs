use carafe::Session;

#[derive(serde::Serialize, serde::Deserialize)]
struct Theme {
    name: String,
}

#[derive(Session)]
struct Prefs {
    #[session(default)]
    theme: Theme,
}

fn main() {}
