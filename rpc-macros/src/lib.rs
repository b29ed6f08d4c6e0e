//! `#[rpc_service]`: a typed client and a server dispatch for a trait.
//!
//! Use it through `rpc_core::rpc_service`; this crate has no runtime code.
//! The macro's documentation (on [`macro@rpc_service`]) lists what it
//! generates and what it rejects.
//!
//! # Layout
//!
//! The expansion runs in stages, one module each:
//!
//! 1. `parse`: the macro's own attributes (`#[rpc_service(..)]`, `#[rpc(..)]`);
//! 2. `model`: the service as the generators see it, keeping the user's
//!    tokens for spans;
//! 3. `check`: every unsupported shape, reported at once through `ctxt`;
//! 4. `expand`: one generator per emitted item, or `fallback` (the
//!    user's trait plus the errors) when a check failed.
//!
//! `text` holds the pure string helpers (case conversion, signatures).

mod check;
mod ctxt;
mod expand;
mod fallback;
mod model;
mod parse;
mod text;

#[cfg(test)]
mod snapshot;

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use syn::ItemTrait;

use crate::ctxt::Ctxt;
use crate::model::Service;

/// Generates a typed client, a server dispatch, argument structs and a
/// descriptor for a trait of `async fn`s.
///
/// ```ignore
/// use rpc_core::rpc_service;
///
/// #[rpc_service(name = "calc.v1")] // the name defaults to "Calculator"
/// pub trait Calculator {
///     /// Adds two numbers.
///     async fn add(&self, a: i64, b: i64) -> i64;
///     async fn div(&self, a: i64, b: i64) -> Result<i64, MathError>;
///     #[rpc(oneway)]
///     async fn log(&self, line: String);
///     #[rpc(at_most_once)]
///     async fn charge(&self, cents: u64) -> u64;
/// }
/// ```
///
/// # Arguments
///
/// - `name = ".."`: the wire name of the service (default: the trait's name).
/// - `crate = path`: where rpc-core is, for crates that re-export it
///   (default `::rpc_core`; like serde's `crate` attribute).
///
/// On methods:
///
/// - `#[rpc(oneway)]`: fire and forget. The client resolves once the
///   transport has taken the message; the method must return `()`.
/// - `#[rpc(at_most_once)]`: the server acknowledges the request before
///   running the handler, so a crash mid-handler loses the request rather
///   than running it twice. Combines with `oneway`.
/// - `#[rpc(run_to_completion)]`: the handler runs to its end even past the
///   call's deadline or after the caller cancelled (dropped its call
///   future). Without it the server drops the handler's future at either
///   (see docs/ARCHITECTURE.md, "Settlement policy"): for handlers whose
///   work must not stop halfway. Combines with the others.
///
/// # What is generated
///
/// For `trait Calculator` with visibility `vis`, all items sharing `vis`:
///
/// 1. **The trait**, with `Send + Sync + 'static` added to its supertraits
///    and each `async fn m(&self, ..) -> R` declared as
///    `fn m(&self, ..) -> impl Future<Output = R> + Send`, so that servers
///    run handlers on a multi-threaded runtime without boxing.
///    Implementors still write `async fn`.
/// 2. **One argument struct per method**, `CalculatorAddArgs { a, b }`, with
///    named fields (a JSON body reads `{"a":1,"b":2}`), serde-derived through
///    rpc-core's serde; zero-argument methods get an empty struct.
/// 3. **`CALCULATOR_DESCRIPTOR`**, a `static ServiceDescriptor`: wire name,
///    version of the defining crate, docs, and per method its name, kind
///    (call or oneway), delivery mode, whether it runs to completion, and
///    signature as text.
/// 4. **`CalculatorClient<T: Transport>`**: `new(transport)`,
///    `from_client(Client<T>)`, `client()`, `with_timeout(d)`,
///    `with_metadata(k, v)` and one `async fn` per method returning
///    `Result<R, RpcError>` (oneway methods: `Result<(), RpcError>`). A
///    method returning `Result<T, E>` gives `Result<Result<T, E>, RpcError>`:
///    no flattening, which would force `E: From<RpcError>` and mix "the call
///    failed" with "the call ran and said no". Clone and Debug.
/// 5. **`CalculatorServer<S: Calculator>`**: `new(service)`, `into_inner()`,
///    `get_ref()`, and core's `Service` trait: the request's method name
///    picks the arm, which decodes the argument struct, calls the method and
///    encodes its return value; an unknown name gets a `NoSuchMethod` reply.
///
/// Methods are identified on the wire by name, never by position, so adding
/// or reordering methods does not break existing clients.
///
/// # Explanation
///
/// A trimmed expansion of the example above (paths shortened; the real
/// output names everything through `::rpc_core::__private` and `::core`,
/// so it compiles under `#![no_implicit_prelude]`):
///
/// ```ignore
/// pub trait Calculator: Send + Sync + 'static {
///     /// Adds two numbers.
///     fn add(&self, a: i64, b: i64) -> impl Future<Output = i64> + Send;
///     fn log(&self, line: String) -> impl Future<Output = ()> + Send;
///     // ...
/// }
///
/// /// Arguments of [`Calculator::add`] on the wire.
/// #[derive(Serialize, Deserialize)]
/// pub struct CalculatorAddArgs {
///     pub a: i64,
///     pub b: i64,
/// }
///
/// pub static CALCULATOR_DESCRIPTOR: ServiceDescriptor = ServiceDescriptor {
///     name: "calc.v1",
///     version: env!("CARGO_PKG_VERSION"),
///     docs: "",
///     methods: &[MethodDescriptor {
///         name: "add",
///         kind: MethodKind::Call,
///         delivery: DeliveryMode::AtLeastOnce,
///         run_to_completion: false,
///         signature: "async fn add(&self, a: i64, b: i64) -> i64",
///         docs: "Adds two numbers.",
///     }, /* ... */],
/// };
///
/// pub struct CalculatorClient<T: Transport> {
///     client: Client<T>,
/// }
///
/// impl<T: Transport> CalculatorClient<T> {
///     /// Adds two numbers.
///     pub fn add(&self, a: i64, b: i64) -> impl Future<Output = Result<i64, RpcError>> + '_ {
///         self.client
///             .call(CALCULATOR_DESCRIPTOR.name, "add", CalculatorAddArgs { a, b })
///     }
///     pub fn log(&self, line: String) -> impl Future<Output = Result<(), RpcError>> + '_ {
///         self.client
///             .notify(CALCULATOR_DESCRIPTOR.name, "log", CalculatorLogArgs { line })
///     }
///     // new, from_client, client, with_timeout, with_metadata, ...
/// }
///
/// pub struct CalculatorServer<S> {
///     service: S,
/// }
///
/// impl<S: Calculator> Service for CalculatorServer<S> {
///     fn descriptor(&self) -> &'static ServiceDescriptor {
///         &CALCULATOR_DESCRIPTOR
///     }
///     async fn call(&self, __request: &Request) -> Response {
///         match __request.method() {
///             "add" => __request
///                 .respond(|__args: CalculatorAddArgs| {
///                     <S as Calculator>::add(&self.service, __args.a, __args.b)
///                 })
///                 .await,
///             // ...
///             _ => __request.no_such_method(),
///         }
///     }
/// }
/// ```
///
/// The full expansion of this example is checked in as
/// `rpc-macros/tests/snapshots/calculator.expanded.rs`.
///
/// # What is rejected, and why
///
/// Each of these is a compile error on the offending tokens; all of them are
/// reported at once, and the trait is still emitted as written so that the
/// rest of the crate (and IDEs) keep seeing it.
///
/// - Generic traits, lifetimes and where clauses on the trait: a service has
///   one concrete set of wire types. `unsafe trait` too.
/// - Associated types, consts and macro calls in the trait: its items are
///   its remote methods.
/// - Methods that are not `async fn`, or are `const`, `unsafe`, `extern`,
///   variadic, generic (type, lifetime or const parameters, where clauses),
///   or have a default body (the server implements every method).
/// - Receivers other than `&self` (`&mut self`, `self`, `self: Box<Self>`,
///   none): a server runs many calls at once on one shared service.
/// - Arguments that are patterns (`(a, b): (i32, i32)`, `_`, `mut a`): each
///   argument becomes a named field.
/// - Argument or return types containing a reference, `impl Trait` or
///   `Self`: values are decoded from bytes on the other side.
/// - `#[rpc(oneway)]` on a method returning a value.
/// - Two methods of one name, and names the generated types use: `new`,
///   `from_client`, `client`, `with_timeout`, `with_metadata`, `into_inner`,
///   `get_ref`, `descriptor`, `call`, and anything starting with `__`.
/// - Unknown or repeated arguments of `#[rpc_service(..)]` and `#[rpc(..)]`.
///
/// Supertraits written by the user are kept (and `Send + Sync + 'static`
/// added): their methods are local, not remote, and the server dispatches
/// the annotated trait's methods only.
#[proc_macro_attribute]
pub fn rpc_service(args: TokenStream, item: TokenStream) -> TokenStream {
    rpc_service_tokens(args.into(), item.into()).into()
}

/// parse -> model -> check -> expand, or the trait plus `compile_error!`s.
fn rpc_service_tokens(args: TokenStream2, item: TokenStream2) -> TokenStream2 {
    let Ok(trait_item) = syn::parse2::<ItemTrait>(item.clone()) else {
        let error = syn::Error::new(Span::call_site(), "`#[rpc_service]` goes on a trait");
        let error = error.into_compile_error();
        return quote::quote!(#item #error);
    };
    let cx = Ctxt::new();
    let attrs = parse::service_attrs(&cx, args);
    let service = Service::from_ast(&cx, &trait_item, attrs);
    check::check(&cx, &service);
    match cx.check() {
        Ok(()) => expand::service(&service),
        Err(errors) => fallback::trait_with_errors(&trait_item, errors),
    }
}
