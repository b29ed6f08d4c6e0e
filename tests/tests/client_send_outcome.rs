//! What a call's error says about its send, whatever order the client
//! learns things in.

use std::time::Duration;

use rpc_core::{Client, RpcError};
use rpc_tests::conformance::serve_calc;
use rpc_tests::services::CalcClient;
use rpc_tests::tap::Tap;
use rpc_transport_mem::MemTransport;

/// A call whose send fails `NotSent` (it never left: a retry is safe) ends
/// `NotSent`, even when its deadline passed too before the client looked:
/// on a loaded machine both timers can fire before the call's task runs,
/// and the deadline's `Timeout` ("sent, outcome unknown") would hide that
/// nothing was sent.
#[tokio::test(start_paused = true)]
async fn not_sent_wins_over_a_deadline_that_passed_at_the_same_time() {
    const DEADLINE: Duration = Duration::from_secs(1);
    let transport = Tap::new(MemTransport::new());
    let _server = serve_calc(transport.clone(), 1, 4).await;
    let calc = CalcClient::from_client(Client::new(transport.clone())).with_timeout(DEADLINE);
    calc.client().connect().await.expect("open the reply inbox");
    transport.stall_requests();
    let call = tokio::spawn({
        let calc = calc.clone();
        async move { calc.add(2, 3).await }
    });
    transport.wait_stalled(1).await;
    // Both happen before the call's task runs again: the deadline passes
    // (the client's watchdog ends the call `Timeout`), and the send fails.
    tokio::time::advance(DEADLINE * 2).await;
    transport.release_stalled();
    let result = call.await.expect("call task");
    assert!(matches!(result, Err(RpcError::NotSent)), "{result:?}");
    assert_eq!(calc.client().pending_calls(), 0, "the call's entry stayed");
}

/// A call whose send fails takes its entry out of the pending-call table:
/// nothing is left waiting for a reply that cannot come.
#[tokio::test]
async fn a_failed_send_leaves_no_pending_call() {
    let transport = MemTransport::new();
    let _server = serve_calc(transport.clone(), 1, 4).await;
    let calc = CalcClient::new(transport.clone());
    calc.client().connect().await.expect("open the reply inbox");
    transport.faults().disconnect();
    for _ in 0..3 {
        let result = calc.add(2, 3).await;
        assert!(matches!(result, Err(RpcError::NotSent)), "{result:?}");
    }
    assert_eq!(
        calc.client().pending_calls(),
        0,
        "failed calls left entries"
    );
}
