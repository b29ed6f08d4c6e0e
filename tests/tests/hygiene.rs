#![no_implicit_prelude]
#![deny(missing_docs)]
//! `#[rpc_service]` output names everything by absolute path and documents
//! every public item: it compiles with no prelude, under `deny(missing_docs)`,
//! and (in CI) under `cargo clippy -- -D warnings`.

/// A struct crossing the wire.
#[derive(::serde::Serialize, ::serde::Deserialize)]
pub struct Point {
    /// Horizontal.
    pub x: i32,
    /// Vertical.
    pub y: i32,
}

/// An enum crossing the wire.
#[derive(::serde::Serialize, ::serde::Deserialize)]
pub enum Shape {
    /// A dot.
    Dot(Point),
    /// A box.
    Rect {
        /// One corner.
        from: Point,
        /// The other.
        to: Point,
    },
}

/// An application error.
#[derive(::core::fmt::Debug, ::core::cmp::PartialEq, ::serde::Serialize, ::serde::Deserialize)]
pub struct MathError;

/// Named like the client's transport parameter, to prove it cannot be
/// shadowed.
#[derive(::serde::Serialize, ::serde::Deserialize)]
pub struct T(pub u8);

/// Every supported method shape.
#[::rpc_core::rpc_service(name = "hygiene.v1")]
pub trait Everything {
    /// A plain call.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// A typed application error.
    async fn div(&self, a: i64, b: i64) -> ::std::result::Result<i64, MathError>;
    /// Fire and forget.
    #[rpc(oneway)]
    async fn log(&self, line: ::std::string::String);
    /// Acknowledged before it runs.
    #[rpc(at_most_once)]
    async fn charge(&self, cents: u64) -> u64;
    /// No arguments.
    async fn ping(&self);
    /// Eight arguments.
    #[allow(clippy::too_many_arguments)]
    async fn many(
        &self,
        a: u8,
        b: u16,
        c: u32,
        d: u64,
        e: i8,
        f: i16,
        g: ::std::vec::Vec<Shape>,
        h: ::std::option::Option<T>,
    ) -> ::std::collections::HashMap<::std::string::String, Point>;
    /// A raw identifier.
    async fn r#type(&self, shape: Shape) -> T;
}

/// The implementation behind the server.
pub struct Impl {
    /// Where `log` puts its lines, so a test can wait for a oneway call.
    logged: ::tokio::sync::mpsc::UnboundedSender<::std::string::String>,
}

impl Everything for Impl {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
    async fn div(&self, a: i64, b: i64) -> ::std::result::Result<i64, MathError> {
        a.checked_div(b).ok_or(MathError)
    }
    async fn log(&self, line: ::std::string::String) {
        // The receiver outlives the server in the tests; a send error would
        // only mean the test already ended.
        let _ = self.logged.send(line);
    }
    async fn charge(&self, cents: u64) -> u64 {
        cents
    }
    async fn ping(&self) {}
    async fn many(
        &self,
        _a: u8,
        _b: u16,
        _c: u32,
        _d: u64,
        _e: i8,
        _f: i16,
        _g: ::std::vec::Vec<Shape>,
        _h: ::std::option::Option<T>,
    ) -> ::std::collections::HashMap<::std::string::String, Point> {
        ::std::collections::HashMap::new()
    }
    async fn r#type(&self, shape: Shape) -> T {
        match shape {
            Shape::Dot(_) => T(1),
            Shape::Rect { .. } => T(2),
        }
    }
}

/// Proves the client's methods and options exist with the documented
/// types, for any transport.
#[allow(
    dead_code,
    reason = "type-checked only: a call needs a served transport"
)]
async fn client_api<Tr: ::rpc_core::Transport>(
    transport: Tr,
) -> ::std::result::Result<(), ::rpc_core::RpcError> {
    let client = EverythingClient::new(transport)
        .with_timeout(::std::time::Duration::from_millis(100))
        .with_metadata("tenant", "a");
    let _: &::rpc_core::Client<Tr> = client.client();
    let _: i64 = client.add(1, 2).await?;
    let _: ::std::result::Result<i64, MathError> = client.div(1, 0).await?;
    let (): () = client.log(::std::string::String::new()).await?;
    let _: u64 = client.charge(5).await?;
    let (): () = client.ping().await?;
    let _ = client
        .many(
            1,
            2,
            3,
            4,
            5,
            6,
            ::std::vec::Vec::new(),
            ::std::option::Option::None,
        )
        .await?;
    let _: T = client.r#type(Shape::Dot(Point { x: 1, y: 2 })).await?;
    let _ = ::core::clone::Clone::clone(&client);
    ::std::result::Result::Ok(())
}

#[test]
fn server_exposes_the_descriptor() {
    use ::rpc_core::{DeliveryMode, MethodKind, Service};
    use ::std::iter::Iterator;

    let (logged, _) = ::tokio::sync::mpsc::unbounded_channel();
    let server = EverythingServer::new(Impl { logged });
    let descriptor = server.descriptor();
    ::std::assert!(::std::ptr::eq(descriptor, &EVERYTHING_DESCRIPTOR));
    ::std::assert_eq!(descriptor.name, "hygiene.v1");
    ::std::assert_eq!(descriptor.version, ::std::env!("CARGO_PKG_VERSION"));
    ::std::assert_eq!(descriptor.docs, "Every supported method shape.");
    let names: ::std::vec::Vec<&str> = descriptor.methods.iter().map(|m| m.name).collect();
    ::std::assert_eq!(
        names,
        ["add", "div", "log", "charge", "ping", "many", "type"]
    );
    let log = descriptor.method("log").unwrap();
    ::std::assert_eq!(log.kind, MethodKind::Oneway);
    ::std::assert_eq!(
        log.signature,
        "async fn log(&self, line: ::std::string::String)"
    );
    let charge = descriptor.method("charge").unwrap();
    ::std::assert_eq!(charge.delivery, DeliveryMode::AtMostOnce);
    ::std::assert_eq!(charge.kind, MethodKind::Call);
    ::std::assert_eq!(descriptor.method("add").unwrap().docs, "A plain call.");
    let _: &Impl = server.get_ref();
    let _: Impl = server.into_inner();
}

#[test]
fn every_method_shape_round_trips_over_the_memory_transport() {
    use ::std::option::Option::Some;
    use ::std::result::Result::{Err, Ok};

    let runtime = ::tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (logged, mut log_lines) = ::tokio::sync::mpsc::unbounded_channel();
        let transport = ::rpc_transport_mem::MemTransport::new();
        let server = ::rpc_core::Server::builder(::core::clone::Clone::clone(&transport))
            .serve(EverythingServer::new(Impl { logged }))
            .await
            .expect("serve");
        let client = EverythingClient::new(transport);

        ::std::assert_eq!(client.add(2, 3).await.expect("add"), 5);
        ::std::assert_eq!(client.div(7, 2).await.expect("div"), Ok(3));
        ::std::assert_eq!(client.div(1, 0).await.expect("div"), Err(MathError));
        client
            .log(::std::borrow::ToOwned::to_owned("hello"))
            .await
            .expect("log");
        ::std::assert_eq!(log_lines.recv().await.as_deref(), Some("hello"));
        ::std::assert_eq!(client.charge(250).await.expect("charge"), 250);
        client.ping().await.expect("ping");
        let many = client
            .many(1, 2, 3, 4, 5, 6, ::std::vec::Vec::new(), Some(T(9)))
            .await
            .expect("many");
        ::std::assert!(many.is_empty());
        let rect = Shape::Rect {
            from: Point { x: 0, y: 0 },
            to: Point { x: 1, y: 1 },
        };
        ::std::assert_eq!(client.r#type(rect).await.expect("type").0, 2);

        server.shutdown().await;
    });
}
