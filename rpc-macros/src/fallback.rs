//! What is emitted when the trait cannot be expanded: the user's trait,
//! plus the errors.
//!
//! Keeping the trait means one mistake yields its own errors only, not a
//! cascade of "cannot find trait `Calculator`" everywhere it is used, and
//! IDEs keep completing its methods meanwhile. The trait is emitted as
//! written except where rustc would report, a second time, a problem the
//! checks already reported.

use std::collections::HashSet;

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;
use syn::{FnArg, ItemTrait, Pat, PatWild, TraitItem};

use crate::model::plain_name;
use crate::parse::is_rpc_attr;

/// `item`, minus what rustc would reject again, followed by `compile_error!`s.
///
/// - `#[rpc(..)]` attributes go: nothing but this macro accepts them.
/// - A method whose name is taken goes: check reported it as a duplicate.
/// - `const` on methods goes: check reported it, and rustc rejects it in
///   traits twice over.
/// - Argument patterns in methods without a body become `_`: check
///   reported them, and rustc rejects them there.
pub(crate) fn trait_with_errors(item: &ItemTrait, errors: syn::Error) -> TokenStream {
    let mut item = item.clone();
    let mut names = HashSet::new();
    item.items.retain(|trait_item| match trait_item {
        TraitItem::Fn(method) => names.insert(method.sig.ident.unraw()),
        _ => true,
    });
    for trait_item in &mut item.items {
        let TraitItem::Fn(method) = trait_item else {
            continue;
        };
        method.attrs.retain(|attr| !is_rpc_attr(attr));
        method.sig.constness = None;
        if method.default.is_some() {
            continue;
        }
        for input in &mut method.sig.inputs {
            if let FnArg::Typed(arg) = input
                && plain_name(&arg.pat).is_none()
            {
                *arg.pat = Pat::Wild(PatWild {
                    attrs: Vec::new(),
                    underscore_token: Default::default(),
                });
            }
        }
    }
    let errors = errors.into_compile_error();
    quote! {
        #item
        #errors
    }
}
