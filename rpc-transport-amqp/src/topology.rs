//! What a served service needs on the broker: its request queue, bound to
//! the configured exchange, dead-lettering into its own queue.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};
use rpc_core::TransportError;

use crate::config::{Config, QueueKind};
use crate::error::protocol;
use crate::properties::long;
use crate::transport::{Shared, short};

/// How many messages a dead-letter queue keeps before dropping its oldest.
pub(crate) const DEAD_LETTER_MAX_LENGTH: i64 = 100_000;

/// Declares `service`'s queues (idempotent: declaring again with the same
/// options is a no-op) and returns the request queue's name.
pub(crate) async fn declare_service(
    channel: &Channel,
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
        lapin::types::AMQPValue::LongLongInt(DEAD_LETTER_MAX_LENGTH),
    );
    channel
        .queue_declare(short(&dead_letters)?, options, dead_letter_arguments)
        .await
        .map_err(|e| protocol("declare dead-letter queue", e))?;
    shared.record_declared(&dead_letters);

    // Refused requests (rejected without requeue) and requests whose
    // expiration passed go through the default exchange to the DLQ.
    let mut arguments = common;
    arguments.insert("x-dead-letter-exchange".into(), long(""));
    arguments.insert("x-dead-letter-routing-key".into(), long(&dead_letters));
    channel
        .queue_declare(short(&queue)?, options, arguments)
        .await
        .map_err(|e| protocol("declare request queue", e))?;
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
