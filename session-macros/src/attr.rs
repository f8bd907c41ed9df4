//! Parsing of `#[session(...)]` attributes.
//!
//! Parsing never stops at the first mistake: every error is pushed to
//! [`Errors`] and the parser skips to the next comma, so that all the
//! mistakes of a struct are reported together.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::{Attribute, Lit, LitStr, Path, Token};

/// The errors found so far, combined into one `syn::Error`.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn finish(self) -> Option<syn::Error> {
        self.0
    }
}

const CONTAINER_ATTRS: &str = "`auto`, `namespace = \"...\"`, `default` or `crate = \"...\"`";
const FIELD_ATTRS: &str = "`rename = \"...\"`, `default`, `default = \"path::to::fn\"` or `skip`";

/// `#[session(...)]` on the struct.
#[derive(Default)]
pub(crate) struct Container {
    /// `auto`: the span of the word.
    pub auto: Option<Span>,
    /// `namespace = "..."`: the literal, not yet validated.
    pub namespace: Option<LitStr>,
    /// `default`: the span of the word.
    pub default: Option<Span>,
    /// `crate = "..."`: the parsed path.
    pub krate: Option<Path>,
}

/// A field's default.
pub(crate) enum FieldDefault {
    /// `#[session(default)]`: `Default::default()`. The span of the word.
    Trait(Span),
    /// `#[session(default = "path::to::fn")]`.
    Path(syn::ExprPath),
}

/// `#[session(...)]` on a field.
#[derive(Default)]
pub(crate) struct Field {
    /// `rename = "..."`: the whole attribute (for error spans) and the literal.
    pub rename: Option<(TokenStream, LitStr)>,
    /// `default` or `default = "..."`, with the whole attribute.
    pub default: Option<(TokenStream, FieldDefault)>,
    /// `skip`: the span of the word.
    pub skip: Option<Span>,
}

fn is_session(attr: &Attribute) -> bool {
    attr.path().is_ident("session")
}

fn path_name(path: &Path) -> String {
    path.to_token_stream().to_string().replace(' ', "")
}

/// Consumes the rest of the current nested item, up to the next comma.
fn skip_rest(input: ParseStream<'_>) -> syn::Result<TokenStream> {
    let mut tokens = TokenStream::new();
    while !input.is_empty() && !input.peek(Token![,]) {
        tokens.extend([input.parse::<TokenTree>()?]);
    }
    Ok(tokens)
}

fn at_end(meta: &ParseNestedMeta<'_>) -> bool {
    meta.input.is_empty() || meta.input.peek(Token![,])
}

/// A word attribute (`auto`, `skip`, ...): no value allowed, no duplicate.
fn flag(meta: &ParseNestedMeta<'_>, slot: &mut Option<Span>, errors: &mut Errors) -> syn::Result<()> {
    let name = path_name(&meta.path);
    if !at_end(meta) {
        let path = &meta.path;
        let rest = skip_rest(meta.input)?;
        errors.push(syn::Error::new_spanned(
            quote!(#path #rest),
            format!("`{name}` takes no value: write `#[session({name})]`"),
        ));
    } else if slot.is_some() {
        errors.push(meta.error(format!("duplicate `{name}` attribute")));
    } else {
        *slot = Some(
            meta.path
                .get_ident()
                .map_or_else(Span::call_site, syn::Ident::span),
        );
    }
    Ok(())
}

/// The string literal of `name = "..."`, or `None` after pushing an error.
/// Returns the whole attribute's tokens too, for error spans.
fn string_value(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
) -> syn::Result<Option<(TokenStream, LitStr)>> {
    let name = path_name(&meta.path);
    let path = &meta.path;
    if at_end(meta) {
        errors.push(meta.error(format!("`{name}` needs a value: write `{name} = \"...\"`")));
        return Ok(None);
    }
    if !meta.input.peek(Token![=]) {
        let rest = skip_rest(meta.input)?;
        errors.push(syn::Error::new_spanned(
            quote!(#path #rest),
            format!("expected `{name} = \"...\"`"),
        ));
        return Ok(None);
    }
    let eq: Token![=] = meta.input.parse()?;
    let value = skip_rest(meta.input)?;
    if let Ok(Lit::Str(lit)) = syn::parse2::<Lit>(value.clone()) {
        return Ok(Some((quote!(#path #eq #lit), lit)));
    }
    let message = format!("`{name}` takes a string literal: write `{name} = \"...\"`");
    errors.push(if value.is_empty() {
        syn::Error::new_spanned(eq, message)
    } else {
        syn::Error::new_spanned(value, message)
    });
    Ok(None)
}

/// Parses every `#[session(...)]` attribute of the struct.
pub(crate) fn container(attrs: &[Attribute], errors: &mut Errors) -> Container {
    let mut container = Container::default();
    for attr in attrs.iter().filter(|attr| is_session(attr)) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("auto") {
                flag(&meta, &mut container.auto, errors)
            } else if meta.path.is_ident("default") {
                flag(&meta, &mut container.default, errors)
            } else if meta.path.is_ident("namespace") {
                if let Some((_, lit)) = string_value(&meta, errors)? {
                    if container.namespace.is_some() {
                        errors.push(meta.error("duplicate `namespace` attribute"));
                    } else {
                        container.namespace = Some(lit);
                    }
                }
                Ok(())
            } else if meta.path.is_ident("crate") {
                if let Some((_, lit)) = string_value(&meta, errors)? {
                    match lit.parse_with(Path::parse_mod_style) {
                        Ok(_) if container.krate.is_some() => {
                            errors.push(meta.error("duplicate `crate` attribute"));
                        }
                        Ok(path) => container.krate = Some(path),
                        Err(_) => errors.push(syn::Error::new(
                            lit.span(),
                            format!(
                                "`crate` must be a path to the carafe runtime, like `crate = \"::carafe\"`; {:?} is not a path",
                                lit.value()
                            ),
                        )),
                    }
                }
                Ok(())
            } else {
                let name = path_name(&meta.path);
                let hint = if ["rename", "skip"].contains(&name.as_str()) {
                    format!("`{name}` is a field attribute: put it on a field")
                } else {
                    format!("expected {CONTAINER_ATTRS}")
                };
                errors.push(meta.error(format!("unknown session attribute `{name}`; {hint}")));
                skip_rest(meta.input).map(drop)
            }
        });
        if let Err(err) = result {
            errors.push(err);
        }
    }
    container
}

/// Parses every `#[session(...)]` attribute of a field.
pub(crate) fn field(attrs: &[Attribute], errors: &mut Errors) -> Field {
    let mut field = Field::default();
    for attr in attrs.iter().filter(|attr| is_session(attr)) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                flag(&meta, &mut field.skip, errors)
            } else if meta.path.is_ident("rename") {
                if let Some(rename) = string_value(&meta, errors)? {
                    if field.rename.is_some() {
                        errors.push(meta.error("duplicate `rename` attribute"));
                    } else {
                        field.rename = Some(rename);
                    }
                }
                Ok(())
            } else if meta.path.is_ident("default") {
                let default = if at_end(&meta) {
                    let path = &meta.path;
                    Some((quote!(#path), FieldDefault::Trait(path.segments[0].ident.span())))
                } else {
                    string_value(&meta, errors)?.and_then(|(tokens, lit)| {
                        if let Ok(path) = lit.parse::<syn::ExprPath>() {
                            return Some((tokens, FieldDefault::Path(path)));
                        }
                        errors.push(syn::Error::new(
                            lit.span(),
                            format!(
                                "`default` must name a function, like `default = \"path::to::fn\"`; {:?} is not a path",
                                lit.value()
                            ),
                        ));
                        None
                    })
                };
                if let Some(default) = default {
                    if field.default.is_some() {
                        errors.push(meta.error("duplicate `default` attribute"));
                    } else {
                        field.default = Some(default);
                    }
                }
                Ok(())
            } else {
                let name = path_name(&meta.path);
                let hint = if ["auto", "namespace", "crate"].contains(&name.as_str()) {
                    format!("`{name}` is a struct attribute: put it on the struct")
                } else {
                    format!("expected {FIELD_ATTRS}")
                };
                errors.push(meta.error(format!("unknown session field attribute `{name}`; {hint}")));
                skip_rest(meta.input).map(drop)
            }
        });
        if let Err(err) = result {
            errors.push(err);
        }
    }
    field
}
