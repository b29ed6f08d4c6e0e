//! Stage 3: every shape the generated code cannot serve, reported on the
//! user's tokens, all at once.
//!
//! The rules, and why:
//! - the trait has no generics, where clause or `unsafe`: one service has
//!   one concrete set of wire types;
//! - methods only (no associated types, consts or macros): every item of
//!   the trait must be something a client can call;
//! - every method is `async fn m(&self, name: Type, ..) -> Type`, with no
//!   generics, `const`, `unsafe`, `extern` or default body: the server
//!   implements every method and runs many calls on one shared service;
//! - argument and return types are owned, concrete and not `Self`: they are
//!   decoded from bytes on the other side;
//! - `#[rpc(oneway)]` methods return nothing: nobody waits for a reply;
//! - method names are unique (they identify methods on the wire) and do not
//!   clash with the methods of the generated client and server.

use std::collections::HashSet;

use quote::quote;
use syn::visit::{self, Visit};
use syn::{ItemTrait, ReceiverKind, Safety, TraitItem, TypeImplTrait, TypePath, TypeReference};

use crate::ctxt::Ctxt;
use crate::model::{Method, Service};

/// Who already uses a method name in the generated code.
enum Taken {
    Client,
    Server,
    Both,
    /// A method of core's `Service` trait, which the server implements.
    ServiceTrait,
}

/// Method names the generated types already use.
const RESERVED: &[(&str, Taken)] = &[
    ("new", Taken::Both),
    ("from_client", Taken::Client),
    ("client", Taken::Client),
    ("with_timeout", Taken::Client),
    ("with_metadata", Taken::Client),
    ("into_inner", Taken::Server),
    ("get_ref", Taken::Server),
    ("descriptor", Taken::ServiceTrait),
    ("call", Taken::ServiceTrait),
];

/// Reports everything about `service` that cannot be expanded.
pub(crate) fn check(cx: &Ctxt, service: &Service<'_>) {
    check_trait(cx, service.item);
    for item in &service.other_items {
        check_other_item(cx, item);
    }
    for method in &service.methods {
        check_method(cx, service, method);
    }
    check_unique_names(cx, service);
}

fn check_trait(cx: &Ctxt, item: &ItemTrait) {
    if let Err(error) = item.modifiers.require_empty() {
        cx.syn_error(error);
    }
    if let Some(unsafety) = &item.unsafety {
        cx.error_spanned_by(unsafety, "`#[rpc_service]` traits cannot be `unsafe`");
    }
    if !item.generics.params.is_empty() {
        cx.error_spanned_by(
            &item.generics,
            "`#[rpc_service]` traits cannot be generic: a service has one concrete set of wire types",
        );
    }
    if let Some(where_clause) = &item.generics.where_clause {
        cx.error_spanned_by(
            where_clause,
            "`#[rpc_service]` traits cannot have a where clause",
        );
    }
}

fn check_other_item(cx: &Ctxt, item: &TraitItem) {
    const ONLY_METHODS: &str = "a service's items are its remote methods";
    match item {
        TraitItem::Const(item) => {
            let (const_token, ident) = (&item.const_token, &item.ident);
            cx.error_spanned_by(
                quote!(#const_token #ident),
                format!("associated consts are not supported: {ONLY_METHODS}"),
            );
        }
        TraitItem::Type(item) => {
            let (type_token, ident) = (&item.type_token, &item.ident);
            cx.error_spanned_by(
                quote!(#type_token #ident),
                format!("associated types are not supported: {ONLY_METHODS}"),
            );
        }
        TraitItem::Macro(item) => {
            let (path, bang) = (&item.mac.path, &item.mac.bang_token);
            cx.error_spanned_by(
                quote!(#path #bang),
                format!("macros in a service trait are not supported: {ONLY_METHODS}"),
            );
        }
        other => cx.error_spanned_by(other, format!("unsupported item: {ONLY_METHODS}")),
    }
}

fn check_method(cx: &Ctxt, service: &Service<'_>, method: &Method<'_>) {
    let sig = method.sig();
    if let Err(error) = method.item.modifiers.require_empty() {
        cx.syn_error(error);
    }
    if let Some(constness) = &sig.constness {
        cx.error_spanned_by(constness, "remote methods cannot be `const`");
    }
    if let Safety::Unsafe(unsafety) = &sig.safety {
        cx.error_spanned_by(unsafety, "remote methods cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        cx.error_spanned_by(abi, "remote methods cannot be `extern`");
    }
    if sig.asyncness.is_none() {
        let (fn_token, ident) = (&sig.fn_token, &sig.ident);
        cx.error_spanned_by(
            quote!(#fn_token #ident),
            "remote methods must be `async fn`: every call waits on the network",
        );
    }
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(
            &sig.generics,
            "remote methods cannot be generic: the server decodes one concrete type per argument",
        );
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        cx.error_spanned_by(where_clause, "remote methods cannot have a where clause");
    }
    check_receiver(cx, method);
    for arg in &method.args {
        if arg.ident.is_none() {
            cx.error_spanned_by(
                arg.pat,
                format!(
                    "arguments must be plain names: each one becomes a field of `{}`",
                    method.args_ident
                ),
            );
        }
        WireType::argument(cx).visit_type(arg.ty);
    }
    if let Some(variadic) = &sig.variadic {
        cx.error_spanned_by(variadic, "remote methods cannot be variadic");
    }
    if let Some(output) = method.output {
        if method.attrs.oneway {
            cx.error_spanned_by(
                output,
                "`#[rpc(oneway)]` methods cannot return a value: nobody waits for a reply",
            );
        }
        WireType::output(cx).visit_type(output);
    }
    if let Some(body) = &method.item.default {
        cx.error_spanned_by(
            body,
            "default method bodies are not supported: the server implements every method",
        );
    }
    check_reserved_name(cx, service, method);
}

fn check_receiver(cx: &Ctxt, method: &Method<'_>) {
    let Some(receiver) = method.receiver else {
        let parens = method.sig().paren_token.span.join();
        cx.syn_error(syn::Error::new(
            parens,
            "remote methods take `&self` first: a server runs every call on one shared service",
        ));
        return;
    };
    let message = match &receiver.kind {
        ReceiverKind::Reference(_, _, Some(_)) => {
            "remote methods take `&self`, not `&mut self`: a server runs calls concurrently; \
             keep state behind a lock or atomics"
        }
        ReceiverKind::Reference(_, Some(_), None) => "remote methods take `&self` with no lifetime",
        ReceiverKind::Reference(_, None, None) => return,
        _ => "remote methods take `&self`: a server runs every call on one shared service",
    };
    cx.error_spanned_by(receiver, message);
}

fn check_reserved_name(cx: &Ctxt, service: &Service<'_>, method: &Method<'_>) {
    let name = method.wire_name.as_str();
    if name.starts_with("__") {
        cx.error_spanned_by(
            method.ident(),
            "method names starting with `__` are reserved for generated code",
        );
    } else if let Some((_, taken)) = RESERVED.iter().find(|(reserved, _)| *reserved == name) {
        let (client, server) = (service.client_ident(), service.server_ident());
        let by = match taken {
            Taken::Client => format!("the generated `{client}` has a method of that name"),
            Taken::Server => format!("the generated `{server}` has a method of that name"),
            Taken::Both => {
                format!("the generated `{client}` and `{server}` have methods of that name")
            }
            Taken::ServiceTrait => {
                format!("the generated `{server}` implements `Service::{name}`")
            }
        };
        cx.error_spanned_by(method.ident(), format!("`{name}` is reserved: {by}"));
    }
}

fn check_unique_names(cx: &Ctxt, service: &Service<'_>) {
    let mut seen = HashSet::new();
    for method in &service.methods {
        if !seen.insert(method.wire_name.as_str()) {
            cx.error_spanned_by(
                method.ident(),
                format!(
                    "duplicate method `{}`: methods are identified by name on the wire",
                    method.wire_name
                ),
            );
        }
    }
}

/// Walks an argument or return type for what cannot cross the wire.
struct WireType<'c> {
    cx: &'c Ctxt,
    /// "arguments" or "return values", for messages.
    role: &'static str,
}

impl<'c> WireType<'c> {
    fn argument(cx: &'c Ctxt) -> Self {
        WireType {
            cx,
            role: "arguments",
        }
    }

    fn output(cx: &'c Ctxt) -> Self {
        WireType {
            cx,
            role: "return values",
        }
    }
}

impl<'ast> Visit<'ast> for WireType<'_> {
    fn visit_type_reference(&mut self, ty: &'ast TypeReference) {
        self.cx.error_spanned_by(
            ty,
            format!(
                "{} cross the wire by value: use an owned type (`String` for `&str`, \
                 `Vec<u8>` for `&[u8]`)",
                self.role
            ),
        );
    }

    fn visit_type_impl_trait(&mut self, ty: &'ast TypeImplTrait) {
        self.cx.error_spanned_by(
            ty,
            format!(
                "{} cannot be `impl Trait`: the other side decodes one concrete type",
                self.role
            ),
        );
    }

    fn visit_type_path(&mut self, ty: &'ast TypePath) {
        if ty.qself.is_none() && ty.path.segments.first().is_some_and(|s| s.ident == "Self") {
            self.cx.error_spanned_by(
                ty,
                format!("{} cannot name `Self`: write the concrete type", self.role),
            );
            return;
        }
        visit::visit_type_path(self, ty);
    }
}
