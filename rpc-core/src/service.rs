//! The server-side dispatch contract that `#[rpc_service]` implements.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::descriptor::ServiceDescriptor;
use crate::envelope::{Envelope, ErrorKind, Header, Status};
use crate::transport::Delivery;

/// One service's dispatch: method name in, encoded reply out.
///
/// Generated `<Trait>Server<S>` types implement it; the [`Server`](crate::Server)
/// runtime drives it. `call` never fails: every failure becomes a [`Response`]
/// with an error status, so the caller always gets a typed answer. Panics
/// are caught by the runtime, not here.
pub trait Service: Send + Sync + 'static {
    /// The service's static description.
    fn descriptor(&self) -> &'static ServiceDescriptor;

    /// Runs one request and encodes its reply.
    fn call(&self, request: &Request) -> impl Future<Output = Response> + Send;
}

/// A request as a handler sees it: the header and the undecoded arguments.
///
/// It holds the transport's delivery whole, so the runtime can settle it
/// without copying the request, and a request dropped unsettled goes back
/// to the fabric.
#[derive(Debug)]
pub struct Request {
    delivery: Delivery,
}

impl Request {
    /// A request from a received envelope's parts.
    pub fn new(header: Header, body: Vec<u8>) -> Self {
        Request {
            delivery: Delivery::detached(Envelope { header, body }),
        }
    }

    /// A request that settles `delivery`.
    pub(crate) fn received(delivery: Delivery) -> Self {
        Request { delivery }
    }

    /// The delivery, for the runtime to settle.
    pub(crate) fn delivery(&mut self) -> &mut Delivery {
        &mut self.delivery
    }

    /// The delivery, for the runtime to answer.
    pub(crate) fn delivery_ref(&self) -> &Delivery {
        &self.delivery
    }

    /// The method's name.
    pub fn method(&self) -> &str {
        &self.header().method
    }

    /// The request's header.
    pub fn header(&self) -> &Header {
        &self.delivery.envelope().header
    }

    /// The encoded arguments.
    pub fn body(&self) -> &[u8] {
        &self.delivery.envelope().body
    }

    /// Decodes the arguments as `A`, runs `handler` on them and encodes what
    /// it returns, all in the codec the request came in.
    pub async fn respond<A, R, F, Fut>(&self, handler: F) -> Response
    where
        A: DeserializeOwned,
        R: Serialize,
        F: FnOnce(A) -> Fut,
        Fut: Future<Output = R>,
    {
        let codec = self.header().content_type;
        let args = match codec.decode::<A>(self.body()) {
            Ok(args) => args,
            Err(e) => return Response::error(ErrorKind::Decode, e.to_string()),
        };
        let value = handler(args).await;
        match codec.encode(&value) {
            Ok(body) => Response::ok(body),
            Err(e) => Response::error(ErrorKind::Encode, e.to_string()),
        }
    }

    /// The reply for a method this service does not have.
    pub fn no_such_method(&self) -> Response {
        Response::error(
            ErrorKind::NoSuchMethod,
            format!(
                "service `{}` has no method `{}`",
                self.header().service,
                self.header().method
            ),
        )
    }

    /// Takes the request apart. A request still to be settled is handed
    /// back to the fabric first.
    pub fn into_parts(self) -> (Header, Vec<u8>) {
        let Envelope { header, body } = self.delivery.into_envelope();
        (header, body)
    }
}

/// The outcome of one request: a status and, on success, the encoded value.
#[derive(Debug, PartialEq)]
pub struct Response {
    /// Success, or the kind of failure.
    pub status: Status,
    /// The encoded return value (empty on failure).
    pub body: Vec<u8>,
}

impl Response {
    /// A successful reply carrying `body`.
    pub fn ok(body: Vec<u8>) -> Self {
        Response {
            status: Status::Ok,
            body,
        }
    }

    /// A failed reply.
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        Response {
            status: Status::Error {
                kind,
                message: message.into(),
            },
            body: Vec::new(),
        }
    }
}
