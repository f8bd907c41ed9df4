//! Code generation: `impl SessionData for Struct`.
//!
//! The generated code sits in `const _: () = { ... };`, names the runtime
//! only through `#krate::__private` (`::carafe::__private` unless
//! `#[session(crate = "...")]`), uses fully qualified paths and mixed-site
//! local names, so it neither sees nor leaks user names.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::{DeriveInput, Ident, LitStr};

use crate::ast::{Field, Input};
use crate::attr::{Errors, FieldDefault};
use crate::valid;

/// Expands `#[derive(Session)]`: the impl, or the errors plus a stub impl
/// (so that the user sees the errors, not a cascade of "`SessionData` is
/// not implemented" at every use of the struct).
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let model = Input::from_syn(input, &mut errors);
    valid::check(&model, &mut errors);
    let krate = model
        .attrs
        .krate
        .as_ref()
        .map_or_else(|| quote!(::carafe), |krate| quote!(#krate));
    let private = quote!(#krate::__private);
    match errors.finish() {
        None => impl_session_data(&model, &private),
        Some(errors) => {
            let errors = errors.to_compile_error();
            let stub = stub(&model, &private);
            quote!(#errors #stub)
        }
    }
}

/// A span at `span`'s place (so errors point there) that resolves and lints
/// as macro-generated code.
fn at(span: Span) -> Span {
    span.resolved_at(Span::mixed_site())
}

/// `tokens` with every span set to `span`: a missing `Default` for a field's
/// type is then reported on the attribute asking for it, not on the type.
fn respan(tokens: impl ToTokens, span: Span) -> TokenStream {
    tokens
        .into_token_stream()
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut inner = Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                token = TokenTree::Group(inner);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}

/// Names the generated code uses. Locals are mixed-site: invisible to, and
/// unshadowable by, the user's tokens (types, `default = "..."` paths).
struct Names<'a> {
    private: &'a TokenStream,
    reader: Ident,
    writer: Ident,
    /// The struct's `Default` value, with `#[session(default)]`.
    struct_default: Ident,
}

fn impl_session_data(input: &Input<'_>, private: &TokenStream) -> TokenStream {
    let ident = input.ident;
    let where_clause = &input.generics.where_clause;
    let namespace = input.attrs.namespace.as_ref().map(LitStr::value);
    let auto = input.attrs.auto.is_some();
    let names = Names {
        private,
        reader: Ident::new("reader", Span::mixed_site()),
        writer: Ident::new("writer", Span::mixed_site()),
        struct_default: Ident::new("default", Span::mixed_site()),
    };

    // With `#[session(default)]` on the struct, a field without its own
    // default takes the struct's `Default` value (so does a skipped field).
    // The value is made only if some field uses it.
    let struct_default_span = input
        .attrs
        .default
        .filter(|_| input.fields.iter().any(|field| field.attrs.default.is_none()));
    let make_struct_default = struct_default_span.map(|span| {
        let default = quote_spanned!(at(span)=> <Self as #private::core::default::Default>::default());
        let struct_default = &names.struct_default;
        quote!(let #struct_default: Self = #default;)
    });

    let mut codecs = Vec::new();
    let mut keys = Vec::new();
    let mut load_fields = Vec::new();
    let mut store_fields = Vec::new();
    for (index, field) in input.fields.iter().enumerate() {
        let member = field.ident;
        if let Some(skip) = field.attrs.skip {
            let value = skipped_field(field, skip, struct_default_span.is_some(), &names);
            load_fields.push(quote!(#member: #value));
            continue;
        }
        let key = LitStr::new(&field.key(namespace.as_deref()), Span::call_site());
        let codec = format_ident!("FIELD_{}", index, span = Span::mixed_site());
        let (item, load, store) = stored_field(field, &key, &codec, struct_default_span.is_some(), &names);
        codecs.push(item);
        keys.push(key);
        load_fields.push(quote!(#member: #load));
        store_fields.push(store);
    }

    // An unused parameter would warn: name it `_` when no field is stored.
    let (reader_param, writer_param) = if keys.is_empty() {
        (quote!(_), quote!(_))
    } else {
        let Names { reader, writer, .. } = &names;
        (quote!(#reader), quote!(#writer))
    };

    quote! {
        #[doc(hidden)]
        const _: () = {
            #(#codecs)*

            #[automatically_derived]
            impl #private::SessionData for #ident #where_clause {
                const AUTO: #private::core::primitive::bool = #auto;
                const KEYS: &'static [&'static #private::core::primitive::str] = &[#(#keys),*];

                fn __load(
                    #reader_param: &mut #private::Reader<'_>,
                ) -> #private::Result<Self, #private::TypedError> {
                    #make_struct_default
                    #private::Result::Ok(Self {
                        #(#load_fields,)*
                    })
                }

                fn __store(&self, #writer_param: &mut #private::Writer<'_>) {
                    #(#store_fields)*
                }
            }
        };
    }
}

/// The value of a `skip` field: the struct's default's, or the type's
/// `Default` (a missing `Default` is reported on the `skip` word).
fn skipped_field(field: &Field<'_>, skip: Span, struct_default: bool, names: &Names<'_>) -> TokenStream {
    let Names { private, .. } = names;
    let member = field.ident;
    if struct_default {
        let struct_default = &names.struct_default;
        quote!(#struct_default.#member)
    } else {
        let ty = respan(field.ty, at(skip));
        quote_spanned!(at(skip)=> <#ty as #private::core::default::Default>::default())
    }
}

/// A stored field: the const holding its read and write functions, the
/// expression reading it in `__load`, and the statement writing it in
/// `__store`.
///
/// The const exists so that `Serialize + DeserializeOwned` is checked in one
/// body, on the field's type: a type that lacks them gives one error per
/// missing trait, where calling the runtime's generic functions from
/// `__load` and `__store` would repeat it in each.
fn stored_field(
    field: &Field<'_>,
    key: &LitStr,
    codec: &Ident,
    struct_default: bool,
    names: &Names<'_>,
) -> (TokenStream, TokenStream, TokenStream) {
    let Names {
        private,
        reader,
        writer,
        ..
    } = names;
    let member = field.ident;
    let ty = field.ty;
    let reader_ty = quote!(&mut #private::Reader<'_>);
    let str_ty = quote!(&'static #private::core::primitive::str);

    // (fn pointer type, function, call in `__load`)
    let (load_ty, load_fn, load) = match &field.attrs.default {
        Some((_, default)) => {
            let default = match default {
                // A missing `Default` is reported on the `default` word.
                FieldDefault::Trait(span) => {
                    let ty = respan(ty, at(*span));
                    quote_spanned!(at(*span)=> <#ty as #private::core::default::Default>::default)
                }
                FieldDefault::Path(path) => quote!(#path),
            };
            (
                quote!(fn(#reader_ty, #str_ty, fn() -> #ty) -> #ty),
                quote!(|reader: #reader_ty, key, default: fn() -> #ty| reader.or_else::<#ty>(key, default)),
                quote!((#codec.0)(#reader, #key, #default)),
            )
        }
        None if struct_default => {
            let struct_default = &names.struct_default;
            (
                quote!(fn(#reader_ty, #str_ty, #ty) -> #ty),
                quote!(|reader: #reader_ty, key, default: #ty| reader.or_value::<#ty>(key, default)),
                quote!((#codec.0)(#reader, #key, #struct_default.#member)),
            )
        }
        None => (
            quote!(fn(#reader_ty, #str_ty) -> #private::Result<#ty, #private::TypedError>),
            quote!(|reader: #reader_ty, key| reader.required::<#ty>(key)),
            quote!((#codec.0)(#reader, #key)?),
        ),
    };

    let assert = quote_spanned!(at(field.ty_span())=> #private::assert_field::<#ty>(););
    let item = quote! {
        const #codec: (#load_ty, fn(&mut #private::Writer<'_>, #str_ty, &#ty)) = {
            #assert
            (
                #load_fn,
                |writer: &mut #private::Writer<'_>, key, value: &#ty| writer.field::<#ty>(key, value),
            )
        };
    };
    let store = quote!((#codec.1)(#writer, #key, &self.#member););
    (item, load, store)
}

/// An impl that type-checks whatever the input, emitted only next to a
/// `compile_error!`.
fn stub(input: &Input<'_>, private: &TokenStream) -> TokenStream {
    let ident = input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    // A generic struct satisfies the trait's `Send + Sync + 'static` bounds
    // only under these.
    let bounds = if input.generics.params.is_empty() {
        quote!(#where_clause)
    } else {
        let predicates = where_clause.map(|clause| &clause.predicates);
        quote! {
            where
                #ident #ty_generics: #private::core::marker::Send
                    + #private::core::marker::Sync
                    + 'static,
                #predicates
        }
    };
    quote! {
        #[doc(hidden)]
        const _: () = {
            #[automatically_derived]
            impl #impl_generics #private::SessionData for #ident #ty_generics #bounds {
                const AUTO: #private::core::primitive::bool = false;
                const KEYS: &'static [&'static #private::core::primitive::str] = &[];

                fn __load(
                    _: &mut #private::Reader<'_>,
                ) -> #private::Result<Self, #private::TypedError> {
                    #private::core::unreachable!()
                }

                fn __store(&self, _: &mut #private::Writer<'_>) {}
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::derive;

    fn errors(input: &syn::DeriveInput) -> Vec<String> {
        let output = derive(input).to_string();
        output
            .split("compile_error !")
            .skip(1)
            .map(|rest| rest.split('"').nth(1).unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn keys_use_namespace_rename_and_unraw() {
        let input = parse_quote! {
            #[session(namespace = "visit")]
            struct Visit {
                count: u32,
                #[session(rename = "uid")]
                user_id: Option<u64>,
                r#type: String,
                #[session(skip)]
                scratch: Vec<u8>,
            }
        };
        let output = derive(&input).to_string();
        assert!(
            output.contains(r#"& ["visit.count" , "visit.uid" , "visit.type"]"#),
            "{output}"
        );
        assert!(errors(&input).is_empty());
    }

    #[test]
    fn every_attribute_error_is_reported() {
        let input = parse_quote! {
            #[session(namespace = "", autosave, auto, auto)]
            #[session(crate = "a b")]
            struct Visit {
                #[session(rename = 1, what)]
                count: u32,
                #[session(skip, default)]
                scratch: Vec<u8>,
                #[session(rename = "count")]
                other: u32,
                #[session(rename = "x", rename = "y")]
                third: u32,
            }
        };
        let errors = errors(&input);
        for expected in [
            "unknown session attribute `autosave`",
            "duplicate `auto` attribute",
            "`crate` must be a path",
            "`rename` takes a string literal",
            "unknown session field attribute `what`",
            "duplicate `rename` attribute",
            "`namespace` must not be empty",
            "`default` cannot be combined with `skip`",
            "fields `count` and `other` both use the session key",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{expected:?} not in {errors:#?}"
            );
        }
        assert_eq!(errors.len(), 9, "{errors:#?}");
    }

    #[test]
    fn an_error_still_emits_a_stub_impl() {
        let input = parse_quote! {
            #[session(bogus)]
            struct Visit { count: u32 }
        };
        let output = derive(&input).to_string();
        assert!(output.contains("compile_error"));
        assert!(
            output.contains("impl :: carafe :: __private :: SessionData for Visit"),
            "{output}"
        );
        assert!(output.contains("unreachable"));
    }

    #[test]
    fn crate_overrides_the_runtime_path() {
        let input = parse_quote! {
            #[session(crate = "my::rt")]
            struct Visit { count: u32 }
        };
        let output = derive(&input).to_string();
        assert!(
            output.contains("impl my :: rt :: __private :: SessionData for Visit"),
            "{output}"
        );
        assert!(!output.contains(":: carafe"), "{output}");
    }
}
