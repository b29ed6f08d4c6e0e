//! One struct per method carrying its arguments, with named fields so a
//! JSON body reads `{"a":1,"b":2}`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;

use crate::model::{Method, Service};

/// `CalculatorAddArgs { a: i64, b: i64 }`, serde-derived through rpc-core's
/// serde so users need not depend on serde themselves.
pub(super) fn args_struct(service: &Service<'_>, method: &Method<'_>) -> TokenStream {
    let private = service.private();
    let serde_crate = service.serde_crate();
    let vis = service.vis();
    let ident = &method.args_ident;
    let doc = format!(
        "Arguments of [`{}::{}`] on the wire.",
        service.ident().unraw(),
        method.ident().unraw()
    );
    let doc = super::doc(&doc);
    let fields = method.args.iter().map(|arg| {
        let name = arg.name();
        let ty = arg.ty;
        let doc = format!("The `{}` argument.", name.unraw());
        let doc = super::doc(&doc);
        quote! {
            #doc
            #vis #name: #ty
        }
    });
    quote! {
        #doc
        #[derive(#private::Serialize, #private::Deserialize)]
        #[serde(crate = #serde_crate)]
        #vis struct #ident {
            #(#fields,)*
        }
    }
}
