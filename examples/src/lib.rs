//! Shared pieces of the example programs: the calculator service they serve
//! and call, and where to find the broker.

pub mod calculator;
pub mod metrics_endpoint;

/// The broker the AMQP examples use: `AMQP_URL`, else the local RabbitMQ.
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// The endpoint the ZeroMQ examples use: `ZMQ_ENDPOINT`, else
/// `tcp://127.0.0.1:5555`.
pub fn zmq_endpoint() -> String {
    std::env::var("ZMQ_ENDPOINT").unwrap_or_else(|_| "tcp://127.0.0.1:5555".to_owned())
}
