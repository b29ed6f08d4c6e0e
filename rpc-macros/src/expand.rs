//! Stage 4: code generation, one generator per item, in a fixed order.
//!
//! Generators read only the [model](crate::model) and name everything
//! through absolute paths (`<crate>::__private::..`, `::core::..`), so the
//! output compiles whatever the user has in scope.

mod args;
mod client;
mod descriptor;
mod server;
mod trait_def;

use proc_macro2::TokenStream;
use quote::quote;

use crate::model::Service;

/// Everything `#[rpc_service]` emits for a checked service.
pub(crate) fn service(service: &Service<'_>) -> TokenStream {
    let trait_def = trait_def::trait_def(service);
    let args_structs = service
        .methods
        .iter()
        .map(|method| args::args_struct(service, method));
    let descriptor = descriptor::descriptor(service);
    let client = client::client(service);
    let server = server::server(service);
    quote! {
        #trait_def
        #(#args_structs)*
        #descriptor
        #client
        #server
    }
}

/// `#[doc = " line"]` per line of `text`, spaced as `///` comments are, so
/// that rustdoc and `cargo expand` show generated docs like written ones.
fn doc(text: &str) -> TokenStream {
    let lines = text.lines().map(|line| {
        let line = if line.is_empty() {
            String::new()
        } else {
            format!(" {line}")
        };
        quote!(#[doc = #line])
    });
    quote!(#(#lines)*)
}
