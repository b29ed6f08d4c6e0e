//! The server side of introspection: answers queries from the request
//! stream and from the broadcast stream.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::{INFO, Info, PING, Ping, STATS, Stats};
use crate::descriptor::ServiceDescriptor;
use crate::envelope::{Envelope, ErrorKind, Kind};
use crate::error::TransportError;
use crate::metrics::ServerMeter;
use crate::service::Response;
use crate::transport::{Delivery, ServiceSpec, Settlement, Transport};

/// What a server's introspection answers from.
pub(crate) struct Responder {
    instance: String,
    descriptor: &'static ServiceDescriptor,
    started: Instant,
    meter: Arc<ServerMeter>,
}

impl Responder {
    pub(crate) fn new(descriptor: &'static ServiceDescriptor, meter: Arc<ServerMeter>) -> Self {
        Responder {
            instance: format!(
                "{}-{:08x}",
                std::process::id(),
                crate::trace::random_nonzero() as u32
            ),
            descriptor,
            started: Instant::now(),
            meter,
        }
    }

    /// Answers one query and acks it: queries change nothing, so there is
    /// nothing to redeliver or dead-letter.
    pub(crate) async fn answer(self: Arc<Self>, delivery: Delivery) {
        let header = &delivery.envelope().header;
        let response = self.response(&header.method, header.content_type);
        if header.kind == Kind::Request {
            let reply = Envelope {
                header: header.reply(response.status),
                body: response.body,
            };
            if let Err(error) = delivery.reply(reply).await {
                tracing::debug!(%error, "could not answer an introspection query");
            }
        }
        let _ = delivery.settle(Settlement::Ack).await;
    }

    fn response(&self, method: &str, codec: crate::ContentType) -> Response {
        let uptime_secs = self.started.elapsed().as_secs_f64();
        let descriptor = self.descriptor;
        let encoded = match method {
            PING => codec.encode(&Ping {
                instance: self.instance.clone(),
                service: descriptor.name.to_owned(),
                version: descriptor.version.to_owned(),
                uptime_secs,
            }),
            INFO => codec.encode(&Info::of(&self.instance, descriptor)),
            STATS => codec.encode(&Stats {
                instance: self.instance.clone(),
                service: descriptor.name.to_owned(),
                uptime_secs,
                methods: self.meter.stats(),
            }),
            other => {
                return Response::error(
                    ErrorKind::NoSuchMethod,
                    format!("no introspection query `{other}`"),
                );
            }
        };
        match encoded {
            Ok(body) => Response::ok(body),
            Err(e) => Response::error(ErrorKind::Encode, e.to_string()),
        }
    }

    /// Answers the service's broadcasts until dropped; `None` when the
    /// transport has no broadcasts (queries then reach one instance at a time).
    pub(crate) async fn serve_broadcasts<T: Transport>(
        self: Arc<Self>,
        transport: &T,
    ) -> Result<Option<BroadcastTask>, TransportError> {
        let spec = ServiceSpec::new(self.descriptor.name, 1);
        let mut queries = match transport.serve_broadcast(&spec).await {
            Ok(queries) => queries,
            Err(TransportError::Unsupported { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        let task = tokio::spawn(async move {
            while let Some(delivery) = queries.next().await {
                self.clone().answer(delivery).await;
            }
        });
        Ok(Some(BroadcastTask(task)))
    }
}

/// The task answering a server's broadcasts; stops when dropped.
#[derive(Debug)]
pub(crate) struct BroadcastTask(JoinHandle<()>);

impl Drop for BroadcastTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}
