use carafe::Session;

#[derive(serde::Deserialize)]
struct Secret {
    value: String,
}

#[derive(Session)]
struct Visit {
    count: u32,
    secret: Secret,
}

fn main() {}
