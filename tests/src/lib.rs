//! Shared support for the end-to-end tests: the services under test, the
//! conformance suite every transport runs, and a traffic tap.

pub mod broker;
pub mod cluster;
pub mod conformance;
pub mod kafka;
pub mod noise;
pub mod rabbitmqctl;
pub mod relay;
pub mod services;
pub mod tap;
pub mod zmq;
