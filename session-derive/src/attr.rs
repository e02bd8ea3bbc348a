//! `#[session(...)]` attributes, parsed with syn 2's `parse_nested_meta`.
//!
//! Parsing never stops at the first mistake: every problem is recorded in an
//! [`Errors`] collector and parsing moves on to the next item, so a user
//! sees all of them in one build (serde_derive and thiserror do the same).

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, ExprPath, Lit, LitStr, Path, Token, parenthesized};

use crate::case::RenameRule;

/// Accumulates errors; turns into one combined `syn::Error`.
#[derive(Default)]
pub(crate) struct Errors {
    first: Option<syn::Error>,
}

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.first {
            Some(first) => first.combine(error),
            None => self.first = Some(error),
        }
    }

    pub(crate) fn finish(self) -> Result<(), syn::Error> {
        self.first.map_or(Ok(()), Err)
    }
}

/// The attribute names each position accepts, to tell a misplaced
/// attribute from an unknown one.
const CONTAINER_ATTRS: &[&str] = &["prefix", "rename_all", "crate"];
const FIELD_ATTRS: &[&str] = &["rename", "default", "skip"];

/// Container attributes, as written.
#[derive(Default)]
pub(crate) struct ContainerAttrs {
    pub(crate) prefix: Option<LitStr>,
    pub(crate) rename_all: Option<RenameRule>,
    pub(crate) krate: Option<Path>,
    /// A `crate` attribute was written but its value rejected: generated
    /// code cannot know where sessionkit is, so no fallback is emitted.
    pub(crate) krate_rejected: bool,
}

/// How a field falls back when its key is absent.
pub(crate) enum DefaultAttr {
    /// `#[session(default)]`: `Default::default()`. The span is the
    /// attribute's, so a type without `Default` is reported there.
    Trait(Span),
    /// `#[session(default = "path")]`: calls `path()`.
    Path(ExprPath),
}

/// Field attributes, as written.
#[derive(Default)]
pub(crate) struct FieldAttrs {
    pub(crate) rename: Option<LitStr>,
    pub(crate) default: Option<DefaultAttr>,
    /// The span of the `skip` word.
    pub(crate) skip: Option<Span>,
}

impl ContainerAttrs {
    pub(crate) fn parse(attrs: &[Attribute], errors: &mut Errors) -> Self {
        let mut out = Self::default();
        let mut seen = Seen::default();
        for attr in session_attrs(attrs) {
            let result = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("prefix") {
                    let value = string_value(&meta, "prefix", errors)?;
                    seen.set(&mut out.prefix, value, &meta, errors);
                } else if meta.path.is_ident("rename_all") {
                    let rule = string_value(&meta, "rename_all", errors)?.and_then(|lit| {
                        let rule = RenameRule::from_name(&lit.value());
                        if rule.is_none() {
                            let message = format!(
                                "unknown `rename_all` casing {:?}; expected one of {}",
                                lit.value(),
                                RenameRule::expected()
                            );
                            errors.push(syn::Error::new(lit.span(), message));
                        }
                        rule
                    });
                    seen.set(&mut out.rename_all, rule, &meta, errors);
                } else if meta.path.is_ident("crate") {
                    // Rejected until its value is read, also if reading it
                    // fails with a syntax error.
                    let rejected_before = std::mem::replace(&mut out.krate_rejected, true);
                    let path = string_value(&meta, "crate", errors)?.and_then(|lit| match lit.parse::<Path>() {
                        Ok(path) => Some(path),
                        Err(_) => {
                            let message = format!(
                                "`crate` expects the path of the sessionkit crate, like `crate = \"::sessionkit\"`, not {:?}",
                                lit.value()
                            );
                            errors.push(syn::Error::new(lit.span(), message));
                            None
                        }
                    });
                    out.krate_rejected = rejected_before || path.is_none();
                    seen.set(&mut out.krate, path, &meta, errors);
                } else {
                    let name = path_text(&meta.path);
                    let message = if FIELD_ATTRS.contains(&name.as_str()) {
                        format!("`{name}` is a field attribute: put `#[session({name})]` on a field")
                    } else {
                        format!("unknown `session` attribute `{name}` on a struct; expected `prefix`, `rename_all` or `crate`")
                    };
                    errors.push(meta.error(message));
                    skip_value(&meta)?;
                }
                Ok(())
            });
            if let Err(err) = result {
                errors.push(err);
            }
        }
        out
    }
}

impl FieldAttrs {
    pub(crate) fn parse(attrs: &[Attribute], errors: &mut Errors) -> Self {
        let mut out = Self::default();
        let mut seen = Seen::default();
        // Where each attribute was written, to point a conflict with `skip`
        // at the attribute that has no effect.
        let mut rename_span = None;
        let mut default_span = None;
        for attr in session_attrs(attrs) {
            let result = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("rename") {
                    rename_span.get_or_insert(meta.path.span());
                    let value = string_value(&meta, "rename", errors)?;
                    seen.set(&mut out.rename, value, &meta, errors);
                } else if meta.path.is_ident("default") {
                    default_span.get_or_insert(meta.path.span());
                    let value = if meta.input.peek(Token![=]) {
                        string_value(&meta, "default", errors)?.and_then(|lit| match lit.parse::<ExprPath>() {
                            Ok(path) => Some(DefaultAttr::Path(path)),
                            Err(_) => {
                                let message = format!(
                                    "`default = \"...\"` expects the path of a function returning the field's type, not {:?}",
                                    lit.value()
                                );
                                errors.push(syn::Error::new(lit.span(), message));
                                None
                            }
                        })
                    } else {
                        no_value(&meta, "default", errors)?;
                        Some(DefaultAttr::Trait(meta.path.span()))
                    };
                    seen.set(&mut out.default, value, &meta, errors);
                } else if meta.path.is_ident("skip") {
                    no_value(&meta, "skip", errors)?;
                    seen.set(&mut out.skip, Some(meta.path.span()), &meta, errors);
                } else {
                    let name = path_text(&meta.path);
                    let message = if CONTAINER_ATTRS.contains(&name.as_str()) {
                        format!("`{name}` is a struct attribute: put `#[session({name} = \"...\")]` on the struct")
                    } else {
                        format!("unknown `session` attribute `{name}` on a field; expected `rename`, `default` or `skip`")
                    };
                    errors.push(meta.error(message));
                    skip_value(&meta)?;
                }
                Ok(())
            });
            if let Err(err) = result {
                errors.push(err);
            }
        }
        if out.skip.is_some() {
            for (span, name) in [(rename_span, "rename"), (default_span, "default")] {
                if let Some(span) = span {
                    let message = format!(
                        "`{name}` has no effect on a `skip` field: it is not stored, and loads as `Default::default()`"
                    );
                    errors.push(syn::Error::new(span, message));
                }
            }
        }
        out
    }
}

fn session_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|attr| attr.path().is_ident("session"))
}

/// The attribute names already given in one position, valid or not, so that
/// a repetition is reported even when the first value was rejected.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    /// Stores `value` unless the attribute was already given, which is an
    /// error pointing at the repeated attribute.
    fn set<T>(&mut self, slot: &mut Option<T>, value: Option<T>, meta: &ParseNestedMeta<'_>, errors: &mut Errors) {
        let name = path_text(&meta.path);
        if self.0.contains(&name) {
            errors.push(meta.error(format!("duplicate `{name}` attribute")));
        } else {
            self.0.push(name);
            *slot = value;
        }
    }
}

/// Parses `= "string"`. A value of another kind is recorded as an error and
/// gives `None`; only a syntax error that leaves the input unusable is
/// returned as `Err`.
fn string_value(meta: &ParseNestedMeta<'_>, name: &str, errors: &mut Errors) -> syn::Result<Option<LitStr>> {
    if !meta.input.peek(Token![=]) {
        errors.push(meta.error(format!("`{name}` expects a string: `{name} = \"...\"`")));
        skip_value(meta)?;
        return Ok(None);
    }
    let expr: Expr = meta.value()?.parse()?;
    match unwrap_groups(&expr) {
        Expr::Lit(ExprLit { lit: Lit::Str(lit), .. }) => Ok(Some(lit.clone())),
        other => {
            errors.push(syn::Error::new_spanned(
                other,
                format!("`{name}` expects a string literal, like `{name} = \"...\"`"),
            ));
            Ok(None)
        }
    }
}

/// A flag attribute (`skip`, bare `default`) must not be given a value.
fn no_value(meta: &ParseNestedMeta<'_>, name: &str, errors: &mut Errors) -> syn::Result<()> {
    if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
        errors.push(meta.error(format!("`{name}` takes no value")));
        skip_value(meta)?;
    }
    Ok(())
}

/// Consumes whatever follows an attribute's name (`= expr` or `(...)`), so
/// parsing can go on after an error.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        parenthesized!(content in meta.input);
        content.parse::<proc_macro2::TokenStream>()?;
    }
    Ok(())
}

/// Attributes written by `macro_rules!` can wrap values in invisible groups.
fn unwrap_groups(expr: &Expr) -> &Expr {
    match expr {
        Expr::Group(group) => unwrap_groups(&group.expr),
        other => other,
    }
}

fn path_text(path: &Path) -> String {
    path.segments.iter().map(|segment| segment.ident.to_string()).collect::<Vec<_>>().join("::")
}
