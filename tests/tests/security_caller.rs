//! Caller identity: every publish carries the connection's user as AMQP
//! `user_id`, RabbitMQ refuses any other value, and the server maps it into
//! the reserved metadata key `x-rpc-caller` that `Context::caller()` reads,
//! dropping whatever a client put under that key itself.

mod security_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::Channel;
use lapin::PublisherConfirm;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Consumer};
use rpc_core::{ContentType, Context, Server, ServerHandle, rpc_service};
use rpc_tests::broker::{amqp_builder, reply_queue};
use rpc_transport_amqp::{AmqpTransport, properties};

use security_support::{BrokerUrl, TempUser, raw_connection};

/// Reports who called.
#[rpc_service(name = "security.who")]
pub trait Who {
    /// `Context::caller()` of this call.
    async fn caller(&self) -> Option<String>;
}

/// Counts its runs.
struct WhoImpl {
    runs: Arc<AtomicUsize>,
}

impl Who for WhoImpl {
    async fn caller(&self) -> Option<String> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Context::current().and_then(|cx| cx.caller().map(str::to_owned))
    }
}

async fn serve_who(transport: AmqpTransport) -> (ServerHandle, Arc<AtomicUsize>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let server = Server::builder(transport)
        .concurrency(1)
        .serve(WhoServer::new(WhoImpl { runs: runs.clone() }))
        .await
        .expect("serve security.who");
    (server, runs)
}

/// A hand-made `caller` request.
fn request(correlation: &str, reply_to: &str) -> BasicProperties {
    BasicProperties::default()
        .with_correlation_id(correlation.into())
        .with_reply_to(reply_to.into())
        .with_type("caller".into())
        .with_content_type(ContentType::Json.mime().into())
}

/// The `caller` answer of the next reply.
async fn answer(replies: &mut Consumer) -> Option<String> {
    let delivery = tokio::time::timeout(Duration::from_secs(10), replies.next())
        .await
        .expect("a reply within 10 s")
        .expect("consumer open")
        .expect("delivery");
    let headers = delivery.properties.headers().clone().unwrap_or_default();
    if let Some(status) = headers.inner().get(properties::STATUS_HEADER) {
        panic!(
            "an error reply: {status:?} {:?}",
            headers.inner().get(properties::ERROR_HEADER)
        );
    }
    ContentType::Json
        .decode(&delivery.data)
        .expect("a JSON Option<String>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_sees_the_broker_validated_user() {
    let Some(builder) = amqp_builder("caller_user").await else {
        return;
    };
    let server_transport = builder.clone().connect().await.expect("connect");
    let (server, _runs) = serve_who(server_transport.clone()).await;

    // Our own connection's user.
    let client = builder.clone().connect().await.expect("connect");
    let who = WhoClient::new(client.clone());
    let me = BrokerUrl::from_env().user;
    assert_eq!(who.caller().await.expect("call"), Some(me.clone()));

    // Another user: the caller follows the connection, not the server.
    if let Some(user) = TempUser::create("caller", "caller-pw") {
        let other = AmqpTransport::builder(user.url())
            .queue_prefix(server_transport.request_queue(""))
            .connect()
            .await
            .expect("the temporary user logs in");
        let who = WhoClient::new(other.clone());
        assert_eq!(who.caller().await.expect("call"), Some(user.name.clone()));
        other.cleanup().await.expect("cleanup");
    }
    eprintln!("measured: caller: handler saw `{me}` and the temporary user");
    server.shutdown().await;
    client.cleanup().await.expect("cleanup");
    server_transport.cleanup().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_header_from_the_client_is_ignored() {
    let Some(builder) = amqp_builder("caller_header").await else {
        return;
    };
    let transport = builder.connect().await.expect("connect");
    let (server, runs) = serve_who(transport.clone()).await;
    let queue = transport.request_queue(WHO_DESCRIPTOR.name);

    let connection = raw_connection().await;
    let channel = connection.create_channel().await.expect("channel");
    let (reply_to, mut replies) = reply_queue(&channel).await;
    let mut forged = FieldTable::default();
    forged.insert(
        properties::CALLER_METADATA.into(),
        AMQPValue::LongString("admin".into()),
    );
    let me = BrokerUrl::from_env().user;

    // The header alone, no user_id: no caller at all.
    let props = request("1", &reply_to).with_headers(forged.clone());
    publish_json(&channel, &queue, props)
        .await
        .expect("publish");
    assert_eq!(answer(&mut replies).await, None);

    // The header with our real user_id: the user_id wins.
    let props = request("2", &reply_to)
        .with_headers(forged)
        .with_user_id(me.as_str().into());
    publish_json(&channel, &queue, props)
        .await
        .expect("publish");
    assert_eq!(answer(&mut replies).await, Some(me));
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    let _ = connection.close(200, "done".into()).await;
    server.shutdown().await;
    transport.cleanup().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_user_id_is_refused_by_the_broker() {
    let Some(builder) = amqp_builder("caller_spoof").await else {
        return;
    };
    let transport = builder.connect().await.expect("connect");
    let (server, runs) = serve_who(transport.clone()).await;
    let queue = transport.request_queue(WHO_DESCRIPTOR.name);
    let me = BrokerUrl::from_env().user;
    let spoofed = if me == "admin" { "root" } else { "admin" };

    let connection = raw_connection().await;
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let (reply_to, _replies) =
        reply_queue(&connection.create_channel().await.expect("channel")).await;
    let props = request("1", &reply_to).with_user_id(spoofed.into());
    // The broker answers the publish by closing the channel with 406
    // PRECONDITION_FAILED; lapin reports it on the publish or its confirm.
    let outcome = match publish_json(&channel, &queue, props).await {
        Ok(confirm) => confirm.await.map(drop),
        Err(error) => Err(error),
    };
    let error = outcome.expect_err("the broker must refuse a spoofed user_id");
    let text = error.to_string();
    eprintln!("measured: caller/spoof: publish with user_id={spoofed} as {me}: {text}");
    assert!(text.contains("PRECONDITION_FAILED"), "{text}");
    assert!(text.contains("user_id"), "{text}");
    assert!(
        !channel.status().connected(),
        "the broker closes the channel"
    );

    // The server never ran it: a later call through the same queue (FIFO,
    // one at a time) is the first and only run, and nothing is left over.
    let who = WhoClient::new(transport.clone());
    assert_eq!(who.caller().await.expect("call"), Some(me));
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the spoofed request ran");
    assert_eq!(security_support::depth(&connection, &queue).await, 0);
    let dlq = transport.dead_letter_queue(WHO_DESCRIPTOR.name);
    assert_eq!(security_support::depth(&connection, &dlq).await, 0);

    let _ = connection.close(200, "done".into()).await;
    server.shutdown().await;
    transport.cleanup().await.expect("cleanup");
}

/// Publishes a call of `caller` (JSON arguments: an object of named
/// fields, none here) straight to `queue`, as a plain AMQP client would.
async fn publish_json(
    channel: &Channel,
    queue: &str,
    props: BasicProperties,
) -> lapin::Result<PublisherConfirm> {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            b"{}",
            props,
        )
        .await
}
