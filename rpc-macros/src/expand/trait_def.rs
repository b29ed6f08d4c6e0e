//! The user's trait, made servable: `Send + Sync + 'static`, and every
//! `async fn` declared as returning a `Send` future.

use proc_macro2::TokenStream;
use quote::quote;

use crate::model::{Method, Service};

/// The trait, rewritten. Implementors still write `async fn`.
///
/// `async fn` in a trait gives futures of unknown `Send`ness; the server
/// runs handlers on a multi-threaded runtime, so each method is declared
/// as `fn .. -> impl Future<Output = R> + Send` instead (no boxing).
pub(super) fn trait_def(service: &Service<'_>) -> TokenStream {
    let item = service.item;
    let attrs = &item.attrs;
    let vis = &item.vis;
    let trait_token = &item.trait_token;
    let ident = &item.ident;
    let supertraits = &item.supertraits;
    let plus = (!supertraits.is_empty() && !supertraits.trailing_punct()).then(|| quote!(+));
    let methods = service.methods.iter().map(method_decl);
    quote! {
        #(#attrs)*
        #vis #trait_token #ident:
            #supertraits #plus ::core::marker::Send + ::core::marker::Sync + 'static
        {
            #(#methods)*
        }
    }
}

fn method_decl(method: &Method<'_>) -> TokenStream {
    let attrs = method.user_attrs();
    let sig = method.sig();
    let fn_token = &sig.fn_token;
    let ident = &sig.ident;
    let inputs = &sig.inputs;
    let output = match method.output {
        Some(ty) => quote!(#ty),
        None => quote!(()),
    };
    quote! {
        #(#attrs)*
        #fn_token #ident(#inputs)
            -> impl ::core::future::Future<Output = #output> + ::core::marker::Send;
    }
}
