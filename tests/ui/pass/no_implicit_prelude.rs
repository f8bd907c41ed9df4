// The generated code uses fully qualified paths only.
#![no_implicit_prelude]
#![forbid(unsafe_code)]
#![deny(warnings)]

// Names that would break unqualified paths in generated code.
#[allow(dead_code)]
struct Result;
#[allow(dead_code)]
struct Option;
#[allow(dead_code, non_camel_case_types)]
struct str;
#[allow(dead_code, non_camel_case_types)]
struct bool;
#[allow(dead_code)]
trait Default {}
#[allow(dead_code)]
mod core {}
#[allow(dead_code)]
mod carafe {}

#[allow(dead_code)]
fn reader() {}

#[derive(::carafe::Session, ::std::default::Default)]
#[session(auto, default, namespace = "visit")]
struct Visit {
    count: u32,
    #[session(rename = "uid")]
    user_id: ::std::option::Option<u64>,
    #[session(default)]
    tags: ::std::vec::Vec<::std::string::String>,
    #[session(default = "self::one")]
    one: u8,
    #[session(skip)]
    scratch: ::std::vec::Vec<u8>,
}

#[derive(::carafe::Session)]
struct Required {
    name: ::std::string::String,
}

fn one() -> u8 {
    1
}

fn main() {
    let _ = <Visit as ::carafe::SessionData>::KEYS;
    let _ = <Required as ::carafe::SessionData>::KEYS;
}
