//! The access line, written without going through `tracing`'s formatter.
//!
//! Every request writes one line, so its cost is the gateway's: through
//! `tracing_subscriber`'s formatter (a visitor per field, `Debug` for each
//! string, styling even when colours are off) the line cost as much as the
//! rest of a 403. Here it is written straight into a reused buffer and
//! copied into the log batch, with the same text and JSON layouts as every
//! other line. The level filter still decides whether it is written.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use super::batch::BatchWriter;
use super::{LogFormat, ACCESS_TARGET};

/// Where access lines go once logging is set up.
pub(super) struct AccessSink {
    pub format: LogFormat,
    pub writer: BatchWriter,
}

pub(super) static SINK: OnceLock<AccessSink> = OnceLock::new();

/// One request's access line: its fields in the order they are written.
pub struct AccessLine<'a> {
    /// The request's id.
    pub request_id: &'a str,
    /// Its method.
    pub method: &'a str,
    /// Its path as it may be logged.
    pub path: &'a str,
    /// The route prefix that matched, or "-".
    pub route: &'a str,
    /// What the gateway decided.
    pub decision: &'a str,
    /// Why, or "-".
    pub reason: &'a str,
    /// The session's short tag, or "-".
    pub session: &'a dyn std::fmt::Display,
    /// The status the visitor got.
    pub status: u16,
    /// The status the CMS answered with (0 when it was not asked).
    pub upstream_status: u16,
    /// Tokens minted, embeds refused and embeds not entitled.
    pub tokens: u32,
    /// Embeds left without a token because their capture was unsafe.
    pub refused: u32,
    /// Embeds of videos the visitor may not watch.
    pub unentitled: u32,
    /// Body bytes sent.
    pub bytes: u64,
    /// Latency in microseconds.
    pub latency_us: u64,
    /// Why the body stopped early; the line is then a warning.
    pub failure: Option<&'a str>,
    /// Whether the whole body went out.
    pub complete: bool,
}

thread_local! {
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
    // The RFC 3339 text of the current second, made once a second.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Writes `line` to the access log; false when logging is not set up here
/// (the caller then logs through `tracing`).
pub fn write_access_line(line: &AccessLine<'_>) -> bool {
    let Some(sink) = SINK.get() else {
        return false;
    };
    let enabled = if line.failure.is_some() {
        tracing::enabled!(target: ACCESS_TARGET, tracing::Level::WARN)
    } else {
        tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO)
    };
    if !enabled {
        return true;
    }
    LINE.with_borrow_mut(|text| {
        text.clear();
        match sink.format {
            LogFormat::Text => format_text(text, line),
            LogFormat::Json => format_json(text, line),
        }
        sink.writer.append(text.as_bytes());
    });
    true
}

fn timestamp(out: &mut String) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != now.as_secs() {
            *second = now.as_secs();
            text.clear();
            let whole = UNIX_EPOCH + std::time::Duration::from_secs(now.as_secs());
            // "2026-11-29T00:14:06Z": kept without the Z.
            let _ = write!(text, "{}", humantime::format_rfc3339_seconds(whole));
            text.pop();
        }
        out.push_str(text);
    });
    let micros = now.subsec_micros();
    out.push('.');
    for shift in [100_000, 10_000, 1_000, 100, 10, 1] {
        out.push(char::from(b'0' + (micros / shift % 10) as u8));
    }
    out.push('Z');
}

fn latency(out: &mut String, micros: u64) {
    let (whole, fraction) = (micros / 1000, micros % 1000);
    out.push_str(itoa::Buffer::new().format(whole));
    out.push('.');
    let digits = [fraction / 100, fraction / 10 % 10, fraction % 10];
    let shown = digits
        .iter()
        .rposition(|&d| d != 0)
        .map_or(1, |last| last + 1);
    for digit in &digits[..shown] {
        out.push(char::from(b'0' + *digit as u8));
    }
}

/// `"text"` as `Debug` writes it, which is how `tracing` writes a string field.
fn quoted(out: &mut String, text: &str) {
    // A fold, not `all`: no early exit, so it runs many bytes per step.
    if text.bytes().fold(true, |plain, b| {
        plain & (0x20..0x7f).contains(&b) & (b != b'"') & (b != b'\\')
    }) {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        let _ = write!(out, "{text:?}");
    }
}

fn format_text(out: &mut String, line: &AccessLine<'_>) {
    timestamp(out);
    if line.failure.is_some() {
        out.push_str("  WARN embedgate::access: response aborted request_id=");
    } else {
        out.push_str("  INFO embedgate::access: request request_id=");
    }
    quoted(out, line.request_id);
    out.push_str(" method=");
    out.push_str(line.method);
    out.push_str(" path=");
    out.push_str(line.path);
    out.push_str(" route=");
    quoted(out, line.route);
    out.push_str(" decision=");
    quoted(out, line.decision);
    out.push_str(" reason=");
    quoted(out, line.reason);
    let _ = write!(out, " session={}", line.session);
    number(out, " status=", line.status.into());
    number(out, " upstream_status=", line.upstream_status.into());
    number(out, " tokens=", line.tokens.into());
    number(out, " refused=", line.refused.into());
    number(out, " unentitled=", line.unentitled.into());
    number(out, " bytes=", line.bytes);
    out.push_str(" latency_ms=");
    latency(out, line.latency_us);
    match line.failure {
        Some(failure) => {
            out.push_str(" failure=");
            out.push_str(failure);
        }
        None => out.push_str(if line.complete {
            " complete=true"
        } else {
            " complete=false"
        }),
    }
    out.push('\n');
}

/// `label` and `value` in decimal.
fn number(out: &mut String, label: &str, value: u64) {
    out.push_str(label);
    out.push_str(itoa::Buffer::new().format(value));
}

/// A JSON string.
fn json_string(out: &mut String, text: &str) {
    if text.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\') & (b != 0x7f)
    }) {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        // serde_json's escaping, as the JSON layer writes every other line.
        out.push_str(&serde_json::Value::from(text).to_string());
    }
}

fn format_json(out: &mut String, line: &AccessLine<'_>) {
    out.push_str("{\"timestamp\":\"");
    timestamp(out);
    if line.failure.is_some() {
        out.push_str("\",\"level\":\"WARN\",\"message\":\"response aborted\",\"request_id\":");
    } else {
        out.push_str("\",\"level\":\"INFO\",\"message\":\"request\",\"request_id\":");
    }
    json_string(out, line.request_id);
    for (name, value) in [
        ("method", line.method),
        ("path", line.path),
        ("route", line.route),
        ("decision", line.decision),
        ("reason", line.reason),
    ] {
        let _ = write!(out, ",\"{name}\":");
        json_string(out, value);
    }
    // A session's short tag is hex (or "-"): nothing in it needs escaping.
    let _ = write!(out, ",\"session\":\"{}\"", line.session);
    number(out, ",\"status\":", line.status.into());
    number(out, ",\"upstream_status\":", line.upstream_status.into());
    number(out, ",\"tokens\":", line.tokens.into());
    number(out, ",\"refused\":", line.refused.into());
    number(out, ",\"unentitled\":", line.unentitled.into());
    number(out, ",\"bytes\":", line.bytes);
    out.push_str(",\"latency_ms\":");
    latency(out, line.latency_us);
    match line.failure {
        Some(failure) => {
            out.push_str(",\"failure\":");
            json_string(out, failure);
        }
        None => {
            let _ = write!(out, ",\"complete\":{}", line.complete);
        }
    }
    out.push_str(",\"target\":\"embedgate::access\"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(failure: Option<&'static str>) -> AccessLine<'static> {
        AccessLine {
            request_id: "dbd7096c009160de119d102b337827d1",
            method: "GET",
            path: "/videos/a\"b",
            route: "/videos/",
            decision: "denied",
            reason: "no \"session\" cookie",
            session: &"-",
            status: 403,
            upstream_status: 0,
            tokens: 0,
            refused: 0,
            unentitled: 0,
            bytes: 157,
            latency_us: 4070,
            failure,
            complete: true,
        }
    }

    #[test]
    fn text_lines_read_as_the_tracing_formatter_wrote_them() {
        let mut out = String::new();
        format_text(&mut out, &sample(None));
        let (time, rest) = out.split_once("  ").unwrap();
        assert_eq!(time.len(), "2026-11-29T00:14:06.716357Z".len(), "{time}");
        assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
        assert_eq!(
            rest,
            "INFO embedgate::access: request request_id=\"dbd7096c009160de119d102b337827d1\" \
             method=GET path=/videos/a\"b route=\"/videos/\" decision=\"denied\" \
             reason=\"no \\\"session\\\" cookie\" session=- status=403 upstream_status=0 tokens=0 \
             refused=0 unentitled=0 bytes=157 latency_ms=4.07 complete=true\n"
        );
        out.clear();
        format_text(&mut out, &sample(Some("upstream body: reset")));
        assert!(
            out.contains("  WARN embedgate::access: response aborted request_id="),
            "{out}"
        );
        assert!(
            out.ends_with(" latency_ms=4.07 failure=upstream body: reset\n"),
            "{out}"
        );
    }

    #[test]
    fn json_lines_parse_with_every_field() {
        let mut out = String::new();
        format_json(&mut out, &sample(None));
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["reason"], "no \"session\" cookie");
        assert_eq!(value["path"], "/videos/a\"b");
        assert_eq!(value["status"], 403);
        assert_eq!(value["latency_ms"], 4.07);
        assert_eq!(value["complete"], true);
        assert_eq!(value["target"], "embedgate::access");
        assert_eq!(value["level"], "INFO");
        out.clear();
        format_json(&mut out, &sample(Some("cut")));
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (value["level"].as_str(), value["failure"].as_str()),
            (Some("WARN"), Some("cut"))
        );
    }

    #[test]
    fn strings_are_quoted_as_debug_and_serde_json_quote_them() {
        let mut texts = vec![String::new(), "plain /videos/ text".to_owned()];
        // Each odd byte alone, and at the end of a plain run.
        for odd in ["\"", "\\", "\u{7f}", "\u{1f}", "\t", "\n", "é", "\u{2028}"] {
            texts.push(odd.to_owned());
            texts.push(format!("a plain run of more than sixteen bytes{odd}"));
        }
        for text in &texts {
            let mut out = String::new();
            quoted(&mut out, text);
            assert_eq!(out, format!("{text:?}"));
            out.clear();
            json_string(&mut out, text);
            assert_eq!(out, serde_json::Value::from(text.as_str()).to_string());
        }
    }

    #[test]
    fn latency_reads_as_the_rounded_float_did() {
        for (micros, text) in [
            (0, "0.0"),
            (25, "0.025"),
            (4070, "4.07"),
            (12000, "12.0"),
            (1500, "1.5"),
        ] {
            let mut out = String::new();
            latency(&mut out, micros);
            assert_eq!(out, text);
            let float = ((micros as f64 / 1000.0) * 1000.0).round() / 1000.0;
            assert_eq!(format!("{float:?}"), text);
        }
    }
}
