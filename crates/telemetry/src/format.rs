//! Log line formatting: the stock `tracing-subscriber` text or JSON formatter, with the
//! service name stamped on every line so that logs of several services can be mixed (one
//! `docker compose logs`, one log index) and still be told apart.
//!
//! JSON lines start with `{"service":"scan-worker",…}`; text lines end with
//! ` service=scan-worker`.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, format};
use tracing_subscriber::registry::LookupSpan;

/// The formatting layer for `service`, JSON when `json` is true. Writes to stdout.
pub(crate) fn layer<S>(service: &'static str, json: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if json {
        tracing_subscriber::fmt::layer()
            .json()
            .event_format(ServiceTagged { service, json: true, inner: format().json().flatten_event(true) })
            .with_writer(std::io::stdout)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .event_format(ServiceTagged { service, json: false, inner: format().with_ansi(false) })
            .with_writer(std::io::stdout)
            .boxed()
    }
}

/// Wraps a stock event formatter and adds the service name to what it wrote.
struct ServiceTagged<F> {
    service: &'static str,
    json: bool,
    inner: F,
}

impl<S, N, F> FormatEvent<S, N> for ServiceTagged<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::with_capacity(256);
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&tag_line(&line, self.service, self.json))
    }
}

/// Adds `service` to one formatted line (which ends with a newline).
fn tag_line(line: &str, service: &str, json: bool) -> String {
    if json {
        match line.strip_prefix('{') {
            Some(rest) => {
                let mut out = String::with_capacity(line.len() + service.len() + 16);
                out.push_str("{\"service\":\"");
                push_json_escaped(&mut out, service);
                out.push('"');
                if !rest.trim_start().starts_with('}') {
                    out.push(',');
                }
                out.push_str(rest);
                out
            }
            None => line.to_owned(),
        }
    } else {
        let body = line.strip_suffix('\n').unwrap_or(line);
        format!("{body} service={service}\n")
    }
}

fn push_json_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_start_with_the_service() {
        assert_eq!(
            tag_line("{\"level\":\"INFO\"}\n", "scan-worker", true),
            "{\"service\":\"scan-worker\",\"level\":\"INFO\"}\n"
        );
        assert_eq!(tag_line("{}\n", "a\"b", true), "{\"service\":\"a\\\"b\"}\n");
    }

    #[test]
    fn text_lines_end_with_the_service() {
        assert_eq!(
            tag_line("2026-01-01T00:00:00Z  INFO x: hello\n", "maintenance", false),
            "2026-01-01T00:00:00Z  INFO x: hello service=maintenance\n"
        );
    }

    #[test]
    fn every_formatted_line_carries_the_service() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt as _;

        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        let buf = Buf::default();
        let writer = buf.clone();
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .event_format(ServiceTagged {
                service: "result-processor",
                json: true,
                inner: format().json().flatten_event(true),
            })
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(host.id = "h1", duration_ms = 3, "ingested \"x\"");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(out.starts_with("{\"service\":\"result-processor\","), "{out}");
        assert!(out.contains("\"host.id\":\"h1\""), "{out}");
        assert!(out.contains("\"message\":\"ingested \\\"x\\\"\""), "{out}");
        assert!(out.ends_with("}\n"), "{out}");
    }
}
