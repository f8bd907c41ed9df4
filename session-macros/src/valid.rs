//! Checks on the parsed input that attribute parsing alone cannot make.

use std::collections::HashMap;

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;

use crate::ast::Input;
use crate::attr::Errors;

/// Pushes an error for every invalid combination or value.
pub(crate) fn check(input: &Input<'_>, errors: &mut Errors) {
    if !input.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            input.generics,
            "generic structs are not supported by #[derive(Session)]: \
             a typed session is a concrete struct of session keys",
        ));
    }

    let namespace = input.attrs.namespace.as_ref().and_then(|lit| {
        let value = lit.value();
        let problem = if value.is_empty() {
            Some("`namespace` must not be empty; leave it out for bare keys".to_owned())
        } else {
            value
                .chars()
                .find(|c| c.is_whitespace() || c.is_control())
                .map(|c| {
                    format!("`namespace` must not contain whitespace or control characters, found {c:?}")
                })
        };
        match problem {
            Some(problem) => {
                errors.push(syn::Error::new(lit.span(), problem));
                None
            }
            None => Some(value),
        }
    });

    for field in &input.fields {
        let attrs = &field.attrs;
        if field.is_stored() && borrows(field.ty.to_token_stream()) {
            errors.push(syn::Error::new_spanned(
                field.ty,
                "a session field must own its data: a value loaded from the session cannot borrow; \
                 use an owned type such as `String` or `Vec<T>`",
            ));
        }
        if let Some((_, lit)) = &attrs.rename {
            let value = lit.value();
            if value.is_empty() {
                errors.push(syn::Error::new(lit.span(), "`rename` must not be empty"));
            } else if let Some(c) = value.chars().find(|c| c.is_control()) {
                errors.push(syn::Error::new(
                    lit.span(),
                    format!("`rename` must not contain control characters, found {c:?}"),
                ));
            }
        }
        if attrs.skip.is_some() {
            if let Some((tokens, _)) = &attrs.rename {
                errors.push(syn::Error::new_spanned(
                    tokens,
                    "`rename` cannot be combined with `skip`: a skipped field is not stored",
                ));
            }
            if let Some((tokens, _)) = &attrs.default {
                errors.push(syn::Error::new_spanned(
                    tokens,
                    "`default` cannot be combined with `skip`: a skipped field always takes its default \
                     (`Default::default()`, or the struct's `Default` with `#[session(default)]`)",
                ));
            }
        }
    }

    // Two stored fields with the same key. Blame a `rename` when there is one:
    // field names are unique, so a collision always involves a rename.
    let mut seen = HashMap::new();
    for field in input.fields.iter().filter(|field| field.is_stored()) {
        let key = field.key(namespace.as_deref());
        if let Some(first) = seen.insert(key.clone(), field) {
            let blamed = if field.attrs.rename.is_some() {
                field
            } else {
                first
            };
            errors.push(syn::Error::new(
                blamed.key_span(),
                format!(
                    "fields `{}` and `{}` both use the session key {key:?}; rename one of them",
                    first.ident, field.ident
                ),
            ));
            seen.insert(key, first);
        }
    }
}

/// Whether a type has a reference anywhere (`&'static str`, `Option<&[u8]>`):
/// such a field cannot be `DeserializeOwned`, and rustc's own error would
/// point at the derive, not at the field.
fn borrows(ty: TokenStream) -> bool {
    ty.into_iter().any(|token| match token {
        TokenTree::Punct(punct) => punct.as_char() == '&',
        TokenTree::Group(group) => borrows(group.stream()),
        TokenTree::Ident(_) | TokenTree::Literal(_) => false,
    })
}
