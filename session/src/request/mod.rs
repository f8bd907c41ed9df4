//! One request's session: the tracked data, the pure planner that decides
//! what the store and the browser are told, and the handle that carries
//! those decisions out.

mod handle;
pub(crate) mod plan;
pub(crate) mod state;
pub(crate) mod tracked;

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;

pub(crate) use handle::{Handle, Inner, Shared};
