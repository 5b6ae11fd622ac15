//! The JSON-lines event format: one object per line with `timestamp`, `level`, `target`,
//! `message`, the event's fields at the top level, `trace_id` and `span_id` inside a traced
//! request, and `span` holding the current span's fields (the request id; the `otel.*` fields
//! that steer the trace layer are left out).
//!
//! Written by hand because the access log is on the hot path: tracing-subscriber's JSON format
//! stores span fields as a JSON string and parses it back for every event, which cost a
//! fifth of the service's throughput in bench/run. Here span fields are stored as a ready-made
//! JSON fragment and copied.

use std::fmt::{self, Write as _};

use time::OffsetDateTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::rfc3339::Rfc3339Utc;

/// Room for a request span's fields (`"request_id":"…"`, 49 bytes for a generated id) without
/// growing.
const SPAN_FIELDS_CAPACITY: usize = 96;

/// Formats events as JSON lines.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLines;

/// Formats span fields as a JSON fragment (`"key":value,…`) to embed in each event's `span`.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonFields;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        // Before the span's extensions are borrowed below: this locks the trace layer's.
        let trace = super::traces::current_ids();
        writer.write_str("{\"timestamp\":\"")?;
        write_utc_now(&mut writer)?;
        // Pieces rather than `write!`: the formatting machinery cost more than the copies.
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(metadata.level().as_str())?;
        writer.write_str("\",\"target\":")?;
        write_json_string(&mut writer, metadata.target())?;
        let mut fields = Fields::new(&mut writer, false);
        event.record(&mut fields);
        fields.result?;
        if let Some((trace_id, span_id)) = trace {
            writer.write_str(",\"trace_id\":\"")?;
            writer.write_str(&trace_id)?;
            writer.write_str("\",\"span_id\":\"")?;
            writer.write_str(&span_id)?;
            writer.write_char('"')?;
        }
        if let Some(span) = ctx.lookup_current() {
            writer.write_str(",\"span\":{\"name\":\"")?;
            writer.write_str(span.name())?;
            writer.write_char('"')?;
            if let Some(recorded) = span.extensions().get::<FormattedFields<JsonFields>>()
                && !recorded.fields.is_empty()
            {
                writer.write_char(',')?;
                writer.write_str(&recorded.fields)?;
            }
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        // Written into a buffer first, then copied once: the span's own string starts empty,
        // and growing it field by field reallocated it on every request (docs/performance.md).
        let mut fragment = String::with_capacity(SPAN_FIELDS_CAPACITY);
        let mut visitor = Fields::new(&mut fragment, true);
        fields.record(&mut visitor);
        visitor.result?;
        writer.write_str(&fragment)
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut appended = String::new();
        let mut visitor = Fields::new(&mut appended, current.fields.is_empty());
        fields.record(&mut visitor);
        visitor.result?;
        current.fields.push_str(&appended);
        Ok(())
    }
}

/// Writes `"name":value` pairs, each preceded by a comma except the very first when `first`.
struct Fields<'a, W: fmt::Write> {
    out: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<'a, W: fmt::Write> Fields<'a, W> {
    fn new(out: &'a mut W, first: bool) -> Self {
        Self {
            out,
            first,
            result: Ok(()),
        }
    }

    fn pair(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_err() || field.name().starts_with("otel.") {
            return;
        }
        let separator = if std::mem::take(&mut self.first) {
            ""
        } else {
            ","
        };
        self.result = (|| {
            self.out.write_str(separator)?;
            write_json_string(self.out, field.name())?;
            self.out.write_char(':')?;
            value(self.out)
        })();
    }

    fn integer(&mut self, field: &Field, value: impl itoa::Integer) {
        self.pair(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }
}

impl<W: fmt::Write> Visit for Fields<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.pair(field, |out| write_json_string(out, value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.integer(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.integer(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.pair(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity.
        if value.is_finite() {
            self.pair(field, |out| write!(out, "{value}"));
        } else {
            self.pair(field, |out| write!(out, "\"{value}\""));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.pair(field, |out| write_json_display(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.pair(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value:?}")?;
            out.write_char('"')
        });
    }
}

fn write_json_string(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(&mut *out).write_str(value)?;
    out.write_char('"')
}

fn write_json_display(out: &mut impl fmt::Write, value: &dyn fmt::Display) -> fmt::Result {
    out.write_char('"')?;
    write!(Escaped(&mut *out), "{value}")?;
    out.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string.
struct Escaped<'a, W: fmt::Write + ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut plain_from = 0;
        for (index, byte) in text.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&text[plain_from..index])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain_from = index + 1;
        }
        self.0.write_str(&text[plain_from..])
    }
}

/// RFC 3339 in UTC with microseconds, like `2026-11-25T17:36:23.123456Z`.
fn write_utc_now(out: &mut impl fmt::Write) -> fmt::Result {
    out.write_str(Rfc3339Utc::new(OffsetDateTime::now_utc(), 6).as_str())
}

#[cfg(test)]
mod tests {
    use std::io::{self, Read, Seek, SeekFrom};
    use std::sync::Arc;

    use serde_json::Value;

    use super::*;

    fn capture(emit: impl FnOnce()) -> Vec<Value> {
        // tracing-subscriber writes to an `Arc<File>` as it is: no writer type of our own.
        let sink = Arc::new(tempfile::tempfile().unwrap());
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .with_writer(sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let mut text = String::new();
        (&*sink).seek(SeekFrom::Start(0)).unwrap();
        (&*sink).read_to_string(&mut text).unwrap();
        text.lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"))
            })
            .collect()
    }

    #[test]
    fn events_are_one_json_object_per_line_with_their_span() {
        let events = capture(|| {
            tracing::info!(target: "outside", count = 3_u64, "plain");
            let span = tracing::info_span!("request", request_id = "r-1", attempt = 2_i64);
            span.in_scope(|| {
                tracing::warn!(method = %"GET", status = 503_u16, latency_ms = 0.25, ok = false, "with \"quotes\"\n");
            });
        });
        assert_eq!(events.len(), 2);
        let plain = &events[0];
        assert_eq!(plain["level"], "INFO");
        assert_eq!(plain["target"], "outside");
        assert_eq!(plain["message"], "plain");
        assert_eq!(plain["count"], 3);
        assert!(plain.get("span").is_none());
        let timestamp = plain["timestamp"].as_str().unwrap();
        assert_eq!(
            timestamp.len(),
            "2026-11-25T17:36:23.123456Z".len(),
            "{timestamp}"
        );
        assert!(timestamp.ends_with('Z'));

        let inner = &events[1];
        assert_eq!(inner["level"], "WARN");
        assert_eq!(inner["message"], "with \"quotes\"\n");
        assert_eq!(inner["method"], "GET");
        assert_eq!(inner["status"], 503);
        assert_eq!(inner["latency_ms"], 0.25);
        assert_eq!(inner["ok"], false);
        assert_eq!(inner["span"]["name"], "request");
        assert_eq!(inner["span"]["request_id"], "r-1");
        assert_eq!(inner["span"]["attempt"], 2);
    }

    #[test]
    fn strings_are_escaped_and_numbers_stay_valid_json() {
        let events = capture(|| {
            let error = io::Error::other("broken \\ pipe\t\u{1}");
            tracing::error!(
                error = &error as &(dyn std::error::Error + 'static),
                ratio = f64::NAN,
                "x"
            );
            let span = tracing::info_span!("request", request_id = tracing::field::Empty);
            span.record("request_id", "late");
            span.in_scope(|| tracing::info!("y"));
        });
        assert_eq!(events[0]["error"], "broken \\ pipe\t\u{1}");
        assert_eq!(events[0]["ratio"], "NaN");
        assert_eq!(events[1]["span"]["request_id"], "late");
    }

    #[test]
    fn log_timestamps_agree_with_the_clock() {
        let mut text = String::new();
        write_utc_now(&mut text).unwrap();
        let parsed =
            time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                .unwrap();
        let now = time::OffsetDateTime::now_utc();
        assert!((now - parsed).whole_seconds().abs() < 5, "{text}");
    }
}
