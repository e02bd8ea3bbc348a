//! The intermediate representation: the struct as the code generator needs
//! it, with every key computed and every rule checked.
//!
//! Building it is the only step that can fail. Each problem becomes a spanned
//! error and checking continues, so the user gets every error at once; code
//! generation then works on a representation that is known to be valid.

use std::collections::HashMap;

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::{Data, DeriveInput, Fields, Generics, Ident, Path, Type, Visibility};

use crate::attr::{ContainerAttrs, DefaultAttr, Errors, FieldAttrs};

/// Names the generated code defines on every struct; a field accessor must
/// not take one of them.
pub(crate) const RESERVED: &[&str] = &["load", "save", "clear", "KEYS"];

/// A struct that derives `SessionData`.
pub(crate) struct Container<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) vis: &'a Visibility,
    pub(crate) generics: &'a Generics,
    /// The path generated code uses for the sessionkit crate.
    pub(crate) krate: Path,
    pub(crate) fields: Vec<Field<'a>>,
}

/// What a field's type allows beyond get and set: the atomic operations of
/// `sessionkit::Changes`. Recognised by how the type is spelled (the last
/// path segment), as serde recognises `Option`.
#[derive(Clone, Copy)]
pub(crate) enum Shape<'a> {
    /// A primitive integer: `increment_<field>`.
    Integer,
    /// `Vec<T>`: `push_<field>`, `push_<field>_keep_last`, `remove_first_<field>`.
    List(&'a Type),
    Other,
}

impl<'a> Shape<'a> {
    pub(crate) fn of(ty: &'a Type) -> Self {
        const INTEGERS: &[&str] = &["i8", "i16", "i32", "i64", "isize", "u8", "u16", "u32", "u64", "usize"];
        let Type::Path(path) = ty else { return Shape::Other };
        if path.qself.is_some() {
            return Shape::Other;
        }
        let Some(last) = path.path.segments.last() else { return Shape::Other };
        match &last.arguments {
            syn::PathArguments::None if INTEGERS.contains(&last.ident.to_string().as_str()) => Shape::Integer,
            syn::PathArguments::AngleBracketed(args) if last.ident == "Vec" && args.args.len() == 1 => {
                match args.args.first() {
                    Some(syn::GenericArgument::Type(element)) => Shape::List(element),
                    _ => Shape::Other,
                }
            }
            _ => Shape::Other,
        }
    }

    /// The names of the accessors this shape adds for `field_name`.
    fn accessors(self, field_name: &str) -> Vec<String> {
        match self {
            Shape::Integer => vec![format!("increment_{field_name}")],
            Shape::List(_) => vec![
                format!("push_{field_name}"),
                format!("push_{field_name}_keep_last"),
                format!("remove_first_{field_name}"),
            ],
            Shape::Other => Vec::new(),
        }
    }
}

/// Why an input cannot derive `SessionData`, and what could still be made
/// of it for the fallback expansion.
pub(crate) struct Invalid<'a> {
    /// Every problem found, combined.
    pub(crate) error: syn::Error,
    /// The struct as far as it could be read: its named fields (stored or
    /// skipped as their attributes say, keys unchecked). `None` when the
    /// `crate` attribute was rejected, so the fallback cannot know where
    /// sessionkit is.
    pub(crate) partial: Option<Container<'a>>,
}

/// One named field.
pub(crate) struct Field<'a> {
    /// As written, raw (`r#type`) if it was.
    pub(crate) ident: &'a Ident,
    pub(crate) ty: &'a Type,
    pub(crate) storage: Storage,
}

/// Whether and how a field lives in the session.
pub(crate) enum Storage {
    /// Under `key`, with an optional fallback for an absent key.
    Stored { key: String, default: Option<DefaultAttr> },
    /// Not stored; loads as `Default::default()`.
    Skipped,
}

impl Field<'_> {
    /// The field's name without `r#`, the base of its accessors' names.
    pub(crate) fn name(&self) -> String {
        self.ident.unraw().to_string()
    }
}

impl<'a> Container<'a> {
    /// Reads and checks `input`. On error, still returns what it could read,
    /// so the caller can emit a fallback beside the error.
    pub(crate) fn from_input(input: &'a DeriveInput) -> Result<Self, Invalid<'a>> {
        let mut errors = Errors::default();
        let attrs = ContainerAttrs::parse(&input.attrs, &mut errors);

        let named = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => Some(named),
                Fields::Unnamed(unnamed) => {
                    errors.push(syn::Error::new_spanned(
                        unnamed,
                        "`SessionData` cannot be derived for a tuple struct: each field needs a name to make its session key",
                    ));
                    None
                }
                Fields::Unit => {
                    errors.push(syn::Error::new(
                        input.ident.span(),
                        "`SessionData` cannot be derived for a unit struct: it has no fields to store",
                    ));
                    None
                }
            },
            Data::Enum(data) => {
                errors.push(syn::Error::new(
                    data.enum_token.span,
                    "`SessionData` cannot be derived for an enum: use a struct with named fields, \
                     and store the enum as one of its fields",
                ));
                None
            }
            Data::Union(data) => {
                errors.push(syn::Error::new(
                    data.union_token.span,
                    "`SessionData` cannot be derived for a union: use a struct with named fields",
                ));
                None
            }
        };

        let prefix = attrs.prefix.as_ref().map(syn::LitStr::value).unwrap_or_default();
        let mut fields = Vec::new();
        // Which field claimed each key and each accessor name, to point a
        // clash at the second claimant.
        let mut keys: HashMap<String, String> = HashMap::new();
        let mut methods: HashMap<String, String> = HashMap::new();

        for field in named.into_iter().flat_map(|named| &named.named) {
            let field_attrs = FieldAttrs::parse(&field.attrs, &mut errors);
            let Some(ident) = &field.ident else { continue };
            let field_name = ident.unraw().to_string();
            if field_attrs.skip.is_some() {
                fields.push(Field { ident, ty: &field.ty, storage: Storage::Skipped });
                continue;
            }

            let (key, key_span) = match &field_attrs.rename {
                Some(lit) => (format!("{prefix}{}", lit.value()), lit.span()),
                None => {
                    let name = attrs.rename_all.map_or_else(|| field_name.clone(), |rule| rule.apply(&field_name));
                    (format!("{prefix}{name}"), ident.span())
                }
            };
            if key.is_empty() {
                errors.push(syn::Error::new(key_span, "the session key of this field would be empty"));
            } else if let Some(owner) = keys.get(&key) {
                errors.push(syn::Error::new(
                    key_span,
                    format!("field `{field_name}` maps to session key `{key}`, which field `{owner}` already uses"),
                ));
            } else {
                keys.insert(key.clone(), field_name.clone());
            }

            check_accessors(ident, &field_name, Shape::of(&field.ty), &mut methods, &mut errors);
            fields.push(Field { ident, ty: &field.ty, storage: Storage::Stored { key, default: field_attrs.default } });
        }

        let krate_rejected = attrs.krate_rejected;
        let krate = attrs.krate.unwrap_or_else(|| {
            let mut path = Path::from(Ident::new("sessionkit", Span::call_site()));
            path.leading_colon = Some(Default::default());
            path
        });
        let container = Self { ident: &input.ident, vis: &input.vis, generics: &input.generics, krate, fields };
        match errors.finish() {
            Ok(()) => Ok(container),
            Err(error) => Err(Invalid { error, partial: (!krate_rejected).then_some(container) }),
        }
    }

    /// The fields that live in the session, with their keys.
    pub(crate) fn stored(&self) -> impl Iterator<Item = (&Field<'a>, &str, Option<&DefaultAttr>)> {
        self.fields.iter().filter_map(|field| match &field.storage {
            Storage::Stored { key, default } => Some((field, key.as_str(), default.as_ref())),
            Storage::Skipped => None,
        })
    }
}

/// Each stored field gets `name`, `set_name` and `remove_name`, and those
/// its [`Shape`] adds; none may clash with another field's or with the
/// struct-level methods.
fn check_accessors(
    ident: &Ident,
    field_name: &str,
    shape: Shape<'_>,
    methods: &mut HashMap<String, String>,
    errors: &mut Errors,
) {
    let mut names = vec![field_name.to_owned(), format!("set_{field_name}"), format!("remove_{field_name}")];
    names.extend(shape.accessors(field_name));
    for method in names {
        if RESERVED.contains(&method.as_str()) {
            errors.push(syn::Error::new(
                ident.span(),
                format!(
                    "field `{field_name}` would generate the accessor `{method}`, which clashes with \
                     `SessionData::{method}`; rename the field and keep its key with \
                     `#[session(rename = \"{field_name}\")]`"
                ),
            ));
        } else if let Some(owner) = methods.get(&method) {
            errors.push(syn::Error::new(
                ident.span(),
                format!(
                    "field `{field_name}` would generate the accessor `{method}`, which field `{owner}` \
                     already generates; rename one of the fields (`#[session(rename = \"...\")]` keeps the key)"
                ),
            ));
        } else {
            methods.insert(method, field_name.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::*;

    fn keys(input: &DeriveInput) -> Vec<String> {
        let Ok(container) = Container::from_input(input) else { panic!("expected valid input") };
        container.stored().map(|(_, key, _)| key.to_owned()).collect()
    }

    fn error(input: &DeriveInput) -> String {
        match Container::from_input(input) {
            Ok(_) => panic!("expected an error"),
            Err(invalid) => invalid.error.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"),
        }
    }

    #[test]
    fn keys_are_prefix_plus_renamed_or_cased_name() {
        let input: DeriveInput = parse_quote! {
            #[session(prefix = "cart.", rename_all = "camelCase")]
            struct Cart {
                line_items: Vec<u8>,
                #[session(rename = "Coupon_Code")]
                coupon_code: Option<String>,
                #[session(skip)]
                cached_total: u64,
                r#type: String,
            }
        };
        assert_eq!(keys(&input), ["cart.lineItems", "cart.Coupon_Code", "cart.type"]);
    }

    #[test]
    fn the_default_crate_path_is_absolute() {
        let input: DeriveInput = parse_quote! { struct S { a: u8 } };
        let Ok(container) = Container::from_input(&input) else { panic!("expected valid input") };
        let krate = &container.krate;
        assert_eq!(quote::quote!(#krate).to_string().replace(' ', ""), "::sessionkit");
    }

    #[test]
    fn every_error_is_reported_not_just_the_first() {
        let input: DeriveInput = parse_quote! {
            #[session(prefx = "a", prefix = 1)]
            struct S {
                #[session(rename = "x")]
                a: u8,
                #[session(rename = "x", colour)]
                b: u8,
            }
        };
        let text = error(&input);
        assert!(text.contains("unknown `session` attribute `prefx`"), "{text}");
        assert!(text.contains("`prefix` expects a string literal"), "{text}");
        assert!(text.contains("unknown `session` attribute `colour`"), "{text}");
        assert!(text.contains("field `b` maps to session key `x`, which field `a` already uses"), "{text}");
    }

    #[test]
    fn a_repeated_attribute_is_reported_even_after_a_rejected_value() {
        let input: DeriveInput = parse_quote! {
            #[session(prefix = 1)]
            #[session(prefix = "a.")]
            struct S { #[session(rename = x, rename = "y")] a: u8 }
        };
        let text = error(&input);
        assert!(text.contains("duplicate `prefix` attribute"), "{text}");
        assert!(text.contains("duplicate `rename` attribute"), "{text}");
    }

    #[test]
    fn accessor_clashes_are_errors() {
        let input: DeriveInput = parse_quote! { struct S { load: u8, x: u8, set_x: u8 } };
        let text = error(&input);
        assert!(text.contains("field `load` would generate the accessor `load`"), "{text}");
        assert!(text.contains("field `set_x` would generate the accessor `set_x`, which field `x`"), "{text}");
    }

    #[test]
    fn an_empty_key_is_an_error_but_an_empty_struct_is_fine() {
        let input: DeriveInput = parse_quote! { struct S { #[session(rename = "")] a: u8 } };
        assert!(error(&input).contains("would be empty"));
        let input: DeriveInput = parse_quote! { struct S {} };
        assert!(keys(&input).is_empty());
    }

    #[test]
    fn flags_reject_values_and_skip_rejects_other_attributes() {
        let input: DeriveInput = parse_quote! {
            struct S {
                #[session(skip = true)]
                a: u8,
                #[session(skip, rename = "b", default)]
                b: u8,
            }
        };
        let text = error(&input);
        assert!(text.contains("`skip` takes no value"), "{text}");
        assert!(text.contains("`rename` has no effect on a `skip` field"), "{text}");
        assert!(text.contains("`default` has no effect on a `skip` field"), "{text}");
    }
}
