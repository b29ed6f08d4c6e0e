//! Stage 2: the service as the generators see it.
//!
//! Built from the parsed trait without judging it (that is
//! [`check`](crate::check)'s job), so that every shape problem can be
//! reported at once. Every part keeps a reference to the user's tokens:
//! generated code and error messages carry their spans.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, Ident, ItemTrait, Pat, Path, Receiver, ReturnType, Signature, TraitItem,
    TraitItemFn, Type, Visibility,
};

use crate::ctxt::Ctxt;
use crate::parse::{self, MethodAttrs, ServiceAttrs};
use crate::text;

/// A trait annotated with `#[rpc_service]`.
pub(crate) struct Service<'a> {
    /// The trait as the user wrote it.
    pub(crate) item: &'a ItemTrait,
    /// The name clients address the service by.
    pub(crate) wire_name: String,
    /// The path generated code reaches rpc-core through.
    pub(crate) krate: Path,
    /// The trait's doc comment.
    pub(crate) docs: String,
    /// The trait's methods, in declaration order.
    pub(crate) methods: Vec<Method<'a>>,
    /// Every trait item that is not a method (check rejects them).
    pub(crate) other_items: Vec<&'a TraitItem>,
}

/// One method of the trait.
pub(crate) struct Method<'a> {
    /// The method as the user wrote it.
    pub(crate) item: &'a TraitItemFn,
    /// Its `#[rpc(..)]` flags.
    pub(crate) attrs: MethodAttrs,
    /// The name that identifies it on the wire (`r#type` goes as `type`).
    pub(crate) wire_name: String,
    /// Its doc comment.
    pub(crate) docs: String,
    /// `&self`, or whatever receiver the user wrote (check judges it).
    pub(crate) receiver: Option<&'a Receiver>,
    /// The arguments after the receiver.
    pub(crate) args: Vec<Arg<'a>>,
    /// The return type; `None` for `()` written or implied.
    pub(crate) output: Option<&'a Type>,
    /// The signature as text, for the descriptor.
    pub(crate) signature: String,
    /// The name of the struct its arguments travel in.
    pub(crate) args_ident: Ident,
}

/// One argument of a method.
pub(crate) struct Arg<'a> {
    /// The pattern as written (check wants a plain name).
    pub(crate) pat: &'a Pat,
    /// The name, when the pattern is a plain name.
    pub(crate) ident: Option<&'a Ident>,
    /// The type.
    pub(crate) ty: &'a Type,
}

impl<'a> Service<'a> {
    /// The model of `item`; reports problems with the `#[rpc(..)]` attributes.
    pub(crate) fn from_ast(cx: &Ctxt, item: &'a ItemTrait, attrs: ServiceAttrs) -> Self {
        let wire_name = match &attrs.name {
            Some(name) => name.value(),
            None => item.ident.unraw().to_string(),
        };
        let krate = attrs.krate.unwrap_or_else(|| syn::parse_quote!(::rpc_core));
        let mut methods = Vec::new();
        let mut other_items = Vec::new();
        for trait_item in &item.items {
            match trait_item {
                TraitItem::Fn(method) => methods.push(Method::from_ast(cx, &item.ident, method)),
                other => other_items.push(other),
            }
        }
        Service {
            item,
            wire_name,
            krate,
            docs: text::doc_text(&item.attrs),
            methods,
            other_items,
        }
    }

    /// The trait's name.
    pub(crate) fn ident(&self) -> &'a Ident {
        &self.item.ident
    }

    /// The trait's visibility, which every generated item shares.
    pub(crate) fn vis(&self) -> &'a Visibility {
        &self.item.vis
    }

    /// `<crate>::__private`: the module generated code names everything through.
    pub(crate) fn private(&self) -> TokenStream {
        let krate = &self.krate;
        quote!(#krate::__private)
    }

    /// The `crate = ".."` string serde's derives need: serde is reached
    /// through rpc-core, so users need not depend on it.
    pub(crate) fn serde_crate(&self) -> String {
        format!(
            "{}::__private::serde",
            text::tokens_text(self.krate.to_token_stream())
        )
    }

    /// `CalculatorClient`.
    pub(crate) fn client_ident(&self) -> Ident {
        format_ident!("{}Client", self.ident())
    }

    /// `CalculatorServer`.
    pub(crate) fn server_ident(&self) -> Ident {
        format_ident!("{}Server", self.ident())
    }

    /// The client's transport type parameter: `T`, or `__T` when a method
    /// signature mentions a type `T` of the user's that `T` would shadow.
    pub(crate) fn transport_param(&self) -> Ident {
        let mentions_t = self.methods.iter().any(|method| {
            let types = method.args.iter().map(|arg| arg.ty).chain(method.output);
            types
                .into_iter()
                .any(|ty| mentions_ident(ty.to_token_stream(), "T"))
        });
        if mentions_t {
            format_ident!("__T")
        } else {
            format_ident!("T")
        }
    }

    /// `CALCULATOR_DESCRIPTOR`.
    pub(crate) fn descriptor_ident(&self) -> Ident {
        let name = text::screaming_snake_case(&self.ident().unraw().to_string());
        Ident::new(&format!("{name}_DESCRIPTOR"), self.ident().span())
    }
}

impl<'a> Method<'a> {
    fn from_ast(cx: &Ctxt, trait_ident: &Ident, item: &'a TraitItemFn) -> Self {
        let sig = &item.sig;
        let mut receiver = None;
        let mut args = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(r) => receiver = Some(r),
                FnArg::Typed(arg) => args.push(Arg {
                    pat: &arg.pat,
                    ident: plain_name(&arg.pat),
                    ty: &arg.ty,
                }),
            }
        }
        let output = match &sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) if is_unit(ty) => None,
            ReturnType::Type(_, ty) => Some(&**ty),
        };
        let wire_name = sig.ident.unraw().to_string();
        let args_ident = format_ident!(
            "{}{}Args",
            trait_ident,
            text::upper_camel_case(&wire_name),
            span = sig.ident.span()
        );
        Method {
            item,
            attrs: parse::method_attrs(cx, &item.attrs),
            docs: text::doc_text(&item.attrs),
            signature: signature_text(sig, &args),
            wire_name,
            receiver,
            args,
            output,
            args_ident,
        }
    }

    /// The method's name.
    pub(crate) fn ident(&self) -> &'a Ident {
        &self.item.sig.ident
    }

    /// The signature as written.
    pub(crate) fn sig(&self) -> &'a Signature {
        &self.item.sig
    }

    /// Where errors about the return value should point: the return type.
    pub(crate) fn output_span(&self) -> Span {
        self.output.map_or_else(Span::call_site, Spanned::span)
    }

    /// The user's attributes minus ours: what the emitted trait keeps.
    pub(crate) fn user_attrs(&self) -> impl Iterator<Item = &'a Attribute> {
        self.item
            .attrs
            .iter()
            .filter(|attr| !parse::is_rpc_attr(attr))
    }

    /// The doc comment attributes: what the client method carries over.
    pub(crate) fn doc_attrs(&self) -> impl Iterator<Item = &'a Attribute> {
        self.item
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("doc"))
    }
}

impl<'a> Arg<'a> {
    /// The argument's name (check has rejected patterns by now).
    pub(crate) fn name(&self) -> &'a Ident {
        self.ident
            .expect("check rejects pattern arguments before expansion")
    }
}

/// The name bound by `pat` when it is a plain `name` (no `mut`, `ref`, `@`).
pub(crate) fn plain_name(pat: &Pat) -> Option<&Ident> {
    match pat {
        Pat::Ident(p)
            if p.attrs.is_empty()
                && p.by_ref.is_none()
                && p.mutability.is_none()
                && p.subpat.is_none() =>
        {
            Some(&p.ident)
        }
        _ => None,
    }
}

/// Whether `tokens` contain the identifier `name`, at any depth.
fn mentions_ident(tokens: TokenStream, name: &str) -> bool {
    tokens.into_iter().any(|tree| match tree {
        TokenTree::Ident(ident) => ident == name,
        TokenTree::Group(group) => mentions_ident(group.stream(), name),
        _ => false,
    })
}

fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(tuple) if tuple.elems.is_empty())
}

/// `async fn add(&self, a: i64, b: i64) -> i64`, spaced like rustfmt.
fn signature_text(sig: &Signature, args: &[Arg<'_>]) -> String {
    let mut text = format!("async fn {}(&self", sig.ident);
    for arg in args {
        let pat = text::tokens_text(arg.pat.to_token_stream());
        let ty = text::tokens_text(arg.ty.to_token_stream());
        text.push_str(&format!(", {pat}: {ty}"));
    }
    text.push(')');
    if let ReturnType::Type(_, ty) = &sig.output {
        text.push_str(&format!(" -> {}", text::tokens_text(ty.to_token_stream())));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_of(item: &ItemTrait, check: impl FnOnce(&Service<'_>)) {
        let cx = Ctxt::new();
        let service = Service::from_ast(&cx, item, ServiceAttrs::default());
        check(&service);
        cx.check().unwrap();
    }

    #[test]
    fn names_generated_items_after_the_trait() {
        let item: ItemTrait = syn::parse_quote! {
            trait HttpGateway { async fn get_page(&self, url: String) -> Vec<u8>; }
        };
        model_of(&item, |service| {
            assert_eq!(service.wire_name, "HttpGateway");
            assert_eq!(service.client_ident(), "HttpGatewayClient");
            assert_eq!(service.server_ident(), "HttpGatewayServer");
            assert_eq!(service.descriptor_ident(), "HTTP_GATEWAY_DESCRIPTOR");
            assert_eq!(service.methods[0].args_ident, "HttpGatewayGetPageArgs");
            assert_eq!(service.serde_crate(), "::rpc_core::__private::serde");
        });
    }

    #[test]
    fn signature_text_is_normalized() {
        let item: ItemTrait = syn::parse_quote! {
            trait Calculator {
                async fn div(&self, a: i64, b: Vec<Option<i64>>) -> Result<i64, MathError>;
                async fn log(&self, line: String);
                async fn r#type(&self) -> ();
            }
        };
        model_of(&item, |service| {
            let signatures: Vec<&str> = service
                .methods
                .iter()
                .map(|m| m.signature.as_str())
                .collect();
            assert_eq!(
                signatures,
                [
                    "async fn div(&self, a: i64, b: Vec<Option<i64>>) -> Result<i64, MathError>",
                    "async fn log(&self, line: String)",
                    "async fn r#type(&self) -> ()",
                ]
            );
            let raw = &service.methods[2];
            assert_eq!(raw.wire_name, "type");
            assert_eq!(raw.args_ident, "CalculatorTypeArgs");
            assert!(raw.output.is_none(), "`-> ()` is a unit return");
        });
    }
}
