//! Reserved metadata: keys under `x-rpc-` are the transports' own (the
//! caller's identity is one), so no client can set them. A client given one
//! fails its calls with a typed error before sending, on every transport,
//! and the memory transport, which authenticates nobody, drops them from
//! anything sent to it.

use std::sync::Arc;
use std::time::Duration;

use rpc_core::{
    ContentType, Context, Envelope, Header, Metadata, Name, ReplyHandler, ReplySink, RpcError,
    Server, Transport, rpc_service,
};
use rpc_tests::broker::amqp_builder;
use rpc_transport_mem::MemTransport;
use tokio::sync::mpsc;

/// Reports who called, as the handler's context tells it.
#[rpc_service(name = "security.metadata")]
pub trait WhoCalls {
    /// `Context::caller()` and the reserved keys the handler can see.
    async fn seen(&self) -> (Option<String>, Vec<String>);
}

struct WhoCallsImpl;

impl WhoCalls for WhoCallsImpl {
    async fn seen(&self) -> (Option<String>, Vec<String>) {
        Context::with_current(|cx| {
            let cx = cx.expect("a handler has a context");
            let reserved = cx
                .metadata()
                .iter()
                .map(|(k, _)| k.to_owned())
                .filter(|k| k.starts_with(Metadata::RESERVED_PREFIX))
                .collect();
            (cx.caller().map(str::to_owned), reserved)
        })
    }
}

/// A client that claims to be `admin` gets `Encode` before anything is sent.
async fn spoofing_client_is_refused<T: Transport>(transport: T) {
    let _server = Server::builder(transport.clone())
        .serve(WhoCallsServer::new(WhoCallsImpl))
        .await
        .expect("serve");
    let client = WhoCallsClient::new(transport);
    let honest = client.seen().await.expect("an honest call");
    assert!(
        honest.1.iter().all(|k| k == Context::CALLER_KEY),
        "{honest:?}"
    );

    let spoofing = client.with_metadata(Context::CALLER_KEY, "admin");
    match spoofing.seen().await {
        Err(RpcError::Encode { message }) => {
            assert!(message.contains("x-rpc-caller"), "{message}");
        }
        other => panic!("a reserved key was sent: {other:?}"),
    }
    let other_reserved = client.with_metadata("x-rpc-anything", "1");
    assert!(matches!(
        other_reserved.seen().await,
        Err(RpcError::Encode { .. })
    ));
    assert_eq!(client.client().pending_calls(), 0);
}

#[tokio::test]
async fn a_client_cannot_send_reserved_keys_over_memory() {
    spoofing_client_is_refused(MemTransport::new()).await;
}

#[tokio::test]
async fn a_client_cannot_send_reserved_keys_over_amqp() {
    let Some(builder) = amqp_builder("security_metadata").await else {
        return;
    };
    let transport = builder.connect().await.expect("connect");
    spoofing_client_is_refused(transport.clone()).await;
    transport.cleanup().await.expect("delete the test queues");
}

/// An envelope put on the memory transport by hand, past the client's
/// check, still reaches the handler without the reserved keys.
#[tokio::test]
async fn the_memory_transport_drops_reserved_keys_from_what_it_is_sent() {
    let transport = MemTransport::new();
    let _server = Server::builder(transport.clone())
        .serve(WhoCallsServer::new(WhoCallsImpl))
        .await
        .expect("serve");
    // A reply address of our own, to read the raw answer.
    let (replies_tx, mut replies) = mpsc::unbounded_channel();
    let sink = ReplySink::new(Arc::new(Forward(replies_tx)));
    let inbox = transport.open_inbox(sink).await.expect("inbox");
    let mut header = Header::request(
        Name::from_static("security.metadata"),
        Name::from_static("seen"),
        ContentType::Json,
    );
    header.correlation_id = 1;
    header.metadata.insert(Context::CALLER_KEY, "admin");
    header.metadata.insert("x-rpc-role", "root");
    header.metadata.insert("tenant", "blue");
    // `seen` takes no arguments: its argument struct is an empty object.
    let body = b"{}".to_vec();
    transport
        .send_request(&inbox, Envelope { header, body })
        .await
        .expect("send");
    let reply = tokio::time::timeout(Duration::from_secs(5), replies.recv())
        .await
        .expect("a reply")
        .expect("the sink is open");
    assert_eq!(reply.header.status, rpc_core::Status::Ok);
    let (caller, reserved): (Option<String>, Vec<String>) =
        ContentType::Json.decode(&reply.body).expect("decode");
    assert_eq!(caller, None, "the spoofed caller reached the handler");
    assert!(reserved.is_empty(), "{reserved:?}");
}

/// Forwards what arrives at an inbox to a channel.
struct Forward(mpsc::UnboundedSender<Envelope>);

impl ReplyHandler for Forward {
    fn deliver(&self, envelope: Envelope) {
        let _ = self.0.send(envelope);
    }
    fn connection_lost(&self) {}
    fn closed(&self) {}
}
