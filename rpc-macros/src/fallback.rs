//! What is emitted when the trait cannot be expanded: the user's trait as
//! written, plus the errors.
//!
//! Keeping the trait means one mistake yields its own errors only, not a
//! cascade of "cannot find trait `Calculator`" everywhere it is used, and
//! IDEs keep completing its methods meanwhile.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{ItemTrait, TraitItem};

use crate::parse::is_rpc_attr;

/// `item` without our `#[rpc(..)]` attributes (nothing else would accept
/// them), followed by `compile_error!`s.
pub(crate) fn trait_with_errors(item: &ItemTrait, errors: syn::Error) -> TokenStream {
    let mut item = item.clone();
    for trait_item in &mut item.items {
        if let TraitItem::Fn(method) = trait_item {
            method.attrs.retain(|attr| !is_rpc_attr(attr));
        }
    }
    let errors = errors.into_compile_error();
    quote! {
        #item
        #errors
    }
}
