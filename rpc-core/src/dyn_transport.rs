//! A transport chosen at run time: [`DynTransport`] erases the concrete type.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_core::Stream;

use crate::envelope::Envelope;
use crate::error::TransportError;
use crate::transport::{Delivery, ReplySink, ServiceSpec, Transport};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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
    fn open_inbox(&self, sink: ReplySink) -> BoxFuture<'static, Result<DynInbox, TransportError>>;
    fn send_request<'a>(
        &'a self,
        inbox: &'a DynInbox,
        envelope: Envelope,
    ) -> BoxFuture<'a, Result<(), TransportError>>;
    fn send_oneway(&self, envelope: Envelope) -> BoxFuture<'static, Result<(), TransportError>>;
    fn serve(
        &self,
        service: ServiceSpec,
    ) -> BoxFuture<'static, Result<DynRequests, TransportError>>;
    fn serve_broadcast(
        &self,
        service: ServiceSpec,
    ) -> BoxFuture<'static, Result<DynRequests, TransportError>>;
    fn send_broadcast<'a>(
        &'a self,
        inbox: &'a DynInbox,
        envelope: Envelope,
    ) -> BoxFuture<'a, Result<(), TransportError>>;
}

/// The `T::Inbox` inside a `DynInbox`. Only [`ErasedTransport`] for `T`
/// makes `DynInbox`es, each from a `T::Inbox`, and a `DynTransport` wraps
/// one `T`, so the downcast holds; an inbox that is not one is as good as
/// closed.
fn inbox_of<T: Transport>(inbox: &DynInbox) -> Result<&T::Inbox, TransportError> {
    inbox
        .downcast_ref::<T::Inbox>()
        .ok_or(TransportError::Closed)
}

impl<T: Transport> ErasedTransport for T {
    fn open_inbox(&self, sink: ReplySink) -> BoxFuture<'static, Result<DynInbox, TransportError>> {
        let transport = self.clone();
        Box::pin(async move {
            let inbox = transport.open_inbox(sink).await?;
            Ok(Box::new(inbox) as DynInbox)
        })
    }

    fn send_request<'a>(
        &'a self,
        inbox: &'a DynInbox,
        envelope: Envelope,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move { self.send_request(inbox_of::<T>(inbox)?, envelope).await })
    }

    fn send_oneway(&self, envelope: Envelope) -> BoxFuture<'static, Result<(), TransportError>> {
        let transport = self.clone();
        Box::pin(async move { transport.send_oneway(envelope).await })
    }

    fn serve(
        &self,
        service: ServiceSpec,
    ) -> BoxFuture<'static, Result<DynRequests, TransportError>> {
        let transport = self.clone();
        Box::pin(async move {
            let requests = transport.serve(&service).await?;
            Ok(Box::pin(requests) as DynRequests)
        })
    }

    fn serve_broadcast(
        &self,
        service: ServiceSpec,
    ) -> BoxFuture<'static, Result<DynRequests, TransportError>> {
        let transport = self.clone();
        Box::pin(async move {
            let requests = transport.serve_broadcast(&service).await?;
            Ok(Box::pin(requests) as DynRequests)
        })
    }

    fn send_broadcast<'a>(
        &'a self,
        inbox: &'a DynInbox,
        envelope: Envelope,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move { self.send_broadcast(inbox_of::<T>(inbox)?, envelope).await })
    }
}

impl Transport for DynTransport {
    type Requests = DynRequests;
    type Inbox = DynInbox;

    fn open_inbox(
        &self,
        sink: ReplySink,
    ) -> impl Future<Output = Result<DynInbox, TransportError>> + Send {
        self.0.open_inbox(sink)
    }

    async fn send_request(
        &self,
        inbox: &DynInbox,
        envelope: Envelope,
    ) -> Result<(), TransportError> {
        self.0.send_request(inbox, envelope).await
    }

    fn send_oneway(
        &self,
        envelope: Envelope,
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        self.0.send_oneway(envelope)
    }

    fn serve(
        &self,
        service: &ServiceSpec,
    ) -> impl Future<Output = Result<DynRequests, TransportError>> + Send {
        self.0.serve(service.clone())
    }

    fn serve_broadcast(
        &self,
        service: &ServiceSpec,
    ) -> impl Future<Output = Result<DynRequests, TransportError>> + Send {
        self.0.serve_broadcast(service.clone())
    }

    async fn send_broadcast(
        &self,
        inbox: &DynInbox,
        envelope: Envelope,
    ) -> Result<(), TransportError> {
        self.0.send_broadcast(inbox, envelope).await
    }
}
