use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use carafe::{Session, Typed};

#[derive(Session, Default, Debug)]
#[session(auto, default, namespace = "visit")]
struct Visit {
    count: u32,
    #[session(rename = "uid")]
    user_id: Option<u64>,
    #[session(skip)]
    scratch: Vec<u8>,
}

#[derive(Session)]
#[session(namespace = "cart")]
struct Cart {
    #[session(default)]
    items: Vec<String>,
}

async fn index(mut visit: Typed<Visit>) -> String {
    visit.count += 1;
    visit.scratch.clear();
    format!("count: {} user: {:?}", visit.count, visit.user_id)
}

async fn add(mut cart: Typed<Cart>, visit: Typed<Visit>, session: Session) -> Result<String, StatusCode> {
    cart.items.push("tea".to_owned());
    cart.persist()
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(format!(
        "{} items, {} visits, {} keys",
        cart.items.len(),
        visit.count,
        session.len()
    ))
}

fn main() {
    let _app: Router = Router::new().route("/", get(index)).route("/cart", post(add));
}
