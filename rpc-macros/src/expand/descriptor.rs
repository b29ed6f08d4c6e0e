//! The static description of the service: what the server dispatches by
//! (delivery mode) and what tools introspect.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;

use crate::model::{Method, Service};

/// `pub static CALCULATOR_DESCRIPTOR: ServiceDescriptor = ..`.
pub(super) fn descriptor(service: &Service<'_>) -> TokenStream {
    let private = service.private();
    let vis = service.vis();
    let ident = service.descriptor_ident();
    let doc = format!(
        "Wire name, version and methods of the [`{}`] service.",
        service.ident().unraw()
    );
    let doc = super::doc(&doc);
    let name = &service.wire_name;
    let docs = &service.docs;
    let methods = service
        .methods
        .iter()
        .map(|method| method_descriptor(service, method));
    quote! {
        #doc
        #vis static #ident: #private::ServiceDescriptor = #private::ServiceDescriptor {
            name: #name,
            // Expands in the user's crate, so this is the version of the
            // crate that defines the trait.
            version: ::core::env!("CARGO_PKG_VERSION"),
            docs: #docs,
            methods: &[#(#methods),*],
        };
    }
}

fn method_descriptor(service: &Service<'_>, method: &Method<'_>) -> TokenStream {
    let private = service.private();
    let name = &method.wire_name;
    let kind = if method.attrs.oneway {
        quote!(#private::MethodKind::Oneway)
    } else {
        quote!(#private::MethodKind::Call)
    };
    let delivery = if method.attrs.at_most_once {
        quote!(#private::DeliveryMode::AtMostOnce)
    } else {
        quote!(#private::DeliveryMode::AtLeastOnce)
    };
    let run_to_completion = method.attrs.run_to_completion;
    let signature = &method.signature;
    let docs = &method.docs;
    quote! {
        #private::MethodDescriptor {
            name: #name,
            kind: #kind,
            delivery: #delivery,
            run_to_completion: #run_to_completion,
            signature: #signature,
            docs: #docs,
        }
    }
}
