//! The settlements of one request channel, each sent once every reply
//! queued before it is written, off the call path.
//!
//! A server acks a request after its reply, on the request's channel: the
//! broker handles a channel's methods in order, so it has routed the reply
//! before it takes the ack (docs/reliability.md). But lapin writes method
//! frames (acks) ahead of the publishes it has queued, so the ack may be
//! queued only once lapin has written the reply. Awaited by the call, that
//! write woke the serving task once per request. Here a reply's call
//! queues the reply's frames and hands its write to this channel's
//! settler, and the settlement after it too: the call ends without waiting,
//! and one task per channel waits for the writes, in the order they were
//! queued (lapin writes a channel's publishes in that order), and queues
//! each settlement once every write before it is done. It wakes once per
//! batch of writes lapin finishes together.
//!
//! A write that fails means the channel or its connection is gone: the
//! settlements behind it are not sent (an ack without its reply would lose
//! the answer), and the channel is closed, which hands its unsettled
//! requests back to the queue for another delivery (the server's replay
//! cache answers them again).

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Poll;

use futures_util::FutureExt;
use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use tokio::sync::mpsc;

use crate::handoff::take_handed;
use crate::session::Unsettled;
use crate::shared::Written;

/// How a request is settled, once the replies before it are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settle {
    /// Done with: acked.
    Ack,
    /// Refused for good: rejected into the dead-letter queue.
    DeadLetter,
    /// Given back for another delivery: nacked with requeue.
    Requeue,
}

/// One step of a channel's settler, in the order the calls took them.
enum Step {
    /// A reply whose frames are queued: what follows waits for its write.
    Reply(Written),
    /// A settlement to queue once the replies before it are written.
    Settle(u64, Settle),
}

/// The handle every delivery of one subscription holds: steps go to the
/// channel's settler task, which ends once every handle is gone.
#[derive(Clone)]
pub(crate) struct Settler {
    steps: mpsc::UnboundedSender<Step>,
    /// The session's count of steps not yet done, which its close waits for.
    unsettled: Arc<Unsettled>,
}

impl Settler {
    /// Starts the settler of `channel`, a channel of the session whose
    /// steps `unsettled` counts.
    pub(crate) fn start(channel: Arc<Channel>, unsettled: Arc<Unsettled>) -> Self {
        Self::start_on(channel, unsettled)
    }

    fn start_on(target: impl Target, unsettled: Arc<Unsettled>) -> Self {
        let (steps, handed) = mpsc::unbounded_channel();
        tokio::spawn(run(target, unsettled.clone(), handed));
        Settler { steps, unsettled }
    }

    /// Hands over a reply whose frames lapin has queued.
    pub(crate) fn reply_queued(&self, written: Written) {
        self.hand(Step::Reply(written));
    }

    /// Settles `delivery_tag` once the replies handed over before are
    /// written. False if the settler has ended (its channel is closed).
    pub(crate) fn settle(&self, delivery_tag: u64, settle: Settle) -> bool {
        self.hand(Step::Settle(delivery_tag, settle))
    }

    fn hand(&self, step: Step) -> bool {
        self.unsettled.add();
        let handed = self.steps.send(step).is_ok();
        if !handed {
            // A settler that has ended took its channel down with it: a
            // reply's write fails or is moot, and the request comes back.
            self.unsettled.done();
        }
        handed
    }
}

/// Where a settler's settlements go: its request channel (a recorder in
/// the tests).
trait Target: Send + Sync + 'static {
    /// Queues a settlement frame.
    fn queue(&self, delivery_tag: u64, settle: Settle);
    /// Closes the channel after a reply could not be written.
    fn close(&self);
}

impl Target for Arc<Channel> {
    fn queue(&self, delivery_tag: u64, settle: Settle) {
        queue(self, delivery_tag, settle);
    }

    fn close(&self) {
        let channel = self.clone();
        tokio::spawn(async move {
            let _ = Channel::close(&channel, 200, "a reply was not written".into()).await;
        });
    }
}

async fn run(
    target: impl Target,
    unsettled: Arc<Unsettled>,
    mut handed: mpsc::UnboundedReceiver<Step>,
) {
    let mut waiting = VecDeque::new();
    // After a failed write nothing more is settled on this channel.
    let mut broken = false;
    std::future::poll_fn(|cx| {
        loop {
            match take_handed(&mut handed, &mut waiting, cx) {
                Poll::Ready(true) => {}
                Poll::Ready(false) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
            while let Some(front) = waiting.front_mut() {
                match front {
                    Step::Reply(written) => match written.as_mut().poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(error)) => {
                            if !broken {
                                tracing::debug!(%error, "a reply was not written; its channel's unsettled requests go back to the queue");
                                broken = true;
                                target.close();
                            }
                        }
                    },
                    Step::Settle(delivery_tag, settle) if !broken => {
                        target.queue(*delivery_tag, *settle);
                    }
                    Step::Settle(..) => {}
                }
                waiting.pop_front();
                unsettled.done();
            }
        }
    })
    .await;
}

/// Queues a settlement frame on `channel` without waiting for lapin to
/// write it: lapin writes frames in the order they were queued, so it
/// leaves before anything queued after it (the channel or connection close
/// included), and the broker answers none of them. A process that dies
/// between this and lapin's write leaves the request unsettled, and the
/// broker delivers it again, which at-least-once allows.
fn queue(channel: &Channel, delivery_tag: u64, settle: Settle) {
    let queued = match settle {
        Settle::Ack => channel
            .basic_ack(delivery_tag, BasicAckOptions::default())
            .now_or_never(),
        Settle::DeadLetter => channel
            .basic_reject(delivery_tag, BasicRejectOptions { requeue: false })
            .now_or_never(),
        Settle::Requeue => {
            let options = BasicNackOptions {
                multiple: false,
                requeue: true,
            };
            channel.basic_nack(delivery_tag, options).now_or_never()
        }
    };
    // lapin queues the frame on the first poll; what is left is a promise
    // of the write, which may be dropped. A channel already closed refuses
    // it: its requests go back to the queue with it.
    if let Some(Err(error)) = queued {
        tracing::debug!(%error, ?settle, "could not settle a delivery");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::oneshot;

    use super::*;

    /// Records what a settler sends.
    #[derive(Clone, Default)]
    struct Recorder {
        queued: Arc<Mutex<Vec<(u64, Settle)>>>,
        closed: Arc<Mutex<bool>>,
    }

    impl Target for Recorder {
        fn queue(&self, delivery_tag: u64, settle: Settle) {
            self.queued.lock().unwrap().push((delivery_tag, settle));
        }

        fn close(&self) {
            *self.closed.lock().unwrap() = true;
        }
    }

    impl Recorder {
        fn queued(&self) -> Vec<(u64, Settle)> {
            self.queued.lock().unwrap().clone()
        }
    }

    /// A reply write that ends when the test says so.
    fn write() -> (Written, oneshot::Sender<lapin::Result<()>>) {
        let (done, written) = oneshot::channel();
        (Box::pin(async move { written.await.unwrap() }), done)
    }

    /// Lets the settler task run until it waits.
    async fn settle_down() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_settlement_waits_for_the_replies_queued_before_it_to_be_written() {
        let recorder = Recorder::default();
        let unsettled = Arc::<Unsettled>::default();
        let settler = Settler::start_on(recorder.clone(), unsettled.clone());
        let (first, first_done) = write();
        let (second, second_done) = write();
        settler.reply_queued(first);
        assert!(settler.settle(1, Settle::Ack));
        settler.reply_queued(second);
        assert!(settler.settle(2, Settle::DeadLetter));
        // A request without a reply (oneway) behind them waits too.
        assert!(settler.settle(3, Settle::Requeue));
        settle_down().await;
        assert_eq!(
            recorder.queued(),
            vec![],
            "acked before its reply was written"
        );
        first_done.send(Ok(())).unwrap();
        settle_down().await;
        assert_eq!(recorder.queued(), vec![(1, Settle::Ack)]);
        // A closing session would wait: steps are left.
        assert!(unsettled.none().now_or_never().is_none());
        second_done.send(Ok(())).unwrap();
        settle_down().await;
        assert_eq!(
            recorder.queued(),
            vec![
                (1, Settle::Ack),
                (2, Settle::DeadLetter),
                (3, Settle::Requeue)
            ]
        );
        assert!(!*recorder.closed.lock().unwrap());
        assert!(unsettled.none().now_or_never().is_some());
    }

    #[tokio::test]
    async fn after_a_reply_that_was_not_written_nothing_is_settled_and_the_channel_closes() {
        let recorder = Recorder::default();
        let settler = Settler::start_on(recorder.clone(), Arc::default());
        assert!(settler.settle(1, Settle::Ack));
        let (failed, failed_done) = write();
        settler.reply_queued(failed);
        assert!(settler.settle(2, Settle::Ack));
        let (later, later_done) = write();
        settler.reply_queued(later);
        assert!(settler.settle(3, Settle::Ack));
        failed_done
            .send(Err(lapin::ErrorKind::ChannelsLimitReached.into()))
            .unwrap();
        later_done.send(Ok(())).unwrap();
        settle_down().await;
        // The ack before the failed write went; none after it.
        assert_eq!(recorder.queued(), vec![(1, Settle::Ack)]);
        assert!(*recorder.closed.lock().unwrap());
    }
}
