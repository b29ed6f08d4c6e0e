// One expansion reports every problem, not only the first one, and the
// trait itself is still emitted: `Impl` below type-checks against it.
use rpc_core::rpc_service;

#[rpc_service(nmae = "calc")]
pub trait Calculator {
    fn add(&self, a: i64, b: i64) -> i64;
    async fn scale(&mut self, factor: &f64);
    #[rpc(oneway)]
    async fn log(&self, line: String) -> bool;
    async fn new(&self);
}

struct Impl;

impl Calculator for Impl {
    fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
    async fn scale(&mut self, _factor: &f64) {}
    async fn log(&self, _line: String) -> bool {
        true
    }
    async fn new(&self) {}
}

fn main() {}
