//! The `opentelemetry` feature: the trace context of the current `tracing`
//! span, as OpenTelemetry (through `tracing-opentelemetry`) knows it, so the
//! spans an OTLP backend receives are linked across services. Without the
//! feature, these do nothing and the runtime's own ids are used.

use crate::trace::TraceContext;

/// The OpenTelemetry context of the current span, when it has a valid one.
#[cfg(feature = "opentelemetry")]
pub(crate) fn current() -> Option<TraceContext> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| TraceContext {
        trace_id: u128::from_be_bytes(span_context.trace_id().to_bytes()),
        span_id: u64::from_be_bytes(span_context.span_id().to_bytes()),
        sampled: span_context.is_sampled(),
    })
}

/// Makes `trace`'s parent the OpenTelemetry parent of `span`.
#[cfg(feature = "opentelemetry")]
pub(crate) fn set_parent(span: &tracing::Span, caller: Option<TraceContext>) {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let Some(caller) = caller else { return };
    let flags = if caller.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let remote = SpanContext::new(
        TraceId::from_bytes(caller.trace_id.to_be_bytes()),
        SpanId::from_bytes(caller.span_id.to_be_bytes()),
        flags,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// Without the feature: no OpenTelemetry context.
#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn current() -> Option<TraceContext> {
    None
}

/// Without the feature: nothing to link.
#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn set_parent(span: &tracing::Span, caller: Option<TraceContext>) {
    let _ = (span, caller);
}
