//! Code generation from the validated [`Container`].
//!
//! Every path is absolute (`::core::...`, or the sessionkit crate path), so the
//! output means the same whatever the user's crate has in scope. The work
//! (reading, comparing, writing JSON) happens in `sessionkit::__private`
//! functions; the generated code only wires fields to keys, which keeps it
//! small and keeps the runtime behaviour in one tested place.

use std::collections::HashSet;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{GenericParam, Ident, Type, TypeParam};

use crate::ast::{Container, Field, Shape, Storage};
use crate::attr::DefaultAttr;

pub(crate) fn expand(cont: &Container<'_>) -> TokenStream {
    let krate = &cont.krate;
    let ident = cont.ident;
    let vis = cont.vis;
    let (impl_generics, ty_generics, _) = cont.generics.split_for_impl();
    let predicates = predicates(cont);

    let keys: Vec<&str> = cont.stored().map(|(_, key, _)| key).collect();
    let keys_doc = if keys.is_empty() {
        "This struct stores no keys.".to_owned()
    } else {
        format!("Keys: {}.", keys.iter().map(|key| format!("`{key}`")).collect::<Vec<_>>().join(", "))
    };

    let session_unused = if keys.is_empty() { quote!(let _ = session;) } else { TokenStream::new() };

    let load_fields = cont.fields.iter().map(|field| {
        let member = field.ident;
        let value = match &field.storage {
            Storage::Stored { key, default } => {
                let read = read(krate, field, key, default.as_ref());
                quote!(#read?)
            }
            // Spanned at the type, so a missing `Default` is reported on the
            // field that needs it.
            Storage::Skipped => {
                let ty = field.ty;
                quote_spanned!(ty.span()=> <#ty as ::core::default::Default>::default())
            }
        };
        quote!(#member: #value)
    });
    let load_fields = load_fields.collect::<Vec<_>>();

    let stored: Vec<_> = cont.stored().collect();
    let values: Vec<Ident> = (0..stored.len()).map(|i| format_ident!("__sessionkit_value_{}", i)).collect();
    let serialize = stored.iter().zip(&values).map(|((field, key, _), value)| {
        let member = field.ident;
        quote_spanned!(field.ty.span()=> let #value = #krate::__private::to_value(#key, &self.#member)?;)
    });
    let store =
        stored.iter().zip(&values).map(|((field, key, default), value)| write(krate, field, key, *default, value));

    let accessors = stored.iter().flat_map(|(field, key, default)| field_methods(krate, vis, field, key, *default));
    let accessors = accessors.map(|method| {
        let Method { doc, signature, body, .. } = method;
        quote! {
            #[doc = #doc]
            #signature {
                #body
            }
        }
    });

    let load_doc = format!(
        "Reads this struct from the session: a missing required key or a value of the wrong shape is an error \
         naming the key. {keys_doc}"
    );
    let extractor = extractor(cont, &predicates);

    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::SessionData for #ident #ty_generics where #(#predicates,)* {
            const KEYS: &'static [&'static str] = &[#(#keys),*];

            fn load(session: &#krate::Session) -> ::core::result::Result<Self, #krate::SessionError> {
                #session_unused
                ::core::result::Result::Ok(Self { #(#load_fields,)* })
            }

            fn save(&self, session: &#krate::Session) -> ::core::result::Result<(), #krate::SessionError> {
                #session_unused
                #(#serialize)*
                #(#store)*
                ::core::result::Result::Ok(())
            }

            fn clear(session: &#krate::Session) {
                #krate::__private::remove_all(session, <Self as #krate::SessionData>::KEYS);
            }
        }

        // The struct-level methods are repeated here so that `Cart::load`
        // works without importing the trait. Accessors a program does not
        // call are not its dead code: it did not write them.
        #[allow(dead_code)]
        impl #impl_generics #ident #ty_generics where #(#predicates,)* {
            #[doc = #keys_doc]
            #vis const KEYS: &'static [&'static str] = <Self as #krate::SessionData>::KEYS;

            #[doc = #load_doc]
            #vis fn load(session: &#krate::Session) -> ::core::result::Result<Self, #krate::SessionError> {
                <Self as #krate::SessionData>::load(session)
            }

            /// Writes the fields whose values differ from what the session holds; an unchanged struct
            /// changes nothing and causes no store write.
            #vis fn save(&self, session: &#krate::Session) -> ::core::result::Result<(), #krate::SessionError> {
                <Self as #krate::SessionData>::save(self, session)
            }

            /// Removes this struct's keys from the session, and no others.
            #vis fn clear(session: &#krate::Session) {
                <Self as #krate::SessionData>::clear(session)
            }

            #(#accessors)*
        }

        #extractor
    }
}

/// One generated associated function: its signature apart from its body,
/// so that the fallback (see `fallback`) declares exactly what the real
/// expansion defines.
pub(crate) struct Method {
    /// The function's name, to keep the fallback from declaring one twice.
    pub(crate) name: Ident,
    pub(crate) doc: String,
    /// Everything up to the body: visibility, `fn`, name, parameters,
    /// return type and where clause.
    pub(crate) signature: TokenStream,
    pub(crate) body: TokenStream,
}

/// The accessors of one stored field: `name`, `set_name`, `remove_name`,
/// and the operations its type allows.
pub(crate) fn field_methods(
    krate: &syn::Path,
    vis: &syn::Visibility,
    field: &Field<'_>,
    key: &str,
    default: Option<&DefaultAttr>,
) -> Vec<Method> {
    let getter = field.ident;
    let name = field.name();
    let setter = format_ident!("set_{}", name, span = field.ident.span());
    let remover = format_ident!("remove_{}", name, span = field.ident.span());
    let ty = field.ty;
    let read = read(krate, field, key, default);
    let value = Ident::new("value", Span::call_site());
    let serialized = Ident::new("__sessionkit_value", Span::call_site());
    let write = write(krate, field, key, default, &serialized);
    let serialize = quote_spanned!(ty.span()=> let #serialized = #krate::__private::to_value(#key, &#value)?;);
    let mut methods = vec![
        Method {
            name: getter.clone(),
            doc: format!("Reads `{key}` from the session, as [`load`](Self::load) reads it."),
            signature: quote! {
                #vis fn #getter(session: &#krate::Session) -> ::core::result::Result<#ty, #krate::SessionError>
            },
            body: read,
        },
        Method {
            doc: format!(
                "Writes `{key}`, as [`save`](Self::save) writes it: a value the session already holds is not a change."
            ),
            signature: quote! {
                #vis fn #setter(session: &#krate::Session, #value: #ty) -> ::core::result::Result<(), #krate::SessionError>
            },
            body: quote! {
                #serialize
                #write
                ::core::result::Result::Ok(())
            },
            name: setter,
        },
        Method {
            doc: format!("Removes `{key}` from the session."),
            signature: quote!(#vis fn #remover(session: &#krate::Session)),
            body: quote!(#krate::__private::remove(session, #key);),
            name: remover,
        },
    ];
    methods.extend(operations(krate, vis, field, key));
    methods
}

/// The accessors for the atomic operations a field's type allows (see
/// [`Shape`]): they record an operation the store applies to whatever it
/// holds, so concurrent requests all count.
fn operations(krate: &syn::Path, vis: &syn::Visibility, field: &Field<'_>, key: &str) -> Vec<Method> {
    let name = field.name();
    let span = field.ident.span();
    let ty = field.ty;
    match Shape::of(ty) {
        Shape::Integer => {
            let increment = format_ident!("increment_{}", name, span = span);
            let doc = format!(
                "Adds `by` to `{key}` (a missing key counts from 0, not from the field's default) and returns \
                 the new value as this request sees it. The store adds `by` to whatever it holds when it saves \
                 the session, so concurrent increments all count. A sum outside the field's type is an error \
                 and changes nothing."
            );
            vec![Method {
                doc,
                signature: quote_spanned! {ty.span()=>
                    #vis fn #increment(session: &#krate::Session, by: i64) -> ::core::result::Result<#ty, #krate::SessionError>
                },
                body: quote_spanned!(ty.span()=> #krate::__private::increment::<#ty>(session, #key, by)),
                name: increment,
            }]
        }
        Shape::List(element) => {
            let push = format_ident!("push_{}", name, span = span);
            let push_keep = format_ident!("push_{}_keep_last", name, span = span);
            let remove_first = format_ident!("remove_first_{}", name, span = span);
            let span = element.span();
            let serialize = quote_spanned!(span=> where #element: #krate::__private::serde::Serialize);
            vec![
                Method {
                    doc: format!(
                        "Appends `item` to `{key}` (a missing key starts an empty list). The store appends to \
                         whatever it holds when it saves the session, so concurrent pushes all land."
                    ),
                    signature: quote_spanned! {span=>
                        #vis fn #push(session: &#krate::Session, item: #element) -> ::core::result::Result<(), #krate::SessionError>
                        #serialize
                    },
                    body: quote_spanned! {span=>
                        #krate::__private::push(session, #key, &item, ::core::option::Option::None)
                    },
                    name: push,
                },
                Method {
                    doc: format!("Appends `item` to `{key}`, then keeps only its last `keep` elements (recent items)."),
                    signature: quote_spanned! {span=>
                        #vis fn #push_keep(
                            session: &#krate::Session,
                            item: #element,
                            keep: usize,
                        ) -> ::core::result::Result<(), #krate::SessionError>
                        #serialize
                    },
                    body: quote_spanned! {span=>
                        #krate::__private::push(session, #key, &item, ::core::option::Option::Some(keep))
                    },
                    name: push_keep,
                },
                Method {
                    doc: format!(
                        "Removes the first element of `{key}` equal to `item`; returns whether this request saw \
                         one. The store removes the first equal element of whatever it holds when it saves the \
                         session."
                    ),
                    signature: quote_spanned! {span=>
                        #vis fn #remove_first(
                            session: &#krate::Session,
                            item: &#element,
                        ) -> ::core::result::Result<bool, #krate::SessionError>
                        #serialize
                    },
                    body: quote_spanned!(span=> #krate::__private::remove_first(session, #key, item)),
                    name: remove_first,
                },
            ]
        }
        Shape::Other => Vec::new(),
    }
}

/// An expression reading one field's value from `session`, as a `Result`.
fn read(krate: &syn::Path, field: &Field<'_>, key: &str, default: Option<&DefaultAttr>) -> TokenStream {
    let ty = field.ty;
    // Spanned at the type, so an unsatisfied serde bound points at the field.
    match default {
        None => quote_spanned!(ty.span()=> #krate::__private::load::<#ty>(session, #key)),
        Some(DefaultAttr::Trait(span)) => {
            // Inferred rather than `<T as Default>`, so that a type without
            // `Default` is reported at the `default` attribute.
            let default = quote_spanned!(*span=> ::core::default::Default::default);
            quote_spanned!(ty.span()=> #krate::__private::load_or::<#ty, _>(session, #key, #default))
        }
        Some(DefaultAttr::Path(path)) => {
            quote_spanned!(ty.span()=> #krate::__private::load_or::<#ty, _>(session, #key, #path))
        }
    }
}

/// A statement writing an already serialized field value to `session`.
fn write(krate: &syn::Path, field: &Field<'_>, key: &str, default: Option<&DefaultAttr>, value: &Ident) -> TokenStream {
    let ty = field.ty;
    match default {
        None => quote_spanned!(ty.span()=> #krate::__private::store::<#ty>(session, #key, #value)?;),
        Some(DefaultAttr::Trait(span)) => {
            let default = quote_spanned!(*span=> ::core::default::Default::default);
            quote_spanned!(ty.span()=> #krate::__private::store_or::<#ty, _>(session, #key, #value, #default)?;)
        }
        Some(DefaultAttr::Path(path)) => {
            quote_spanned!(ty.span()=> #krate::__private::store_or::<#ty, _>(session, #key, #value, #path)?;)
        }
    }
}

/// The where-clause predicates of every generated impl: the struct's own,
/// plus the bounds its fields need, for field types that mention a type
/// parameter (serde's approach; a bound on a concrete type would be checked
/// anyway, and would leak private types into public bounds).
fn predicates(cont: &Container<'_>) -> Vec<TokenStream> {
    let krate = &cont.krate;
    let mut out: Vec<TokenStream> = cont
        .generics
        .where_clause
        .iter()
        .flat_map(|clause| clause.predicates.iter())
        .map(|predicate| quote!(#predicate))
        .collect();
    let params: HashSet<String> = cont.generics.type_params().map(|param| param.ident.to_string()).collect();
    if params.is_empty() {
        return out;
    }
    // One predicate per distinct type, so that fields sharing a type do
    // not repeat it (clippy's `type_repetition_in_bounds`).
    let mut needs: Vec<(String, &Type, bool, bool)> = Vec::new();
    for field in &cont.fields {
        let ty = field.ty;
        if !mentions(quote!(#ty), &params) {
            continue;
        }
        let (serde, default) = match &field.storage {
            Storage::Stored { default, .. } => (true, matches!(default, Some(DefaultAttr::Trait(_)))),
            Storage::Skipped => (false, true),
        };
        let text = quote!(#ty).to_string();
        match needs.iter_mut().find(|(known, ..)| *known == text) {
            Some(entry) => {
                entry.2 |= serde;
                entry.3 |= default;
            }
            None => needs.push((text, ty, serde, default)),
        }
    }
    for (_, ty, serde, default) in needs {
        let mut bounds = Vec::new();
        if serde {
            bounds.push(quote!(#krate::__private::serde::Serialize));
            bounds.push(quote!(#krate::__private::serde::de::DeserializeOwned));
        }
        if default {
            bounds.push(quote!(::core::default::Default));
        }
        out.push(quote_spanned!(ty.span()=> #ty: #(#bounds)+*));
    }
    out
}

fn mentions(tokens: TokenStream, params: &HashSet<String>) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => params.contains(&ident.to_string()),
        TokenTree::Group(group) => mentions(group.stream(), params),
        TokenTree::Punct(_) | TokenTree::Literal(_) => false,
    })
}

/// The axum extractor impls. The derive cannot see sessionkit's cargo
/// features, so it hands the pieces to a sessionkit macro that expands to
/// the impls with the `axum` feature and to nothing without it.
pub(crate) fn extractor(cont: &Container<'_>, predicates: &[TokenStream]) -> TokenStream {
    let krate = &cont.krate;
    let ident = cont.ident;
    let state = Ident::new("__SessionkitState", Span::call_site());
    let mut generics = cont.generics.clone();
    generics.params.push(GenericParam::Type(TypeParam::from(state.clone())));
    let (impl_generics, _, _) = generics.split_for_impl();
    let (_, ty_generics, _) = cont.generics.split_for_impl();
    let self_ty: Type = Type::Verbatim(quote!(#ident #ty_generics));
    quote! {
        #krate::__impl_session_data_extractor! {
            impl [#impl_generics] for [#self_ty] where [#(#predicates,)*] state [#state]
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use syn::DeriveInput;

    use crate::ast::Container;

    fn expand_str(source: &str) -> Result<String, String> {
        let input: DeriveInput = syn::parse_str(source).map_err(|err| err.to_string())?;
        match Container::from_input(&input) {
            Ok(container) => Ok(super::expand(&container).to_string()),
            // Through the fallback, so that `never_panics` covers it too.
            Err(invalid) => Err(crate::fallback::expand(invalid).to_string()),
        }
    }

    #[test]
    fn a_custom_crate_path_replaces_sessionkit_everywhere() {
        let out = expand_str(
            r#"#[session(crate = "my::reexport")] struct S<T> { #[session(default)] a: T, #[session(skip)] b: u8 }"#,
        )
        .expect("valid");
        assert!(out.contains("my :: reexport :: SessionData"), "{out}");
        assert!(out.contains("my :: reexport :: __impl_session_data_extractor !"), "{out}");
        assert!(!out.contains("sessionkit ::"), "{out}");
    }

    #[test]
    fn generic_field_types_get_bounds_and_others_do_not() {
        let out = expand_str(
            "struct S<T, U> where U: Copy { a: Vec<T>, #[session(default)] b: U, c: String, #[session(skip)] d: Option<T> }",
        )
        .expect("valid");
        let serde = ":: sessionkit :: __private :: serde :: Serialize + :: sessionkit :: __private :: serde :: de :: DeserializeOwned";
        assert!(out.contains(&format!("Vec < T > : {serde}")), "{out}");
        assert!(out.contains(&format!("U : {serde} + :: core :: default :: Default")), "{out}");
        assert!(out.contains("Option < T > : :: core :: default :: Default"), "{out}");
        assert!(!out.contains("String :"), "a concrete type needs no bound: {out}");
        assert!(out.contains("U : Copy"), "the struct's own where clause is kept: {out}");
    }

    #[test]
    fn only_absolute_paths_are_generated() {
        // The field types mention none of the checked names, so every
        // occurrence is the macro's own and must follow `::`.
        let out =
            expand_str("struct S<T> { a: u8, #[session(default)] b: T, #[session(skip)] c: u16 }").expect("valid");
        for name in ["Result", "Option", "Ok", "Default", "Session", "SessionError", "SessionData", "serde"] {
            for (index, _) in out.match_indices(&format!(" {name} ")) {
                assert!(out[..index].ends_with("::"), "relative `{name}` at {index}: {out}");
            }
        }
    }

    /// Atoms of `#[session(...)]` contents, valid and not.
    const ATOMS: &[&str] = &[
        "prefix",
        "rename_all",
        "crate",
        "rename",
        "default",
        "skip",
        "bogus",
        "=",
        "=",
        ",",
        ",",
        "\"x\"",
        "\"\"",
        "\"camelCase\"",
        "\"::a::b\"",
        "\"a b\"",
        "\"kebab-case\"",
        "1",
        "true",
        "path::to",
        "()",
        "(skip)",
        "(= \"x\")",
        "-",
    ];
    const FIELDS: &[&str] = &["a", "b", "load", "set_a", "remove_b", "KEYS", "r#type", "save", "clear"];

    fn attribute() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(ATOMS), 0..6).prop_map(|atoms| atoms.join(" "))
    }

    proptest! {
        /// Whatever the attributes and field names, the derive answers with
        /// code or with compile errors, never with a panic.
        #[test]
        fn never_panics(
            container in prop::collection::vec(attribute(), 0..3),
            fields in prop::collection::vec((prop::sample::select(FIELDS), prop::collection::vec(attribute(), 0..3)), 0..5),
            shape in 0..4u8,
        ) {
            let attrs = |list: &[String]| list.iter().map(|attr| format!("#[session({attr})]")).collect::<String>();
            let body = fields
                .iter()
                .map(|(name, list)| format!("{} {name}: u8,", attrs(list)))
                .collect::<String>();
            let source = match shape {
                0 => format!("{} struct S<T> {{ {body} }}", attrs(&container)),
                1 => format!("{} struct S(u8);", attrs(&container)),
                2 => format!("{} enum S {{ A }}", attrs(&container)),
                _ => format!("{} struct S;", attrs(&container)),
            };
            let _ = expand_str(&source);
        }
    }
}
