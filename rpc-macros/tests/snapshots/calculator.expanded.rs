/// Arithmetic over the wire.
pub trait Calculator: ::core::marker::Send + ::core::marker::Sync + 'static {
    /// Adds two numbers.
    fn add(
        &self,
        a: i64,
        b: i64,
    ) -> impl ::core::future::Future<Output = i64> + ::core::marker::Send;
    /// Divides `a` by `b`; dividing by zero is an application error.
    fn div(
        &self,
        a: i64,
        b: i64,
    ) -> impl ::core::future::Future<
        Output = Result<i64, MathError>,
    > + ::core::marker::Send;
    /// Appends a line to the server's log; nobody waits for it.
    fn log(
        &self,
        line: String,
    ) -> impl ::core::future::Future<Output = ()> + ::core::marker::Send;
    /// Charges once at most, even if the server crashes midway.
    fn charge(
        &self,
        cents: u64,
    ) -> impl ::core::future::Future<Output = u64> + ::core::marker::Send;
    fn reset(&self) -> impl ::core::future::Future<Output = ()> + ::core::marker::Send;
}
/// Arguments of [`Calculator::add`] on the wire.
#[derive(::rpc_core::__private::Serialize, ::rpc_core::__private::Deserialize)]
#[serde(crate = "::rpc_core::__private::serde")]
pub struct CalculatorAddArgs {
    /// The `a` argument.
    pub a: i64,
    /// The `b` argument.
    pub b: i64,
}
/// Arguments of [`Calculator::div`] on the wire.
#[derive(::rpc_core::__private::Serialize, ::rpc_core::__private::Deserialize)]
#[serde(crate = "::rpc_core::__private::serde")]
pub struct CalculatorDivArgs {
    /// The `a` argument.
    pub a: i64,
    /// The `b` argument.
    pub b: i64,
}
/// Arguments of [`Calculator::log`] on the wire.
#[derive(::rpc_core::__private::Serialize, ::rpc_core::__private::Deserialize)]
#[serde(crate = "::rpc_core::__private::serde")]
pub struct CalculatorLogArgs {
    /// The `line` argument.
    pub line: String,
}
/// Arguments of [`Calculator::charge`] on the wire.
#[derive(::rpc_core::__private::Serialize, ::rpc_core::__private::Deserialize)]
#[serde(crate = "::rpc_core::__private::serde")]
pub struct CalculatorChargeArgs {
    /// The `cents` argument.
    pub cents: u64,
}
/// Arguments of [`Calculator::reset`] on the wire.
#[derive(::rpc_core::__private::Serialize, ::rpc_core::__private::Deserialize)]
#[serde(crate = "::rpc_core::__private::serde")]
pub struct CalculatorResetArgs {}
/// Wire name, version and methods of the [`Calculator`] service.
pub static CALCULATOR_DESCRIPTOR: ::rpc_core::__private::ServiceDescriptor = ::rpc_core::__private::ServiceDescriptor {
    name: "calc.v1",
    version: ::core::env!("CARGO_PKG_VERSION"),
    docs: "Arithmetic over the wire.",
    methods: &[
        ::rpc_core::__private::MethodDescriptor {
            name: "add",
            kind: ::rpc_core::__private::MethodKind::Call,
            delivery: ::rpc_core::__private::DeliveryMode::AtLeastOnce,
            run_to_completion: false,
            signature: "async fn add(&self, a: i64, b: i64) -> i64",
            docs: "Adds two numbers.",
        },
        ::rpc_core::__private::MethodDescriptor {
            name: "div",
            kind: ::rpc_core::__private::MethodKind::Call,
            delivery: ::rpc_core::__private::DeliveryMode::AtLeastOnce,
            run_to_completion: false,
            signature: "async fn div(&self, a: i64, b: i64) -> Result<i64, MathError>",
            docs: "Divides `a` by `b`; dividing by zero is an application error.",
        },
        ::rpc_core::__private::MethodDescriptor {
            name: "log",
            kind: ::rpc_core::__private::MethodKind::Oneway,
            delivery: ::rpc_core::__private::DeliveryMode::AtLeastOnce,
            run_to_completion: false,
            signature: "async fn log(&self, line: String)",
            docs: "Appends a line to the server's log; nobody waits for it.",
        },
        ::rpc_core::__private::MethodDescriptor {
            name: "charge",
            kind: ::rpc_core::__private::MethodKind::Call,
            delivery: ::rpc_core::__private::DeliveryMode::AtMostOnce,
            run_to_completion: false,
            signature: "async fn charge(&self, cents: u64) -> u64",
            docs: "Charges once at most, even if the server crashes midway.",
        },
        ::rpc_core::__private::MethodDescriptor {
            name: "reset",
            kind: ::rpc_core::__private::MethodKind::Call,
            delivery: ::rpc_core::__private::DeliveryMode::AtLeastOnce,
            run_to_completion: false,
            signature: "async fn reset(&self)",
            docs: "",
        },
    ],
};
/// Typed client of the [`Calculator`] service (wire name `calc.v1`).
///
/// Each method makes one call. It fails with `RpcError` when the call
/// itself fails: timeout, nobody serving, decode error, handler panic.
/// Cheap to clone; clones share one reply inbox. The transport
/// defaults to `DynTransport`, for fields that should not name one.
pub struct CalculatorClient<
    T: ::rpc_core::__private::Transport = ::rpc_core::__private::DynTransport,
> {
    client: ::rpc_core::__private::Client<T>,
}
#[automatically_derived]
impl<T: ::rpc_core::__private::Transport> ::core::clone::Clone for CalculatorClient<T> {
    fn clone(&self) -> Self {
        CalculatorClient {
            client: ::core::clone::Clone::clone(&self.client),
        }
    }
}
#[automatically_derived]
impl<T: ::rpc_core::__private::Transport> ::core::fmt::Debug for CalculatorClient<T> {
    fn fmt(&self, __f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
        __f.debug_struct("CalculatorClient").field("client", &self.client).finish()
    }
}
#[allow(clippy::too_many_arguments)]
impl<T: ::rpc_core::__private::Transport> CalculatorClient<T> {
    /// A client sending through `transport`, with the default
    /// configuration (30 s deadline, bincode).
    pub fn new(transport: T) -> Self {
        Self::from_client(::rpc_core::__private::Client::new(transport))
    }
    /// A typed face over an untyped client, sharing its reply inbox,
    /// in-flight limit and per-call options.
    pub fn from_client(client: ::rpc_core::__private::Client<T>) -> Self {
        CalculatorClient { client }
    }
    /// The untyped client underneath.
    pub fn client(&self) -> &::rpc_core::__private::Client<T> {
        &self.client
    }
    /// A clone whose calls get `timeout` as their deadline.
    pub fn with_timeout(&self, timeout: ::rpc_core::__private::Duration) -> Self {
        Self::from_client(self.client.with_timeout(timeout))
    }
    /// A clone whose calls carry `key = value` in their metadata.
    pub fn with_metadata(
        &self,
        key: impl ::core::convert::Into<::std::string::String>,
        value: impl ::core::convert::Into<::std::string::String>,
    ) -> Self {
        Self::from_client(self.client.with_metadata(key, value))
    }
    /// Adds two numbers.
    pub fn add(
        &self,
        a: i64,
        b: i64,
    ) -> impl ::rpc_core::__private::Future<
        Output = ::rpc_core::__private::Result<i64, ::rpc_core::__private::RpcError>,
    > + '_ {
        self.client.call(CALCULATOR_DESCRIPTOR.name, "add", CalculatorAddArgs { a, b })
    }
    /// Divides `a` by `b`; dividing by zero is an application error.
    pub fn div(
        &self,
        a: i64,
        b: i64,
    ) -> impl ::rpc_core::__private::Future<
        Output = ::rpc_core::__private::Result<
            Result<i64, MathError>,
            ::rpc_core::__private::RpcError,
        >,
    > + '_ {
        self.client.call(CALCULATOR_DESCRIPTOR.name, "div", CalculatorDivArgs { a, b })
    }
    /// Appends a line to the server's log; nobody waits for it.
    pub fn log(
        &self,
        line: String,
    ) -> impl ::rpc_core::__private::Future<
        Output = ::rpc_core::__private::Result<(), ::rpc_core::__private::RpcError>,
    > + '_ {
        self.client.notify(CALCULATOR_DESCRIPTOR.name, "log", CalculatorLogArgs { line })
    }
    /// Charges once at most, even if the server crashes midway.
    pub fn charge(
        &self,
        cents: u64,
    ) -> impl ::rpc_core::__private::Future<
        Output = ::rpc_core::__private::Result<u64, ::rpc_core::__private::RpcError>,
    > + '_ {
        self.client
            .call(CALCULATOR_DESCRIPTOR.name, "charge", CalculatorChargeArgs { cents })
    }
    /// Calls [`Calculator::reset`] on the service.
    pub fn reset(
        &self,
    ) -> impl ::rpc_core::__private::Future<
        Output = ::rpc_core::__private::Result<(), ::rpc_core::__private::RpcError>,
    > + '_ {
        self.client.call(CALCULATOR_DESCRIPTOR.name, "reset", CalculatorResetArgs {})
    }
}
/// Serves an implementation of [`Calculator`]: dispatches each request to the
/// method it names. Run it with `Server::builder(transport).serve(..)`.
pub struct CalculatorServer<S> {
    service: S,
}
impl<S: Calculator> CalculatorServer<S> {
    /// Serves `service`.
    pub fn new(service: S) -> Self {
        CalculatorServer { service }
    }
    /// The served implementation, back.
    pub fn into_inner(self) -> S {
        self.service
    }
    /// The served implementation.
    pub fn get_ref(&self) -> &S {
        &self.service
    }
}
#[automatically_derived]
impl<S: Calculator> ::rpc_core::__private::Service for CalculatorServer<S> {
    fn descriptor(&self) -> &'static ::rpc_core::__private::ServiceDescriptor {
        &CALCULATOR_DESCRIPTOR
    }
    async fn call(
        &self,
        __request: &::rpc_core::__private::Request,
    ) -> ::rpc_core::__private::Response {
        match __request.method() {
            "add" => {
                __request
                    .respond(|__args: CalculatorAddArgs| {
                        <S as Calculator>::add(&self.service, __args.a, __args.b)
                    })
                    .await
            }
            "div" => {
                __request
                    .respond(|__args: CalculatorDivArgs| {
                        <S as Calculator>::div(&self.service, __args.a, __args.b)
                    })
                    .await
            }
            "log" => {
                __request
                    .respond(|__args: CalculatorLogArgs| {
                        <S as Calculator>::log(&self.service, __args.line)
                    })
                    .await
            }
            "charge" => {
                __request
                    .respond(|__args: CalculatorChargeArgs| {
                        <S as Calculator>::charge(&self.service, __args.cents)
                    })
                    .await
            }
            "reset" => {
                __request
                    .respond(|__args: CalculatorResetArgs| {
                        <S as Calculator>::reset(&self.service)
                    })
                    .await
            }
            _ => __request.no_such_method(),
        }
    }
}
