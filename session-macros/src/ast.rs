//! The derive's input model: the struct and its fields, with their parsed
//! attributes.

use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Generics, Ident, Type};

use crate::attr::{self, Errors};

/// The struct deriving `Session`.
pub(crate) struct Input<'a> {
    pub ident: &'a Ident,
    pub generics: &'a Generics,
    pub attrs: attr::Container,
    /// The named fields; empty when the input is not a struct with named
    /// fields (an error has been reported then).
    pub fields: Vec<Field<'a>>,
}

/// A named field.
pub(crate) struct Field<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub attrs: attr::Field,
}

impl<'a> Input<'a> {
    /// Builds the model, pushing an error for every shape the derive does
    /// not support and every malformed attribute.
    pub(crate) fn from_syn(input: &'a DeriveInput, errors: &mut Errors) -> Self {
        let attrs = attr::container(&input.attrs, errors);
        let ident = &input.ident;
        let fields = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => named
                    .named
                    .iter()
                    .map(|field| Field {
                        ident: field.ident.as_ref().expect("named field"),
                        ty: &field.ty,
                        attrs: attr::field(&field.attrs, errors),
                    })
                    .collect(),
                Fields::Unnamed(unnamed) => {
                    errors.push(syn::Error::new(
                        unnamed.paren_token.span.join(),
                        "tuple structs are not supported by #[derive(Session)]: \
                         use named fields, each field is a session key",
                    ));
                    Vec::new()
                }
                Fields::Unit => {
                    let struct_token = data.struct_token;
                    errors.push(syn::Error::new_spanned(
                        quote::quote!(#struct_token #ident),
                        "unit structs are not supported by #[derive(Session)]: \
                         use a struct with named fields, each field is a session key",
                    ));
                    Vec::new()
                }
            },
            Data::Enum(data) => {
                let enum_token = data.enum_token;
                errors.push(syn::Error::new_spanned(
                    quote::quote!(#enum_token #ident),
                    "enums are not supported by #[derive(Session)]: \
                     use a struct with named fields, each field is a session key",
                ));
                Vec::new()
            }
            Data::Union(data) => {
                let union_token = data.union_token;
                errors.push(syn::Error::new_spanned(
                    quote::quote!(#union_token #ident),
                    "unions are not supported by #[derive(Session)]: \
                     use a struct with named fields, each field is a session key",
                ));
                Vec::new()
            }
        };
        Input {
            ident,
            generics: &input.generics,
            attrs,
            fields,
        }
    }
}

impl Field<'_> {
    /// The field's key inside the namespace: `rename`, or the field's name
    /// (a raw identifier `r#type` gives `type`).
    pub(crate) fn name(&self) -> String {
        match &self.attrs.rename {
            Some((_, lit)) => lit.value(),
            None => self.ident.unraw().to_string(),
        }
    }

    /// The full session key: `namespace.name`, or `name`.
    pub(crate) fn key(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(namespace) => format!("{namespace}.{}", self.name()),
            None => self.name(),
        }
    }

    /// Whether the field is a session key (not `skip`).
    pub(crate) fn is_stored(&self) -> bool {
        self.attrs.skip.is_none()
    }

    /// The span to blame for a key collision: the `rename`, else the field.
    pub(crate) fn key_span(&self) -> proc_macro2::Span {
        match &self.attrs.rename {
            Some((_, lit)) => lit.span(),
            None => self.ident.span(),
        }
    }

    /// The span of the field's type, for errors about the type.
    pub(crate) fn ty_span(&self) -> proc_macro2::Span {
        self.ty.span()
    }
}
