// A crate that re-exports carafe, and code that reaches it only through the
// re-export.
mod framework {
    pub mod sessions {
        pub use ::carafe as runtime;
        pub use ::carafe::Session;
    }
}

mod app {
    use crate::framework::sessions::Session;

    #[derive(Session)]
    #[session(crate = "crate::framework::sessions::runtime", namespace = "app")]
    pub struct Visit {
        pub count: u32,
    }

    #[derive(Session)]
    #[session(crate = "::carafe")]
    pub struct Absolute {
        pub count: u32,
    }
}

fn main() {
    use carafe::SessionData;
    assert_eq!(app::Visit::KEYS, ["app.count"]);
    assert_eq!(app::Absolute::KEYS, ["count"]);
}
