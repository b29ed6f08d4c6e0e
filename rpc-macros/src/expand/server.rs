//! `CalculatorServer<S>`: wraps an implementation of the trait and
//! implements core's `Service`: method name -> decode the args struct ->
//! call -> encode the reply; an unknown name gets a `NoSuchMethod` reply.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;

use crate::model::{Method, Service};

/// The server struct, its constructors and its `Service` impl.
pub(super) fn server(service: &Service<'_>) -> TokenStream {
    let private = service.private();
    let vis = service.vis();
    let trait_ident = service.ident();
    let ident = service.server_ident();
    let descriptor = service.descriptor_ident();
    let doc = format!(
        "Serves an implementation of [`{}`]: dispatches each request to the\n\
         method it names. Run it with `Server::builder(transport).serve(..)`.",
        trait_ident.unraw()
    );
    let doc = super::doc(&doc);
    let arms = service
        .methods
        .iter()
        .map(|method| dispatch_arm(service, method));
    quote! {
        #doc
        #vis struct #ident<S> {
            service: S,
        }

        impl<S: #trait_ident> #ident<S> {
            /// Serves `service`.
            #vis fn new(service: S) -> Self {
                #ident { service }
            }

            /// The served implementation, back.
            #vis fn into_inner(self) -> S {
                self.service
            }

            /// The served implementation.
            #vis fn get_ref(&self) -> &S {
                &self.service
            }
        }

        #[automatically_derived]
        impl<S: #trait_ident> #private::Service for #ident<S> {
            fn descriptor(&self) -> &'static #private::ServiceDescriptor {
                &#descriptor
            }

            async fn call(&self, __request: &#private::Request) -> #private::Response {
                match __request.method() {
                    #(#arms)*
                    _ => __request.no_such_method(),
                }
            }
        }
    }
}

/// `"add" => __request.respond(|__args: CalculatorAddArgs| ..).await,`
fn dispatch_arm(service: &Service<'_>, method: &Method<'_>) -> TokenStream {
    let trait_ident = service.ident();
    let wire_name = &method.wire_name;
    let ident = method.ident();
    let args_ident = &method.args_ident;
    let fields = method.args.iter().map(|arg| arg.name());
    // Spanned on the return type, so "`Report: Serialize` is not
    // satisfied" points there rather than at `#[rpc_service]`.
    // Fully qualified, so an inherent method of `S` with the same name
    // cannot be picked instead.
    let respond = quote_spanned! {method.output_span()=>
        __request
            .respond(|__args: #args_ident| {
                <S as #trait_ident>::#ident(&self.service, #(__args.#fields),*)
            })
            .await
    };
    quote!(#wire_name => #respond,)
}
