//! The services the conformance suite calls, and their implementations.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rpc_core::{Context, rpc_service};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore, mpsc};

/// A nested value with every shape serde cares about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Plain integer.
    pub id: u64,
    /// Unicode text.
    pub customer: String,
    /// A sequence of nested structs.
    pub lines: Vec<OrderLine>,
    /// A map.
    pub tags: HashMap<String, i32>,
    /// An optional nested enum.
    pub status: Option<OrderStatus>,
}

/// One line of an [`Order`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    /// Product code.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// Unit price.
    pub price: f64,
}

/// An enum with unit, tuple and struct variants.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Unit variant.
    Open,
    /// Tuple variant.
    Shipped(String),
    /// Struct variant.
    Cancelled {
        /// Why.
        reason: String,
        /// Refunded amount.
        refund: Option<i64>,
    },
}

/// An application error that travels back typed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MathError {
    /// Division by zero.
    DivideByZero,
    /// Result does not fit.
    Overflow {
        /// The operation that overflowed.
        operation: String,
    },
}

/// Echoes values of many types back, to prove they survive both codecs.
#[rpc_service(name = "conformance.echo")]
pub trait Echo {
    /// Returns the order unchanged.
    async fn order(&self, order: Order) -> Order;
    /// Returns the text unchanged.
    async fn text(&self, text: String) -> String;
    /// Returns the bytes unchanged.
    async fn bytes(&self, bytes: Vec<u8>) -> Vec<u8>;
    /// Returns the arguments as a tuple.
    async fn many(
        &self,
        a: i8,
        b: u128,
        c: Option<String>,
        d: (bool, char),
        e: Vec<Option<u16>>,
    ) -> (i8, u128, Option<String>, (bool, char), Vec<Option<u16>>);
    /// Takes nothing, returns nothing.
    async fn nothing(&self);
}

/// The implementation of [`Echo`].
#[derive(Clone, Debug, Default)]
pub struct EchoImpl;

impl Echo for EchoImpl {
    async fn order(&self, order: Order) -> Order {
        order
    }
    async fn text(&self, text: String) -> String {
        text
    }
    async fn bytes(&self, bytes: Vec<u8>) -> Vec<u8> {
        bytes
    }
    async fn many(
        &self,
        a: i8,
        b: u128,
        c: Option<String>,
        d: (bool, char),
        e: Vec<Option<u16>>,
    ) -> (i8, u128, Option<String>, (bool, char), Vec<Option<u16>>) {
        (a, b, c, d, e)
    }
    async fn nothing(&self) {}
}

/// Arithmetic, failures and timing: the behaviours of the runtime.
#[rpc_service(name = "conformance.calc")]
pub trait Calc {
    /// Adds two numbers.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// Divides; dividing by zero is an application error.
    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError>;
    /// Records a line; nobody waits for it.
    #[rpc(oneway)]
    async fn log(&self, line: String);
    /// Never returns.
    async fn hang(&self);
    /// Panics with `message`.
    async fn boom(&self, message: String) -> u32;
    /// Waits until the test opens the gate, then returns `n`.
    async fn gated(&self, n: u32) -> u32;
    /// Returns what the handler's context says.
    async fn context(&self) -> ContextView;
    /// Calls `context()` on the same service from inside the handler, with a
    /// client whose own timeout is the 30 s default, and returns what the
    /// inner call saw: proof that onward calls inherit the caller's deadline.
    async fn onward(&self) -> ContextView;
    /// Returns the id of the server instance that ran it.
    async fn whoami(&self) -> u32;
    /// Charges once; marked at-most-once.
    #[rpc(at_most_once)]
    async fn charge(&self, cents: u64) -> u64;
    /// Never returns, and counts its handlers alive in the probe
    /// ([`CalcProbe::wait_lingering`]): a handler dropped by the server shows.
    async fn linger(&self);
    /// Works `ms` milliseconds, then counts itself finished; marked to run
    /// to completion past its deadline.
    #[rpc(run_to_completion)]
    async fn work(&self, ms: u64) -> u64;
}

/// What a handler saw in its [`Context`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContextView {
    /// Milliseconds left before the deadline, when the handler ran.
    pub remaining_ms: Option<u64>,
    /// The correlation id.
    pub correlation_id: u64,
    /// The metadata entry `tenant`.
    pub tenant: Option<String>,
    /// Method name as the context reports it.
    pub method: String,
}

/// Shared observation points between a test and its [`CalcImpl`].
#[derive(Debug)]
pub struct CalcProbe {
    /// Lines received by `log`.
    pub logged: mpsc::UnboundedSender<String>,
    /// Calls currently inside `gated`.
    pub in_gate: AtomicUsize,
    /// Signalled whenever a call enters `gated`.
    pub entered: Notify,
    /// `gated` calls wait for a permit here.
    pub gate: Semaphore,
    /// Calls that ran any handler.
    pub calls: AtomicUsize,
    /// `linger` handlers alive.
    pub lingering: AtomicUsize,
    /// Signalled whenever `lingering` changes.
    pub lingering_changed: Notify,
    /// `work` handlers that ran to their end.
    pub worked: AtomicUsize,
}

impl CalcProbe {
    /// A probe and the receiving end of the log lines.
    pub fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<String>) {
        let (logged, lines) = mpsc::unbounded_channel();
        let probe = CalcProbe {
            logged,
            in_gate: AtomicUsize::new(0),
            entered: Notify::new(),
            gate: Semaphore::new(0),
            calls: AtomicUsize::new(0),
            lingering: AtomicUsize::new(0),
            lingering_changed: Notify::new(),
            worked: AtomicUsize::new(0),
        };
        (Arc::new(probe), lines)
    }

    /// Waits until `n` calls are inside `gated`.
    pub async fn wait_in_gate(&self, n: usize) {
        loop {
            let entered = self.entered.notified();
            if self.in_gate.load(Ordering::SeqCst) >= n {
                return;
            }
            entered.await;
        }
    }
}

impl CalcProbe {
    /// Waits until exactly `n` `linger` handlers are alive.
    pub async fn wait_lingering(&self, n: usize) {
        loop {
            let changed = self.lingering_changed.notified();
            if self.lingering.load(Ordering::SeqCst) == n {
                return;
            }
            changed.await;
        }
    }
}

/// One `linger` handler alive, counted in the probe until dropped.
struct Lingering<'a>(&'a CalcProbe);

impl<'a> Lingering<'a> {
    fn enter(probe: &'a CalcProbe) -> Self {
        probe.lingering.fetch_add(1, Ordering::SeqCst);
        probe.lingering_changed.notify_waiters();
        Lingering(probe)
    }
}

impl Drop for Lingering<'_> {
    fn drop(&mut self) {
        self.0.lingering.fetch_sub(1, Ordering::SeqCst);
        self.0.lingering_changed.notify_waiters();
    }
}

/// The implementation of [`Calc`]; `onward` calls back through `client`.
pub struct CalcImpl<T: rpc_core::Transport> {
    /// Which server instance this is.
    pub id: u32,
    /// What tests observe.
    pub probe: Arc<CalcProbe>,
    /// A client for onward calls.
    pub client: CalcClient<T>,
}

impl<T: rpc_core::Transport> CalcImpl<T> {
    /// Server instance `id` reporting to `probe`, calling onward over
    /// `transport`.
    pub fn new(id: u32, probe: Arc<CalcProbe>, transport: &T) -> Self {
        CalcImpl {
            id,
            probe,
            client: CalcClient::new(transport.clone()),
        }
    }
}

impl<T: rpc_core::Transport> Calc for CalcImpl<T> {
    async fn add(&self, a: i64, b: i64) -> i64 {
        self.probe.calls.fetch_add(1, Ordering::SeqCst);
        a + b
    }
    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError> {
        self.probe.calls.fetch_add(1, Ordering::SeqCst);
        if b == 0 {
            return Err(MathError::DivideByZero);
        }
        a.checked_div(b).ok_or(MathError::Overflow {
            operation: "div".into(),
        })
    }
    async fn log(&self, line: String) {
        self.probe.calls.fetch_add(1, Ordering::SeqCst);
        let _ = self.probe.logged.send(line);
    }
    async fn hang(&self) {
        self.probe.calls.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>().await
    }
    async fn boom(&self, message: String) -> u32 {
        self.probe.calls.fetch_add(1, Ordering::SeqCst);
        panic!("{message}")
    }
    async fn gated(&self, n: u32) -> u32 {
        self.probe.calls.fetch_add(1, Ordering::SeqCst);
        self.probe.in_gate.fetch_add(1, Ordering::SeqCst);
        self.probe.entered.notify_waiters();
        let permit = self.probe.gate.acquire().await.expect("gate open");
        permit.forget();
        self.probe.in_gate.fetch_sub(1, Ordering::SeqCst);
        n
    }
    async fn context(&self) -> ContextView {
        self.probe.calls.fetch_add(1, Ordering::SeqCst);
        let cx = Context::current().expect("handlers run in a context");
        ContextView {
            remaining_ms: cx.remaining().map(|d| d.as_millis() as u64),
            correlation_id: cx.correlation_id(),
            tenant: cx.metadata().get("tenant").map(str::to_owned),
            method: cx.method().to_owned(),
        }
    }
    async fn onward(&self) -> ContextView {
        self.probe.calls.fetch_add(1, Ordering::SeqCst);
        self.client.context().await.expect("onward call")
    }
    async fn whoami(&self) -> u32 {
        self.probe.calls.fetch_add(1, Ordering::SeqCst);
        // Let the other servers take the next request while this one is busy.
        tokio::task::yield_now().await;
        self.id
    }
    async fn charge(&self, cents: u64) -> u64 {
        self.probe.calls.fetch_add(1, Ordering::SeqCst);
        cents
    }
    async fn linger(&self) {
        self.probe.calls.fetch_add(1, Ordering::SeqCst);
        let _alive = Lingering::enter(&self.probe);
        std::future::pending::<()>().await
    }
    async fn work(&self, ms: u64) -> u64 {
        self.probe.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        self.probe.worked.fetch_add(1, Ordering::SeqCst);
        ms
    }
}

/// A newer version of [`Calc`], as a client built from it sees the service:
/// one method the server does not have, and one whose arguments changed type.
#[rpc_service(name = "conformance.calc")]
pub trait CalcNext {
    /// The same name as [`Calc::add`], with arguments of other types.
    async fn add(&self, a: String, b: String) -> String;
    /// A method the server does not know.
    async fn sqrt(&self, x: f64) -> f64;
}

/// Calls `gated(n)` for every `n` of `ids`, each on a task of its own, so
/// they wait in the server's gate together.
pub fn spawn_gated<T: rpc_core::Transport>(
    calc: &CalcClient<T>,
    ids: std::ops::Range<u32>,
) -> Vec<tokio::task::JoinHandle<Result<u32, rpc_core::RpcError>>> {
    ids.map(|n| {
        let calc = calc.clone();
        tokio::spawn(async move { calc.gated(n).await })
    })
    .collect()
}
