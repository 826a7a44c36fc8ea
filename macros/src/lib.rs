//! `#[function]`: one declaration makes a user function. Put it on the impl of one of
//! eggroll-core's function traits; it keeps the impl, implements `Function` (the name and the
//! kind) and registers the function, so no function can be used without being registered.
//! Use it through its re-export, `eggroll_core::function`, which documents it.

use proc_macro::TokenStream;
use proc_macro2::{Ident, TokenStream as TokenStream2};
use quote::quote;
use syn::{
    parse_macro_input, parse_quote, spanned::Spanned, Error, Expr, FnArg, GenericArgument,
    ImplItem, ImplItemFn, ItemImpl, PathArguments, ReturnType, Type, TypeParamBound,
};

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
/// the impl, fills in the trait's types that the method's signature gives (`type K`, `type V`,
/// ... may be left out), implements `Function` with that kind and the name `module_path::Type`
/// (or the one of `#[function(name = "...")]`), and registers the function. Examples:
/// `eggroll_core::functions`.
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

fn expand(name: Option<Expr>, mut imp: ItemImpl) -> syn::Result<TokenStream2> {
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
    let kind = kind.clone();
    infer_types(&kind.to_string(), &mut imp);
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

/// Adds the trait's associated types that the impl leaves out, read off the signature of its
/// method: `fn map(&self, k: String, v: ()) -> (Point, String)` gives `K`, `V`, `K2` and `V2`.
/// A type the signature does not spell out (it names `Self::V`, or the method is missing) is
/// left for the compiler to ask for.
fn infer_types(kind: &str, imp: &mut ItemImpl) {
    let method = match kind {
        "MapValues" => "map_values",
        "Map" => "map",
        "FlatMap" => "flat_map",
        "Filter" => "filter",
        "MapPartitions" => "map_partitions",
        "CollapsePartitions" => "collapse",
        "Reduce" => "reduce",
        "Join" => "join",
        _ => "seq_op",
    };
    let Some(f) = imp.items.iter().find_map(|i| match i {
        ImplItem::Fn(f) if f.sig.ident == method => Some(f),
        _ => None,
    }) else {
        return;
    };
    let arg = |i: usize| arg(f, i);
    let ret = match &f.sig.output {
        ReturnType::Default => Some(parse_quote!(())),
        ReturnType::Type(_, t) => Some((**t).clone()),
    };
    let pair = |t: Option<Type>, i: usize| t.and_then(|t| tuple_item(&t, i));
    let types: Vec<(&str, Option<Type>)> = match kind {
        "MapValues" => vec![("V", arg(0)), ("Out", ret)],
        "Map" => vec![
            ("K", arg(0)),
            ("V", arg(1)),
            ("K2", pair(ret.clone(), 0)),
            ("V2", pair(ret, 1)),
        ],
        "FlatMap" => {
            let item = ret.and_then(|t| type_argument(&t, "Vec"));
            vec![
                ("K", arg(0)),
                ("V", arg(1)),
                ("K2", pair(item.clone(), 0)),
                ("V2", pair(item, 1)),
            ]
        }
        "Filter" => vec![("K", arg(0).map(referent)), ("V", arg(1).map(referent))],
        "MapPartitions" => {
            let items = arg(1).and_then(|t| iterator_item(&t));
            let emit = arg(2).and_then(|t| fn_mut_inputs(&t));
            let out = |i: usize| emit.as_ref().and_then(|e| e.get(i).cloned());
            vec![
                ("K", pair(items.clone(), 0)),
                ("V", pair(items, 1)),
                ("K2", out(0)),
                ("V2", out(1)),
            ]
        }
        "CollapsePartitions" => {
            let items = arg(0).and_then(|t| iterator_item(&t));
            vec![
                ("K", pair(items.clone(), 0)),
                ("V", pair(items, 1)),
                ("Out", ret),
            ]
        }
        "Reduce" => vec![("V", arg(0))],
        "Join" => vec![("V", arg(0)), ("W", arg(1)), ("Out", ret)],
        _ => vec![("Acc", arg(0)), ("V", arg(1))],
    };
    let declared: Vec<String> = imp
        .items
        .iter()
        .filter_map(|i| match i {
            ImplItem::Type(t) => Some(t.ident.to_string()),
            _ => None,
        })
        .collect();
    for (name, ty) in types {
        let Some(ty) = ty.filter(|t| !names_self(t)) else {
            continue;
        };
        if !declared.iter().any(|d| d == name) {
            let ident = Ident::new(name, proc_macro2::Span::call_site());
            imp.items.push(parse_quote!(type #ident = #ty;));
        }
    }
}

/// The type of the method's `i`-th argument after `self`.
fn arg(f: &ImplItemFn, i: usize) -> Option<Type> {
    f.sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(p) => Some((*p.ty).clone()),
            FnArg::Receiver(_) => None,
        })
        .nth(i)
}

/// `T` of `&T`.
fn referent(t: Type) -> Type {
    match t {
        Type::Reference(r) => *r.elem,
        t => t,
    }
}

/// The `i`-th item of a pair type `(A, B)`.
fn tuple_item(t: &Type, i: usize) -> Option<Type> {
    match t {
        Type::Tuple(t) if t.elems.len() == 2 => t.elems.iter().nth(i).cloned(),
        Type::Paren(p) => tuple_item(&p.elem, i),
        _ => None,
    }
}

/// `T` of `Name<T>`.
fn type_argument(t: &Type, name: &str) -> Option<Type> {
    let Type::Path(p) = t else { return None };
    let last = p.path.segments.last()?;
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    if last.ident != name {
        return None;
    }
    args.args.iter().find_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    })
}

/// The trait bound named `name` of `&mut dyn Name<...>`.
fn trait_bound<'a>(t: &'a Type, name: &str) -> Option<&'a syn::PathSegment> {
    let Type::TraitObject(o) = referent_ref(t) else {
        return None;
    };
    o.bounds.iter().find_map(|b| match b {
        TypeParamBound::Trait(b) => b.path.segments.last().filter(|s| s.ident == name),
        _ => None,
    })
}

/// `T` of `&T` or `&mut T`, borrowed.
fn referent_ref(t: &Type) -> &Type {
    match t {
        Type::Reference(r) => &r.elem,
        t => t,
    }
}

/// `I` of `&mut dyn Iterator<Item = I>`.
fn iterator_item(t: &Type) -> Option<Type> {
    let PathArguments::AngleBracketed(args) = &trait_bound(t, "Iterator")?.arguments else {
        return None;
    };
    args.args.iter().find_map(|a| match a {
        GenericArgument::AssocType(a) if a.ident == "Item" => Some(a.ty.clone()),
        _ => None,
    })
}

/// `[A, B]` of `&mut dyn FnMut(A, B)`.
fn fn_mut_inputs(t: &Type) -> Option<Vec<Type>> {
    match &trait_bound(t, "FnMut")?.arguments {
        PathArguments::Parenthesized(p) => Some(p.inputs.iter().cloned().collect()),
        _ => None,
    }
}

/// Whether the type names `Self` (`Self::V`): it cannot define the type it refers to.
fn names_self(t: &Type) -> bool {
    fn walk(ts: TokenStream2) -> bool {
        ts.into_iter().any(|tt| match tt {
            proc_macro2::TokenTree::Ident(i) => i == "Self",
            proc_macro2::TokenTree::Group(g) => walk(g.stream()),
            _ => false,
        })
    }
    walk(quote!(#t))
}
