//! What a served service needs on the broker: its request queue, bound to
//! the configured exchange, dead-lettering into its own queue.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};
use rpc_core::TransportError;

use crate::config::{Config, QueueKind};
use crate::error::protocol;
use crate::properties::long;
use crate::session::Session;
use crate::shared::{Shared, lock, short};

/// Declares the broadcast exchange (direct, durable) on `channel`, and
/// returns its name: `<prefix>rpc.broadcast`.
pub(crate) async fn declare_broadcast_exchange(
    channel: &Channel,
    shared: &Shared,
) -> Result<String, TransportError> {
    let exchange = format!("{}rpc.broadcast", shared.config.queue_prefix);
    let options = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            short(&exchange)?,
            ExchangeKind::Direct,
            options,
            FieldTable::default(),
        )
        .await
        .map_err(|e| protocol("declare broadcast exchange", e))?;
    lock(&shared.exchanges).insert(exchange.clone());
    Ok(exchange)
}

/// Declares a private queue for one server's broadcasts (server-named,
/// exclusive: it goes with the connection), bound to the broadcast exchange
/// under the service's name and under `*` (every service); returns its name.
pub(crate) async fn declare_broadcast(
    channel: &Channel,
    shared: &Shared,
    service: &str,
) -> Result<String, TransportError> {
    let exchange = declare_broadcast_exchange(channel, shared).await?;
    let options = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    let queue = channel
        .queue_declare("".into(), options, FieldTable::default())
        .await
        .map_err(|e| protocol("declare broadcast queue", e))?;
    let name = queue.name().as_str().to_owned();
    for key in [service, rpc_core::EVERY_SERVICE] {
        channel
            .queue_bind(
                short(&name)?,
                short(&exchange)?,
                short(key)?,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| protocol("bind broadcast queue", e))?;
    }
    Ok(name)
}

/// How many messages a dead-letter queue keeps before dropping its oldest.
pub(crate) const DEAD_LETTER_MAX_LENGTH: i64 = 100_000;

/// How many bytes of bodies a dead-letter queue keeps before dropping its
/// oldest: requests refused for their size would otherwise fill it.
pub(crate) const DEAD_LETTER_MAX_BYTES: i64 = 64 * 1024 * 1024;

/// Declares `service`'s queues (idempotent: declaring again with the same
/// options is a no-op) on a channel of its own, and returns the request
/// queue's name. A queue someone else declared with other arguments is
/// served as it is, with a warning (see [`declare_queue`]).
pub(crate) async fn declare_service(
    session: &Session,
    shared: &Shared,
    service: &str,
) -> Result<String, TransportError> {
    let mut channel = session.admin_channel().await?;
    let result = declare_on(&mut channel, session, shared, service).await;
    let _ = channel.close(200, "declared".into()).await;
    result
}

async fn declare_on(
    channel: &mut Channel,
    session: &Session,
    shared: &Shared,
    service: &str,
) -> Result<String, TransportError> {
    let config: &Config = &shared.config;
    let queue = config.request_queue(service);
    let dead_letters = config.dead_letter_queue(service);
    let mut common = FieldTable::default();
    if config.queue_kind == QueueKind::Quorum {
        common.insert("x-queue-type".into(), long("quorum"));
    }
    let options = QueueDeclareOptions {
        // Quorum queues exist only durable.
        durable: config.durable || config.queue_kind == QueueKind::Quorum,
        ..Default::default()
    };

    // Requests whose deadline passed in the queue are dead-lettered too, so
    // without a bound a service whose callers often time out would grow its
    // DLQ forever; the oldest go first.
    let mut dead_letter_arguments = common.clone();
    dead_letter_arguments.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(DEAD_LETTER_MAX_LENGTH),
    );
    dead_letter_arguments.insert(
        "x-max-length-bytes".into(),
        AMQPValue::LongLongInt(DEAD_LETTER_MAX_BYTES),
    );
    declare_queue(
        channel,
        session,
        &dead_letters,
        options,
        dead_letter_arguments,
        "declare dead-letter queue",
    )
    .await?;
    shared.record_declared(&dead_letters);

    // Refused requests (rejected without requeue) and requests whose
    // expiration passed go through the default exchange to the DLQ.
    let mut arguments = common;
    arguments.insert("x-dead-letter-exchange".into(), long(""));
    arguments.insert("x-dead-letter-routing-key".into(), long(&dead_letters));
    if config.queue_kind == QueueKind::Quorum {
        // A request that keeps killing its servers stops after this many
        // deliveries, dead-lettered at least once: the broker keeps it until
        // the dead-letter queue has it (which needs `reject-publish`
        // overflow; with the default it falls back to at-most-once).
        arguments.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(config.delivery_limit)),
        );
        arguments.insert("x-dead-letter-strategy".into(), long("at-least-once"));
        arguments.insert("x-overflow".into(), long("reject-publish"));
    }
    declare_queue(
        channel,
        session,
        &queue,
        options,
        arguments,
        "declare request queue",
    )
    .await?;
    shared.record_declared(&queue);

    if !config.exchange.is_empty() {
        let exchange_options = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                short(&config.exchange)?,
                ExchangeKind::Direct,
                exchange_options,
                FieldTable::default(),
            )
            .await
            .map_err(|e| protocol("declare exchange", e))?;
        channel
            .queue_bind(
                short(&queue)?,
                short(&config.exchange)?,
                short(&queue)?,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| protocol("bind request queue", e))?;
    }
    Ok(queue)
}

/// Declares `queue`. One that exists with other arguments (declared by a
/// worker in another language, or by an older version of ours) makes the
/// broker refuse the declare with `PRECONDITION_FAILED` and close the
/// channel: the queue is then checked with a passive declare on a new
/// channel and served as it is, with a warning that names the difference
/// (the broker's message does: "inequivalent arg 'x-max-length' ...").
async fn declare_queue(
    channel: &mut Channel,
    session: &Session,
    queue: &str,
    options: QueueDeclareOptions,
    arguments: FieldTable,
    operation: &'static str,
) -> Result<(), TransportError> {
    let refused = match channel
        .queue_declare(short(queue)?, options, arguments)
        .await
    {
        Ok(_) => return Ok(()),
        Err(error) if is_precondition_failed(&error) => error,
        Err(error) => return Err(protocol(operation, error)),
    };
    *channel = session.admin_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    channel
        .queue_declare(short(queue)?, passive, FieldTable::default())
        .await
        .map_err(|e| protocol(operation, e))?;
    tracing::warn!(
        queue,
        difference = %refused,
        "the queue exists with other arguments than ours; serving it as it is"
    );
    Ok(())
}

fn is_precondition_failed(error: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(amqp)
            if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED))
    )
}
