//! Per-call spans that nobody can see cost nothing.
//!
//! `rpc.call` and `rpc.serve` are DEBUG spans. A span no subscriber wants
//! is still built with its metadata, for `tracing`'s `log` fallback, and
//! every record, clone, enter and drop of it then looks at that metadata
//! (a record finds its field by name, a drop checks for a logger): about
//! 1,400 instructions a memory-transport call with no subscriber at all,
//! 250 with one that takes nothing at DEBUG, that nobody sees. Where
//! the span is disabled and the `log` crate lets nothing at DEBUG through,
//! so that no logger could see it either, the call paths hold
//! `Span::none()` instead, which costs nothing to use.

use tracing::{Level, Span};

/// The span `make` builds, or `Span::none()` where neither a subscriber
/// nor a logger can see it. Not built at all where no subscriber takes
/// DEBUG anywhere; built and checked where one takes DEBUG elsewhere, or
/// gives no level (a subscriber's per-callsite choice is only known once
/// the span is built). Both levels are read per call: a reloadable filter
/// or `log::set_max_level` can change them at any time.
#[inline]
pub(crate) fn debug_span(make: impl FnOnce() -> Span) -> Span {
    let logged = log::max_level() >= log::LevelFilter::Debug;
    if !logged && !tracing::level_enabled!(Level::DEBUG) {
        return Span::none();
    }
    let span = make();
    if span.is_disabled() && !logged {
        Span::none()
    } else {
        span
    }
}

/// A handle on `span` to record fields on, `None` for `Span::none()`, where
/// there is nothing to record (and no handle to drop).
#[inline]
pub(crate) fn recorder(span: &Span) -> Option<Span> {
    (!span.is_none()).then(|| span.clone())
}
