//! W3C trace context across process boundaries (RabbitMQ message headers).
//!
//! The publisher stores [`current_traceparent`] in the message's `traceparent` header; the
//! consumer creates its handling span and calls [`span_with_remote_parent`] with the header,
//! so the consumer's work appears as a child of the publisher's span in one trace.
//! `tracestate` is not carried: OpenWatch does not use vendor trace state.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The header (AMQP header or HTTP header) name that carries the trace context.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The W3C `traceparent` of the current span (`00-<trace id>-<span id>-<flags>`), or `None`
/// when there is no valid span context (no current span, or telemetry not initialised).
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT_HEADER)
}

/// Makes the remote span described by `traceparent` the parent of `span`. Invalid or empty
/// input is ignored (the span stays a root): a malformed header must never fail a message.
///
/// Call it right after creating the span, before entering it or creating children: the
/// OpenTelemetry span is started at that point and its parent cannot change afterwards.
pub fn span_with_remote_parent(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([(TRACEPARENT_HEADER.to_owned(), traceparent.trim().to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        // Fails only when the OpenTelemetry layer is absent or the span already started:
        // then the span simply stays a root, which is the documented fallback.
        let _ = span.set_parent(context);
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    fn subscriber() -> (impl tracing::Subscriber + Send + Sync, SdkTracerProvider) {
        let provider = SdkTracerProvider::builder().build();
        let tracer = provider.tracer("test");
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
        (subscriber, provider)
    }

    fn parts(traceparent: &str) -> Vec<String> {
        traceparent.split('-').map(str::to_owned).collect()
    }

    #[test]
    fn traceparent_round_trips_through_a_remote_parent() {
        let (subscriber, _provider) = subscriber();
        tracing::subscriber::with_default(subscriber, || {
            let publisher = tracing::info_span!("publish");
            let sent = publisher.in_scope(current_traceparent).expect("a traceparent inside a span");
            let sent_parts = parts(&sent);
            assert_eq!(sent_parts.len(), 4, "{sent}");
            assert_eq!(sent_parts[0], "00");
            assert_eq!(sent_parts[1].len(), 32);
            assert_eq!(sent_parts[2].len(), 16);
            assert_eq!(sent_parts[3], "01", "sampled");

            let consumer = tracing::info_span!("consume");
            span_with_remote_parent(&consumer, &sent);
            let received = consumer.in_scope(current_traceparent).expect("a traceparent");
            let received_parts = parts(&received);
            assert_eq!(received_parts[1], sent_parts[1], "same trace");
            assert_ne!(received_parts[2], sent_parts[2], "a new child span");
        });
    }

    #[test]
    fn invalid_traceparents_leave_the_span_a_root() {
        let (subscriber, _provider) = subscriber();
        tracing::subscriber::with_default(subscriber, || {
            for garbage in
                ["", "nonsense", "00-00000000000000000000000000000000-0000000000000000-01", "zz-1-2-3"]
            {
                let span = tracing::info_span!("consume");
                span_with_remote_parent(&span, garbage);
                let tp = span.in_scope(current_traceparent).expect("the span still has its own context");
                assert_eq!(parts(&tp).len(), 4);
            }
        });
    }

    #[test]
    fn no_span_means_no_traceparent() {
        let (subscriber, _provider) = subscriber();
        tracing::subscriber::with_default(subscriber, || {
            assert_eq!(current_traceparent(), None);
        });
        assert_eq!(current_traceparent(), None, "without a subscriber");
    }
}
