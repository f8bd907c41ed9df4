use carafe::Session;

#[derive(Session)]
struct Visit<T> {
    count: u32,
    extra: T,
}

fn main() {}
