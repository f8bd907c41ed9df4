use carafe::Session;

#[derive(serde::Serialize)]
struct Secret {
    value: String,
}

#[derive(Session)]
struct Visit {
    count: u32,
    secret: Secret,
}

fn main() {}
