//! `CalculatorClient<T>`: one method per trait method over core's untyped
//! `Client<T>`, returning a future of `Result<R, RpcError>`.
//!
//! The methods return the core client's future itself rather than being
//! `async fn`s awaiting it: a wrapping `async fn` is one more layer of
//! future, copied whole when first awaited, on every call. Like an `async
//! fn`, the future does nothing until polled.
//!
//! A method returning `Result<T, E>` gets `Result<Result<T, E>, RpcError>`:
//! flattening would force every `E` to be `From<RpcError>`, and would
//! blur "the call failed" with "the call ran and said no".

use proc_macro2::TokenStream;
use quote::quote;
use syn::Ident;
use syn::ext::IdentExt;

use crate::model::{Method, Service};

/// The client struct, its `Clone`/`Debug` impls and its methods.
pub(super) fn client(service: &Service<'_>) -> TokenStream {
    let private = service.private();
    let vis = service.vis();
    let ident = service.client_ident();
    let t = service.transport_param();
    let doc = format!(
        "Typed client of the [`{trait_ident}`] service (wire name `{wire}`).\n\n\
         Each method makes one call. It fails with `RpcError` when the call\n\
         itself fails: timeout, nobody serving, decode error, handler panic.\n\
         Cheap to clone; clones share one reply inbox. The transport\n\
         defaults to `DynTransport`, for fields that should not name one.",
        trait_ident = service.ident().unraw(),
        wire = service.wire_name,
    );
    let doc = super::doc(&doc);
    let name = ident.to_string();
    let methods = service
        .methods
        .iter()
        .map(|method| client_method(service, method));
    quote! {
        #doc
        #vis struct #ident<#t: #private::Transport = #private::DynTransport> {
            client: #private::Client<#t>,
        }

        #[automatically_derived]
        impl<#t: #private::Transport> ::core::clone::Clone for #ident<#t> {
            fn clone(&self) -> Self {
                #ident {
                    client: ::core::clone::Clone::clone(&self.client),
                }
            }
        }

        #[automatically_derived]
        impl<#t: #private::Transport> ::core::fmt::Debug for #ident<#t> {
            fn fmt(&self, __f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                __f.debug_struct(#name).field("client", &self.client).finish()
            }
        }

        // Client methods mirror the trait's signatures: their arity is the
        // user's choice, made (and linted) on the trait.
        #[allow(clippy::too_many_arguments)]
        impl<#t: #private::Transport> #ident<#t> {
            /// A client sending through `transport`, with the default
            /// configuration (30 s deadline, bincode).
            #vis fn new(transport: #t) -> Self {
                Self::from_client(#private::Client::new(transport))
            }

            /// A typed face over an untyped client, sharing its reply inbox,
            /// in-flight limit and per-call options.
            #vis fn from_client(client: #private::Client<#t>) -> Self {
                #ident { client }
            }

            /// The untyped client underneath.
            #vis fn client(&self) -> &#private::Client<#t> {
                &self.client
            }

            /// A clone whose calls get `timeout` as their deadline.
            #vis fn with_timeout(&self, timeout: #private::Duration) -> Self {
                Self::from_client(self.client.with_timeout(timeout))
            }

            /// A clone whose calls carry `key = value` in their metadata.
            #vis fn with_metadata(
                &self,
                key: impl ::core::convert::Into<::std::string::String>,
                value: impl ::core::convert::Into<::std::string::String>,
            ) -> Self {
                Self::from_client(self.client.with_metadata(key, value))
            }

            #(#methods)*
        }
    }
}

fn client_method(service: &Service<'_>, method: &Method<'_>) -> TokenStream {
    let private = service.private();
    let vis = service.vis();
    let descriptor = service.descriptor_ident();
    let ident = method.ident();
    let wire_name = &method.wire_name;
    let args_ident = &method.args_ident;
    let names: Vec<_> = method.args.iter().map(|arg| arg.name()).collect();
    let types = method.args.iter().map(|arg| arg.ty);
    let mut docs: Vec<TokenStream> = method.doc_attrs().map(|attr| quote!(#attr)).collect();
    if docs.is_empty() {
        let doc = format!(
            "Calls [`{}::{}`] on the service.",
            service.ident().unraw(),
            ident.unraw()
        );
        let doc = super::doc(&doc);
        docs.push(doc);
    }
    let args = quote!(#args_ident { #(#names),* });
    // "`Report: DeserializeOwned` is not satisfied" points at the return type.
    let call = Ident::new("call", method.output_span());
    let (output, body) = if method.attrs.oneway {
        (
            quote!(()),
            quote!(self.client.notify(#descriptor.name, #wire_name, #args)),
        )
    } else {
        let output = match method.output {
            Some(ty) => quote!(#ty),
            None => quote!(()),
        };
        (
            output,
            quote!(self.client.#call(#descriptor.name, #wire_name, #args)),
        )
    };
    quote! {
        #(#docs)*
        #vis fn #ident(&self, #(#names: #types),*)
            -> impl #private::Future<Output = #private::Result<#output, #private::RpcError>> + '_
        {
            #body
        }
    }
}
