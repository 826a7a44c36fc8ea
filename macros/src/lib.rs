//! `#[function]`: one declaration makes a user function. Put it on the impl of one of
//! eggroll-core's function traits; it keeps the impl, implements `Function` (the name and the
//! kind) and registers the function, so no function can be used without being registered.
//! Use it through its re-export, `eggroll_core::function`, which documents it.

use proc_macro::TokenStream;
use proc_macro2::{Ident, TokenStream as TokenStream2};
use quote::quote;
use syn::{parse_macro_input, spanned::Spanned, Error, Expr, ItemImpl, Type};

/// The traits a function may implement; each names its adapter, `erase::<Trait>`, in
/// eggroll-core.
const KINDS: [&str; 9] = [
    "MapValues",
    "Map",
    "FlatMap",
    "Filter",
    "MapPartitions",
    "CollapsePartitions",
    "Reduce",
    "Join",
    "SeqOp",
];

/// Declares a user function on the impl of its trait (`MapValues`, `Map`, `Reduce`, ...): keeps
/// the impl, implements `Function` with that kind and the name `module_path::Type` (or the one of
/// `#[function(name = "...")]`), and registers the function. Examples: `eggroll_core::functions`.
#[proc_macro_attribute]
pub fn function(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut name: Option<Expr> = None;
    let args = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            name = Some(meta.value()?.parse()?);
            Ok(())
        } else {
            Err(meta.error("#[function] takes one optional argument: `name = \"...\"`"))
        }
    });
    parse_macro_input!(attr with args);
    let imp = parse_macro_input!(item as ItemImpl);
    expand(name, imp)
        .unwrap_or_else(Error::into_compile_error)
        .into()
}

fn expand(name: Option<Expr>, imp: ItemImpl) -> syn::Result<TokenStream2> {
    let accepted = KINDS.join(", ");
    let Some((None, path, _)) = &imp.trait_ else {
        return Err(Error::new(
            imp.self_ty.span(),
            format!("#[function] goes on an impl of one of eggroll_core::functions' traits ({accepted})"),
        ));
    };
    let kind: &Ident = match path.segments.last() {
        Some(last) if KINDS.contains(&last.ident.to_string().as_str()) => &last.ident,
        _ => {
            return Err(Error::new_spanned(
                path,
                format!("#[function] accepts impls of {accepted}, not of this trait"),
            ))
        }
    };
    if !imp.generics.params.is_empty() || imp.generics.where_clause.is_some() {
        return Err(Error::new_spanned(
            &imp.generics,
            "a function cannot be generic: it is registered under one name, so declare one \
             concrete type per function",
        ));
    }
    let ty = &imp.self_ty;
    let name = match name {
        Some(name) => quote!(#name),
        None => {
            let ident = type_ident(ty)?;
            quote!(::core::concat!(
                ::core::module_path!(),
                "::",
                ::core::stringify!(#ident)
            ))
        }
    };
    let fns = quote!(::eggroll_core::functions);
    Ok(quote! {
        #imp

        impl #fns::Function for #ty {
            const NAME: &'static str = #name;
            type Kind = #fns::erase::#kind;
        }

        #fns::inventory::submit! {
            #fns::Registration {
                name: <#ty as #fns::Function>::NAME,
                kind: <#fns::erase::#kind as #fns::erase::Kind>::KIND,
                build: #fns::erase::#kind::build::<#ty>,
            }
        }
    })
}

/// The type's own name, for the default function name; a type with arguments needs `name`.
fn type_ident(ty: &Type) -> syn::Result<&Ident> {
    if let Type::Path(p) = ty {
        if p.qself.is_none() {
            if let Some(last) = p.path.segments.last() {
                if last.arguments.is_empty() {
                    return Ok(&last.ident);
                }
            }
        }
    }
    Err(Error::new_spanned(
        ty,
        "#[function] names a function after its type; for this type give the name: \
         #[function(name = \"my_crate::MyFn\")]",
    ))
}
