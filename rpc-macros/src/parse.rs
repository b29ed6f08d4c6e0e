//! Stage 1: the macro's own attributes.
//!
//! `#[rpc_service(name = "..", crate = path)]` on the trait and
//! `#[rpc(oneway)]` / `#[rpc(at_most_once)]` / `#[rpc(run_to_completion)]`
//! on methods. Every problem is
//! reported into the [`Ctxt`] and parsing goes on, so one expansion shows
//! all of them.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, ExprLit, ExprPath, Lit, LitStr, Meta, Path, Token};

use crate::ctxt::Ctxt;

/// What `#[rpc_service(..)]` says.
#[derive(Default)]
pub(crate) struct ServiceAttrs {
    /// `name = ".."`: the service's wire name.
    pub(crate) name: Option<LitStr>,
    /// `crate = path`: where rpc-core is, for crates that re-export it.
    pub(crate) krate: Option<Path>,
}

/// What a method's `#[rpc(..)]` attributes say.
#[derive(Default)]
pub(crate) struct MethodAttrs {
    /// `#[rpc(oneway)]`: no reply is sent or awaited.
    pub(crate) oneway: bool,
    /// `#[rpc(at_most_once)]`: acknowledged before the handler runs.
    pub(crate) at_most_once: bool,
    /// `#[rpc(run_to_completion)]`: the handler is not cut off at the
    /// deadline or by the caller's cancel.
    pub(crate) run_to_completion: bool,
}

const SERVICE_ARGS_HELP: &str = "expected `name = \"..\"` or `crate = path`";
const METHOD_ARGS_HELP: &str =
    "expected `#[rpc(oneway)]`, `#[rpc(at_most_once)]` or `#[rpc(run_to_completion)]`";

/// Parses the arguments of `#[rpc_service(..)]`.
pub(crate) fn service_attrs(cx: &Ctxt, args: TokenStream) -> ServiceAttrs {
    let mut attrs = ServiceAttrs::default();
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args) {
        Ok(metas) => metas,
        Err(error) => {
            cx.syn_error(error);
            return attrs;
        }
    };
    for meta in &metas {
        let key = meta.path();
        if key.is_ident("name") {
            let Some(value) = name_value(cx, meta, "name = \"calc.v1\"") else {
                continue;
            };
            match value {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(name),
                    ..
                }) if name.value().is_empty() => {
                    cx.error_spanned_by(name, "the service name must not be empty");
                }
                Expr::Lit(ExprLit {
                    lit: Lit::Str(name),
                    ..
                }) => set_once(cx, &mut attrs.name, key, name.clone()),
                other => cx.error_spanned_by(other, "expected a string: `name = \"calc.v1\"`"),
            }
        } else if key.is_ident("crate") {
            let Some(value) = name_value(cx, meta, "crate = ::my_rpc") else {
                continue;
            };
            match value {
                Expr::Path(ExprPath {
                    qself: None, path, ..
                }) => set_once(cx, &mut attrs.krate, key, path.clone()),
                other => cx.error_spanned_by(other, "expected a path: `crate = ::my_rpc`"),
            }
        } else {
            cx.error_spanned_by(
                key,
                format!(
                    "unknown argument `{}` of `#[rpc_service]`; {SERVICE_ARGS_HELP}",
                    quote::quote!(#key).to_string().replace(' ', "")
                ),
            );
        }
    }
    attrs
}

/// Parses the `#[rpc(..)]` attributes among a method's attributes.
pub(crate) fn method_attrs(cx: &Ctxt, attrs: &[Attribute]) -> MethodAttrs {
    let mut parsed = MethodAttrs::default();
    for attr in attrs.iter().filter(|attr| is_rpc_attr(attr)) {
        let Meta::List(list) = &attr.meta else {
            cx.error_spanned_by(attr, METHOD_ARGS_HELP);
            continue;
        };
        let metas = match list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) {
            Ok(metas) => metas,
            Err(error) => {
                cx.syn_error(error);
                continue;
            }
        };
        for meta in &metas {
            let flag = if meta.path().is_ident("oneway") {
                &mut parsed.oneway
            } else if meta.path().is_ident("at_most_once") {
                &mut parsed.at_most_once
            } else if meta.path().is_ident("run_to_completion") {
                &mut parsed.run_to_completion
            } else {
                cx.error_spanned_by(
                    meta.path(),
                    format!("unknown `rpc` argument; {METHOD_ARGS_HELP}"),
                );
                continue;
            };
            if !matches!(meta, Meta::Path(_)) {
                cx.error_spanned_by(meta, "this flag takes no value");
            } else if *flag {
                cx.error_spanned_by(meta, "duplicate flag");
            } else {
                *flag = true;
            }
        }
    }
    parsed
}

/// Whether `attr` is one of ours (and so is stripped from the emitted trait).
pub(crate) fn is_rpc_attr(attr: &Attribute) -> bool {
    attr.path().is_ident("rpc")
}

/// The value of `key = value`, or an error naming the expected form.
fn name_value<'a>(cx: &Ctxt, meta: &'a Meta, example: &str) -> Option<&'a Expr> {
    match meta {
        Meta::NameValue(nv) => Some(&nv.value),
        _ => {
            cx.error_spanned_by(meta, format!("expected `{example}`"));
            None
        }
    }
}

/// Stores an argument's value, or reports it as a duplicate.
fn set_once<T>(cx: &Ctxt, slot: &mut Option<T>, key: &Path, value: T) {
    if slot.is_some() {
        cx.error_spanned_by(key, "duplicate argument");
    } else {
        *slot = Some(value);
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn errors_of(cx: Ctxt) -> Vec<String> {
        match cx.check() {
            Ok(()) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn reads_name_and_crate() {
        let cx = Ctxt::new();
        let attrs = service_attrs(&cx, quote!(name = "calc.v1", crate = ::my::rpc));
        assert!(errors_of(cx).is_empty());
        assert_eq!(attrs.name.unwrap().value(), "calc.v1");
        let krate = attrs.krate.unwrap();
        assert_eq!(quote!(#krate).to_string(), ":: my :: rpc");
    }

    #[test]
    fn reports_every_bad_service_argument() {
        let cx = Ctxt::new();
        service_attrs(
            &cx,
            quote!(name = "a", name = "b", version = 2, crate = "x"),
        );
        assert_eq!(
            errors_of(cx),
            [
                "duplicate argument",
                "unknown argument `version` of `#[rpc_service]`; expected `name = \"..\"` or `crate = path`",
                "expected a path: `crate = ::my_rpc`",
            ]
        );
    }

    #[test]
    fn reads_method_flags() {
        let cx = Ctxt::new();
        let item: syn::TraitItemFn = syn::parse_quote! {
            #[rpc(oneway)]
            #[rpc(at_most_once, run_to_completion)]
            async fn log(&self);
        };
        let attrs = method_attrs(&cx, &item.attrs);
        assert!(errors_of(cx).is_empty());
        assert!(attrs.oneway && attrs.at_most_once && attrs.run_to_completion);
    }

    #[test]
    fn reports_bad_method_flags() {
        let cx = Ctxt::new();
        let item: syn::TraitItemFn = syn::parse_quote! {
            #[rpc(oneway, oneway, fast, at_most_once = true)]
            #[rpc]
            async fn log(&self);
        };
        method_attrs(&cx, &item.attrs);
        assert_eq!(errors_of(cx).len(), 4);
    }
}
