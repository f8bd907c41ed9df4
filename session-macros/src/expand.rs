//! Code generation: `impl SessionData for Struct`.
//!
//! The generated code sits in `const _: () = { ... };`, names the runtime
//! only through `#krate::__private` (`::carafe::__private` unless
//! `#[session(crate = "...")]`), uses fully qualified paths and mixed-site
//! local names, so it neither sees nor leaks user names.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
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

fn impl_session_data(input: &Input<'_>, private: &TokenStream) -> TokenStream {
    let ident = input.ident;
    let where_clause = &input.generics.where_clause;
    let namespace = input.attrs.namespace.as_ref().map(LitStr::value);
    let auto = input.attrs.auto.is_some();

    let reader = Ident::new("reader", Span::mixed_site());
    let writer = Ident::new("writer", Span::mixed_site());
    let struct_default = Ident::new("default", Span::mixed_site());

    let stored: Vec<&Field<'_>> = input.fields.iter().filter(|field| field.is_stored()).collect();
    let key_of = |field: &Field<'_>| LitStr::new(&field.key(namespace.as_deref()), Span::call_site());
    let keys = stored.iter().map(|field| key_of(field));

    // `T: Serialize + DeserializeOwned`, checked once per stored field with
    // the error on the field's type.
    let asserts = stored.iter().map(|field| {
        let ty = field.ty;
        quote_spanned!(at(field.ty_span())=> const _: () = #private::assert_field::<#ty>();)
    });

    // With `#[session(default)]` on the struct, a field without its own
    // default takes the struct's `Default` value (so does a skipped field).
    let struct_default_span = input
        .attrs
        .default
        .filter(|_| input.fields.iter().any(|field| field.attrs.default.is_none()));
    let make_struct_default = struct_default_span.map(|span| {
        let default = quote_spanned!(at(span)=> <Self as #private::core::default::Default>::default());
        quote!(let #struct_default: Self = #default;)
    });

    let load_fields = input.fields.iter().map(|field| {
        let member = field.ident;
        let ty = field.ty;
        let key = key_of(field);
        let value = match (&field.attrs.skip, &field.attrs.default, struct_default_span) {
            (Some(_), _, Some(_)) => quote!(#struct_default.#member),
            (Some(span), _, None) => {
                quote_spanned!(at(*span)=> <#ty as #private::core::default::Default>::default())
            }
            (None, Some((_, FieldDefault::Trait(span))), _) => {
                let default = quote_spanned!(at(*span)=> <#ty as #private::core::default::Default>::default);
                quote!(#reader.or_else::<#ty>(#key, #default))
            }
            (None, Some((_, FieldDefault::Path(path))), _) => quote!(#reader.or_else::<#ty>(#key, #path)),
            (None, None, Some(_)) => quote!(#reader.or_value::<#ty>(#key, #struct_default.#member)),
            (None, None, None) => quote!(#reader.required::<#ty>(#key)?),
        };
        quote!(#member: #value)
    });

    let store_fields = stored.iter().map(|field| {
        let member = field.ident;
        let key = key_of(field);
        quote!(#writer.field(#key, &self.#member);)
    });

    // An unused parameter would warn: name it `_` when no field is stored.
    let reader_param = if stored.is_empty() {
        quote!(_)
    } else {
        quote!(#reader)
    };
    let writer_param = if stored.is_empty() {
        quote!(_)
    } else {
        quote!(#writer)
    };

    quote! {
        #[doc(hidden)]
        const _: () = {
            #(#asserts)*

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
