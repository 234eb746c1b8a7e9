//! Prometheus metrics, with fixed, bounded label sets: never a path, a query
//! or a session.
//!
//! One [`Metrics`] registry lives as long as the process and is handed from
//! runtime to runtime at each reload. Recording takes no lock: every series
//! a request can touch is resolved once (when the runtime is built, or on
//! its first use) into a handle that is one atomic to bump.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::finished::Decision;

mod latency;

use latency::latency_histogram;
pub use latency::LatencyHistogram;

/// Label set of `embedgate_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    decision: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    embed: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConfigLabels {
    hash: String,
}

/// The decisions, in label order.
const DECISIONS: [Decision; 4] = [
    Decision::Allowed,
    Decision::Denied,
    Decision::Passthrough,
    Decision::Error,
];

/// The label of a decision; the gateway's own failures are "refused".
fn decision_label(decision: Decision) -> &'static str {
    match decision {
        Decision::Error => "refused",
        other => other.as_str(),
    }
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// What became of an embed the rewriter met, in label order.
#[derive(Debug, Clone, Copy)]
pub enum TokenResult {
    /// A token was minted into it.
    Minted,
    /// It matched but could carry no token safely.
    Refused,
    /// The visitor may not watch it.
    Unentitled,
    /// The video host's API gave no token.
    Failed,
}

/// Session lookups, by where the verdict came from.
#[derive(Debug, Clone, Copy)]
pub enum Lookup {
    /// From the verdict cache.
    Hit,
    /// From the source.
    Miss,
    /// The source could not answer.
    Error,
}

/// Upstream failures, by kind.
#[derive(Debug, Clone, Copy)]
pub enum UpstreamError {
    /// No connection, or it broke before the response head.
    Unavailable,
    /// No connection or no response head in time.
    Timeout,
    /// The response body stopped or failed midway.
    Body,
}

/// Why a connection to the TLS listener ended before its handshake was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The client spoke plain HTTP; it was answered 400.
    PlainHttp,
    /// The client's TLS was refused: no protocol, cipher or name in common, or not TLS at all.
    Refused,
    /// No handshake within `header_timeout`.
    Timeout,
}

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<DecisionLabels, LatencyHistogram, fn() -> LatencyHistogram>,
    upstream_seconds: LatencyHistogram,
    tokens: Family<TokenLabels, Counter>,
    lookups: [Counter; 3],
    upstream_errors: [Counter; 3],
    reloads: Family<ResultLabels, Counter>,
    config: Family<ConfigLabels, Gauge>,
    config_hash: Mutex<Option<String>>,
    connections: [Gauge; 2],
    accepted_connections: Family<ListenerLabels, Gauge>,
    connections_refused: Counter,
    handshake_failures: [Counter; 3],
    rewritten_bytes: Counter,
    log_lines_dropped: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// A fresh registry with every family registered.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("embedgate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by route prefix, decision and status class",
            requests.clone(),
        );
        let request_seconds =
            Family::<DecisionLabels, LatencyHistogram, fn() -> LatencyHistogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "request_duration_seconds",
            "Time from the request head to the end of the response body, by decision",
            request_seconds.clone(),
        );
        let upstream_seconds = latency_histogram();
        registry.register(
            "upstream_duration_seconds",
            "Time from sending a request to the CMS to its response head",
            upstream_seconds.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "tokens",
            "Embeds met on gated pages, by [[embed]] index and result",
            tokens.clone(),
        );
        let lookup_family = Family::<ResultLabels, Counter>::default();
        registry.register(
            "session_lookups",
            "Session lookups: hit (verdict cache), miss (asked the source), error (no answer)",
            lookup_family.clone(),
        );
        let lookups = ["hit", "miss", "error"].map(|result| {
            lookup_family
                .get_or_create(&ResultLabels { result })
                .clone()
        });
        let error_family = Family::<KindLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "CMS failures by kind",
            error_family.clone(),
        );
        let upstream_errors = ["unavailable", "timeout", "body"]
            .map(|kind| error_family.get_or_create(&KindLabels { kind }).clone());
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register("reloads", "Reloads by result", reloads.clone());
        for result in ["ok", "error"] {
            let _ = reloads.get_or_create(&ResultLabels { result });
        }
        let config = Family::<ConfigLabels, Gauge>::default();
        registry.register(
            "config_info",
            "1 for the SHA-256 (first 16 hex digits) of the config file in force",
            config.clone(),
        );
        let connection_family = Family::<ProtocolLabels, Gauge>::default();
        registry.register(
            "open_connections",
            "Visitor connections open, by protocol (counted from their first request)",
            connection_family.clone(),
        );
        let connections = ["http1", "http2"].map(|protocol| {
            connection_family
                .get_or_create(&ProtocolLabels { protocol })
                .clone()
        });
        let accepted_connections = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "accepted_connections",
            "Connections open on each listener (main, redirect, admin) from accept to close, those yet to send a request too: what max_connections counts",
            accepted_connections.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections closed at once: max_connections or max_connections_per_ip reached",
            connections_refused.clone(),
        );
        let handshake_family = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "tls_handshake_failures",
            "Connections to the TLS listener that ended before a handshake: plain_http (answered 400), refused, timeout",
            handshake_family.clone(),
        );
        let handshake_failures = ["plain_http", "refused", "timeout"].map(|reason| {
            handshake_family
                .get_or_create(&ReasonLabels { reason })
                .clone()
        });
        let rewritten_bytes = Counter::default();
        registry.register(
            "rewritten_bytes",
            "Bytes of rewritten pages sent to visitors",
            rewritten_bytes.clone(),
        );
        let log_lines_dropped = Gauge::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because the log writer could not keep up",
            log_lines_dropped.clone(),
        );
        Arc::new(Metrics {
            registry,
            requests,
            request_seconds,
            upstream_seconds,
            tokens,
            lookups,
            upstream_errors,
            reloads,
            config,
            config_hash: Mutex::new(None),
            connections,
            accepted_connections,
            connections_refused,
            handshake_failures,
            rewritten_bytes,
            log_lines_dropped,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        self.log_lines_dropped
            .set(i64::try_from(crate::logging::dropped_lines()).unwrap_or(i64::MAX));
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Records a reload, and the hash of the config now in force.
    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// Sets the config-hash info metric to the config whose SHA-256 is `digest`.
    pub fn config_loaded(&self, digest: &[u8; 32]) {
        let mut hash = String::with_capacity(16);
        for byte in &digest[..8] {
            let _ = write!(hash, "{byte:02x}");
        }
        let mut current = self
            .config_hash
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = current.take() {
            self.config.remove(&ConfigLabels { hash: old });
        }
        self.config
            .get_or_create(&ConfigLabels { hash: hash.clone() })
            .set(1);
        *current = Some(hash);
    }

    /// A visitor connection of `http2` or not, open until the guard drops.
    pub fn connection_opened(self: &Arc<Self>, http2: bool) -> ConnectionGuard {
        let gauge = self.connections[usize::from(http2)].clone();
        gauge.inc();
        ConnectionGuard(gauge)
    }

    /// The gauge of the connections open on `listener`, from accept to close.
    pub fn accepted_connections(&self, listener: &'static str) -> Gauge {
        self.accepted_connections
            .get_or_create(&ListenerLabels { listener })
            .clone()
    }

    /// Counts a connection turned away by a connection limit.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Counts a connection to the TLS listener that ended before its handshake.
    pub fn handshake_failed(&self, why: HandshakeFailure) {
        self.handshake_failures[why as usize].inc();
    }

    /// Counts a session lookup.
    pub fn lookup(&self, lookup: Lookup) {
        self.lookups[lookup as usize].inc();
    }

    /// Counts a failure of the CMS.
    pub fn upstream_error(&self, kind: UpstreamError) {
        self.upstream_errors[kind as usize].inc();
    }

    /// Records how long the CMS took to send its response head.
    pub fn upstream_answered(&self, took: Duration) {
        self.upstream_seconds.observe(took);
    }
}

/// Keeps a connection counted as open.
pub struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The series one runtime's requests touch, resolved for it: route prefixes
/// and embeds are those of its settings.
pub struct RuntimeMetrics {
    metrics: Arc<Metrics>,
    // Route prefixes in route-table order, and "-" for no route last.
    routes: Vec<String>,
    // [route][decision][status class], resolved on first use.
    requests: Box<[OnceLock<Counter>]>,
    request_seconds: [LatencyHistogram; 4],
    // [embed][result]
    tokens: Box<[[Counter; 4]]>,
}

impl std::fmt::Debug for RuntimeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RuntimeMetrics({} routes)", self.routes.len())
    }
}

impl RuntimeMetrics {
    /// Resolves the series for `routes` (prefixes) and `embeds` (how many).
    pub fn new(metrics: Arc<Metrics>, routes: &[String], embeds: usize) -> RuntimeMetrics {
        let mut all_routes: Vec<String> = routes.to_vec();
        all_routes.push("-".into());
        let slots = all_routes.len() * DECISIONS.len() * STATUS_CLASSES.len();
        let request_seconds = DECISIONS.map(|decision| {
            metrics
                .request_seconds
                .get_or_create(&DecisionLabels {
                    decision: decision_label(decision),
                })
                .clone()
        });
        let tokens = (0..embeds)
            .map(|index| {
                ["minted", "refused", "unentitled", "failed"].map(|result| {
                    metrics
                        .tokens
                        .get_or_create(&TokenLabels {
                            embed: index.to_string(),
                            result,
                        })
                        .clone()
                })
            })
            .collect();
        RuntimeMetrics {
            metrics,
            routes: all_routes,
            requests: (0..slots).map(|_| OnceLock::new()).collect(),
            request_seconds,
            tokens,
        }
    }

    /// The process's metrics.
    pub fn process(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Counts a finished request: `route` is its index in the route table
    /// (`None`: no route matched).
    pub fn request(&self, route: Option<usize>, decision: Decision, status: u16, took: Duration) {
        let route = route
            .unwrap_or(self.routes.len() - 1)
            .min(self.routes.len() - 1);
        let decision_index = DECISIONS.iter().position(|d| *d == decision).unwrap_or(3);
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        let slot = (route * DECISIONS.len() + decision_index) * STATUS_CLASSES.len() + class;
        let counter = self.requests[slot].get_or_init(|| {
            self.metrics
                .requests
                .get_or_create(&RequestLabels {
                    route: self.routes[route].clone(),
                    decision: decision_label(decision),
                    status: STATUS_CLASSES[class],
                })
                .clone()
        });
        counter.inc();
        self.request_seconds[decision_index].observe(took);
    }

    /// Counts what became of an embed (its index in the config).
    pub fn token(&self, embed: usize, result: TokenResult) {
        if let Some(counters) = self.tokens.get(embed) {
            counters[result as usize].inc();
        }
    }

    /// Counts bytes of a rewritten page sent on.
    pub fn rewritten(&self, bytes: u64) {
        self.metrics.rewritten_bytes.inc_by(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_lands_in_its_route_decision_and_status_class() {
        let metrics = Metrics::new();
        let runtime = RuntimeMetrics::new(metrics.clone(), &["/videos/".into(), "/".into()], 1);
        runtime.request(Some(0), Decision::Denied, 403, Duration::from_millis(1));
        runtime.request(Some(0), Decision::Denied, 403, Duration::from_millis(1));
        runtime.request(None, Decision::Error, 502, Duration::from_millis(1));
        runtime.token(0, TokenResult::Minted);
        runtime.token(7, TokenResult::Minted);
        let text = metrics.encode();
        assert!(
            text.contains(
                "embedgate_requests_total{route=\"/videos/\",decision=\"denied\",status=\"4xx\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "embedgate_requests_total{route=\"-\",decision=\"refused\",status=\"5xx\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("embedgate_tokens_total{embed=\"0\",result=\"minted\"} 1"));
        assert!(text.contains("embedgate_request_duration_seconds_count{decision=\"denied\"} 2"));
        assert_eq!(runtime.tokens[0][0].get(), 1);
    }

    #[test]
    fn latency_buckets_are_cumulative_once_and_end_in_inf() {
        let metrics = Metrics::new();
        for ms in [1, 1, 1, 5, 50, 500, 60_000] {
            metrics.upstream_answered(Duration::from_millis(ms));
        }
        let text = metrics.encode();
        let bucket = |le: &str| {
            let series = format!("embedgate_upstream_duration_seconds_bucket{{le=\"{le}\"}} ");
            let start = text
                .find(&series)
                .unwrap_or_else(|| panic!("{series} in {text}"));
            text[start + series.len()..]
                .split_whitespace()
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(bucket("0.0016"), "3", "1 ms three times");
        assert_eq!(bucket("0.0064"), "4");
        assert_eq!(bucket("0.0512"), "5");
        assert_eq!(bucket("0.8192"), "6");
        assert_eq!(bucket("+Inf"), "7");
        assert!(
            text.contains("embedgate_upstream_duration_seconds_count 7"),
            "{text}"
        );
    }

    #[test]
    fn the_config_hash_metric_names_only_the_config_in_force() {
        let metrics = Metrics::new();
        metrics.config_loaded(&[1; 32]);
        metrics.config_loaded(&[2; 32]);
        let text = metrics.encode();
        assert_eq!(text.matches("embedgate_config_info{").count(), 1, "{text}");
    }
}
