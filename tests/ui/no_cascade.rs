// A struct whose derive failed still implements `SessionData` (a stub), so
// its uses add no "trait bound not satisfied" errors to the real one.
use axum::routing::get;
use axum::Router;
use carafe::{Session, SessionData, Typed};

#[derive(Session)]
#[session(namespace = "")]
struct Visit {
    count: u32,
}

#[derive(Session)]
struct Generic<T> {
    value: T,
}

#[derive(Session)]
enum Choice {
    A,
}

async fn index(visit: Typed<Visit>, generic: Typed<Generic<u32>>, choice: Typed<Choice>) -> String {
    let _ = (&generic.value, &*choice);
    format!("{}", visit.count)
}

fn main() {
    let _ = <Visit as SessionData>::KEYS;
    let _: Router = Router::new().route("/", get(index));
}
