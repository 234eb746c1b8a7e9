//! A latency histogram recorded with atomics only, encoded as Prometheus's
//! `histogram` type.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds of the latency buckets: 0.1 ms doubling to about 13 s.
const LATENCY_BOUNDS: usize = 18;

/// A new, empty histogram (the constructor a `Family` of them takes).
pub(super) fn latency_histogram() -> LatencyHistogram {
    LatencyHistogram::default()
}

/// A latency histogram recorded with atomics only (prometheus-client's
/// own takes a mutex per observation).
#[derive(Clone)]
pub struct LatencyHistogram(Arc<LatencyCells>);

struct LatencyCells {
    bounds: [f64; LATENCY_BOUNDS],
    // One per bound, and the last for +Inf; not cumulative.
    counts: [AtomicU64; LATENCY_BOUNDS + 1],
    sum_nanos: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        let mut bounds = [0.0; LATENCY_BOUNDS];
        for (bound, value) in
            bounds
                .iter_mut()
                .zip(exponential_buckets(0.0001, 2.0, LATENCY_BOUNDS as u16))
        {
            *bound = value;
        }
        LatencyHistogram(Arc::new(LatencyCells {
            bounds,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }))
    }
}

impl LatencyHistogram {
    /// Records one duration.
    pub fn observe(&self, took: Duration) {
        let cells = &self.0;
        let seconds = took.as_secs_f64();
        let bucket = cells
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BOUNDS);
        cells.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        cells.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LatencyHistogram")
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let cells = &self.0;
        // Per bucket, not cumulative: the encoder adds them up. The last
        // bound is +Inf.
        let mut buckets = [(0.0, 0u64); LATENCY_BOUNDS + 1];
        let mut total = 0;
        for (index, count) in cells.counts.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            total += count;
            let bound = cells.bounds.get(index).copied().unwrap_or(f64::INFINITY);
            buckets[index] = (bound, count);
        }
        let sum = cells.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, total, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}
