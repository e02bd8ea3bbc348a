//! What the derive emits beside its errors: the trait impl and the inherent
//! items it would have generated, with bodies that never run because the
//! build already failed (thiserror-impl does the same for `Error`).
//!
//! Without them a user's one mistake in an attribute would be reported again
//! at every use of the struct ("no function `load`", "`SessionData` is not
//! implemented"). The signatures come from the same code as the real
//! expansion's, for every field that could be read, so calls to them type
//! check as they will once the mistake is fixed.

use std::collections::HashSet;

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;

use crate::ast::{Container, Invalid, RESERVED};
use crate::expand::{Method, extractor, field_methods};

/// The errors, and the items the real expansion would define.
pub(crate) fn expand(invalid: Invalid<'_>) -> TokenStream {
    let error = invalid.error.to_compile_error();
    let Some(cont) = invalid.partial else {
        // A rejected `crate` attribute: any path guessed here could add an
        // error of its own, so the user gets only theirs.
        return error;
    };
    let items = items(&cont);
    quote! {
        #error
        #items
    }
}

fn items(cont: &Container<'_>) -> TokenStream {
    let krate = &cont.krate;
    let ident = cont.ident;
    let vis = cont.vis;
    let (impl_generics, ty_generics, where_clause) = cont.generics.split_for_impl();
    // Only the struct's own predicates: the bodies need no field bounds.
    let predicates: Vec<TokenStream> =
        where_clause.iter().flat_map(|clause| clause.predicates.iter()).map(|predicate| quote!(#predicate)).collect();

    // Fields that clash (an error already reported) would define a name
    // twice, which is one more error: the first claimant keeps it, and the
    // struct-level items keep theirs.
    let mut taken: HashSet<String> = RESERVED.iter().map(|name| (*name).to_owned()).collect();
    let accessors = cont
        .stored()
        .flat_map(|(field, key, default)| field_methods(krate, vis, field, key, default))
        .filter(|method| taken.insert(method.name.unraw().to_string()))
        .map(|Method { signature, .. }| {
            quote! {
                #signature {
                    ::core::unreachable!()
                }
            }
        });
    let extractor = extractor(cont, &predicates);

    quote! {
        #[automatically_derived]
        #[allow(unused_variables)]
        impl #impl_generics #krate::SessionData for #ident #ty_generics #where_clause {
            const KEYS: &'static [&'static str] = &[];

            fn load(session: &#krate::Session) -> ::core::result::Result<Self, #krate::SessionError> {
                ::core::unreachable!()
            }

            fn save(&self, session: &#krate::Session) -> ::core::result::Result<(), #krate::SessionError> {
                ::core::unreachable!()
            }

            fn clear(session: &#krate::Session) {
                ::core::unreachable!()
            }
        }

        #[allow(dead_code, unused_variables, missing_docs)]
        impl #impl_generics #ident #ty_generics #where_clause {
            #vis const KEYS: &'static [&'static str] = &[];

            #vis fn load(session: &#krate::Session) -> ::core::result::Result<Self, #krate::SessionError> {
                ::core::unreachable!()
            }

            #vis fn save(&self, session: &#krate::Session) -> ::core::result::Result<(), #krate::SessionError> {
                ::core::unreachable!()
            }

            #vis fn clear(session: &#krate::Session) {
                ::core::unreachable!()
            }

            #(#accessors)*
        }

        #extractor
    }
}

#[cfg(test)]
mod tests {
    use syn::DeriveInput;

    use crate::ast::Container;

    fn fallback(source: &str) -> String {
        let input: DeriveInput = syn::parse_str(source).expect("parses");
        match Container::from_input(&input) {
            Ok(_) => panic!("expected an error"),
            Err(invalid) => super::expand(invalid).to_string(),
        }
    }

    #[test]
    fn the_errors_come_with_the_trait_impl_and_the_accessors_of_readable_fields() {
        let out = fallback(r#"#[session(prefx = "a.")] struct S { #[session(colour)] n: u32, list: Vec<String> }"#);
        assert!(out.contains("compile_error"), "{out}");
        assert!(out.contains(":: sessionkit :: SessionData for S"), "{out}");
        for name in ["n", "set_n", "remove_n", "increment_n", "push_list", "push_list_keep_last", "remove_first_list"] {
            assert!(out.contains(&format!("fn {name} (")), "`{name}` missing: {out}");
        }
        assert!(out.contains(":: core :: unreachable !"), "{out}");
        assert!(!out.contains("__private :: load"), "no real body in a fallback: {out}");
    }

    #[test]
    fn clashing_names_are_declared_once() {
        let out = fallback("struct S { load: u8, x: u8, set_x: u8 }");
        // `load` once in the trait impl and once as the inherent function.
        assert_eq!(out.matches("fn load (").count(), 2, "{out}");
        assert_eq!(out.matches("fn set_x (").count(), 1, "{out}");
        assert_eq!(out.matches("fn remove_set_x (").count(), 1, "{out}");
    }

    #[test]
    fn a_rejected_crate_path_gives_only_the_errors() {
        let out = fallback(r#"#[session(crate = "not a path")] struct S { a: u8 }"#);
        assert!(out.contains("compile_error"), "{out}");
        assert!(!out.contains("impl"), "{out}");
        let out = fallback(r#"#[session(crate = )] struct S { a: u8 }"#);
        assert!(!out.contains("impl"), "a syntax error in `crate` is a rejection too: {out}");
    }

    #[test]
    fn a_custom_crate_path_is_kept() {
        let out = fallback(r#"#[session(crate = "my::reexport", prefx = "a")] struct S { a: u8 }"#);
        assert!(out.contains("my :: reexport :: SessionData for S"), "{out}");
        assert!(!out.contains("sessionkit ::"), "{out}");
    }
}
