//! A transport chosen at run time: [`DynTransport`] erases the concrete type.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_core::Stream;

use crate::envelope::Envelope;
use crate::error::TransportError;
use crate::name::Address;
use crate::transport::{Delivery, ReplySink, ServiceSpec, Transport};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The request stream of a [`DynTransport`].
pub type DynRequests = Pin<Box<dyn Stream<Item = Delivery> + Send>>;

/// The inbox guard of a [`DynTransport`].
pub type DynInbox = Box<dyn Any + Send + Sync>;

/// Any [`Transport`], behind one type: for programs that pick the transport
/// at run time (from configuration, say) and for `Client<DynTransport>`
/// fields that should not name a transport.
///
/// Each operation costs one boxed future on top of the wrapped transport's;
/// code that knows its transport at compile time should use it directly.
///
/// ```
/// use rpc_core::DynTransport;
/// use rpc_transport_mem::MemTransport;
///
/// let transport = DynTransport::new(MemTransport::new());
/// let client = rpc_core::Client::new(transport);
/// # drop(client);
/// ```
#[derive(Clone)]
pub struct DynTransport(Arc<dyn ErasedTransport>);

impl DynTransport {
    /// Erases `transport`'s type.
    pub fn new<T: Transport>(transport: T) -> Self {
        DynTransport(Arc::new(transport))
    }
}

impl fmt::Debug for DynTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DynTransport")
    }
}

/// The object-safe mirror of [`Transport`]: owned arguments, boxed futures.
trait ErasedTransport: Send + Sync + 'static {
    fn open_inbox(&self, sink: ReplySink)
    -> BoxFuture<Result<(Address, DynInbox), TransportError>>;
    fn send(&self, to: Address, envelope: Envelope) -> BoxFuture<Result<(), TransportError>>;
    fn serve(&self, service: ServiceSpec) -> BoxFuture<Result<DynRequests, TransportError>>;
}

impl<T: Transport> ErasedTransport for T {
    fn open_inbox(
        &self,
        sink: ReplySink,
    ) -> BoxFuture<Result<(Address, DynInbox), TransportError>> {
        let transport = self.clone();
        Box::pin(async move {
            let (address, inbox) = transport.open_inbox(sink).await?;
            Ok((address, Box::new(inbox) as DynInbox))
        })
    }

    fn send(&self, to: Address, envelope: Envelope) -> BoxFuture<Result<(), TransportError>> {
        let transport = self.clone();
        Box::pin(async move { transport.send(&to, envelope).await })
    }

    fn serve(&self, service: ServiceSpec) -> BoxFuture<Result<DynRequests, TransportError>> {
        let transport = self.clone();
        Box::pin(async move {
            let requests = transport.serve(&service).await?;
            Ok(Box::pin(requests) as DynRequests)
        })
    }
}

impl Transport for DynTransport {
    type Requests = DynRequests;
    type Inbox = DynInbox;

    fn open_inbox(
        &self,
        sink: ReplySink,
    ) -> impl Future<Output = Result<(Address, DynInbox), TransportError>> + Send {
        self.0.open_inbox(sink)
    }

    fn send(
        &self,
        to: &Address,
        envelope: Envelope,
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        self.0.send(to.clone(), envelope)
    }

    fn serve(
        &self,
        service: &ServiceSpec,
    ) -> impl Future<Output = Result<DynRequests, TransportError>> + Send {
        self.0.serve(service.clone())
    }
}
