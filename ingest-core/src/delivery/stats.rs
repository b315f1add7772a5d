//! librdkafka's statistics as metrics.
//!
//! With `telemetry.statistics_interval_ms` above zero (10 s by default) the producer
//! client hands its statistics to the producer context every interval; this module
//! turns the parts an operator needs into gauges and counters, every series labelled
//! `ingestor` like the rest:
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `ingest_kafka_queue_messages` | gauge | | records waiting in the client (queued or in flight) |
//! | `ingest_kafka_queue_bytes` | gauge | | their bytes |
//! | `ingest_kafka_broker_rtt_seconds` | gauge | `broker`, `quantile` (`0.5`, `0.99`) | request round-trip time over the last interval |
//! | `ingest_kafka_broker_outbuf_requests` | gauge | `broker` | requests waiting to be sent to the broker |
//! | `ingest_kafka_broker_inflight_requests` | gauge | `broker` | requests sent, waiting for the answer |
//! | `ingest_kafka_broker_errors_total` | counter | `broker`, `kind` (`send`, `receive`, `timeout`) | request errors per broker |
//! | `ingest_kafka_broker_retries_total` | counter | `broker` | requests sent again |
//! | `ingest_kafka_batch_bytes` | gauge | `topic`, `quantile` | produce batch size in bytes over the last interval |
//! | `ingest_kafka_batch_messages` | gauge | `topic`, `quantile` | records per produce batch over the last interval |
//!
//! `broker` is librdkafka's name for it (`host:port/node id`); the bootstrap and
//! internal pseudo-brokers (node id -1) are left out. Counters are set to the client's
//! running totals, so they restart from zero with the process, like every counter.

use metrics::{counter, gauge};
use rdkafka::statistics::{Statistics, Window};

use crate::telemetry::INGESTOR;

/// Reads one quantile of one of librdkafka's histograms.
type Quantile = fn(&Window) -> i64;

/// The quantiles exported from librdkafka's histograms.
const QUANTILES: [(&str, Quantile); 2] = [("0.5", |w| w.p50), ("0.99", |w| w.p99)];

/// Sets the metrics from one statistics report.
pub(crate) fn export(stats: &Statistics, instance: &str) {
    let me = || instance.to_owned();
    gauge!("ingest_kafka_queue_messages", INGESTOR => me()).set(stats.msg_cnt as f64);
    gauge!("ingest_kafka_queue_bytes", INGESTOR => me()).set(stats.msg_size as f64);
    for broker in stats.brokers.values().filter(|b| b.nodeid >= 0) {
        let name = || broker.name.clone();
        if let Some(rtt) = &broker.rtt {
            for (quantile, value) in QUANTILES {
                // librdkafka reports microseconds.
                gauge!("ingest_kafka_broker_rtt_seconds", INGESTOR => me(), "broker" => name(), "quantile" => quantile)
                    .set(value(rtt) as f64 / 1e6);
            }
        }
        gauge!("ingest_kafka_broker_outbuf_requests", INGESTOR => me(), "broker" => name())
            .set(broker.outbuf_cnt as f64);
        gauge!("ingest_kafka_broker_inflight_requests", INGESTOR => me(), "broker" => name())
            .set(broker.waitresp_cnt as f64);
        for (kind, total) in [
            ("send", broker.txerrs),
            ("receive", broker.rxerrs),
            ("timeout", broker.req_timeouts),
        ] {
            counter!("ingest_kafka_broker_errors_total", INGESTOR => me(), "broker" => name(), "kind" => kind)
                .absolute(total);
        }
        counter!("ingest_kafka_broker_retries_total", INGESTOR => me(), "broker" => name())
            .absolute(broker.txretries);
    }
    for topic in stats.topics.values() {
        for (quantile, value) in QUANTILES {
            gauge!("ingest_kafka_batch_bytes", INGESTOR => me(), "topic" => topic.topic.clone(), "quantile" => quantile)
                .set(value(&topic.batchsize) as f64);
            gauge!("ingest_kafka_batch_messages", INGESTOR => me(), "topic" => topic.topic.clone(), "quantile" => quantile)
                .set(value(&topic.batchcnt) as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    /// A trimmed report in librdkafka's format (STATISTICS.md).
    const REPORT: &str = r#"{
        "name": "p#producer-1", "client_id": "ingest-core", "type": "producer",
        "ts": 1, "time": 1, "age": 1, "replyq": 0, "msg_cnt": 12, "msg_size": 3400,
        "msg_max": 100000, "msg_size_max": 1000, "tx": 0, "tx_bytes": 0, "rx": 0,
        "rx_bytes": 0, "txmsgs": 0, "txmsg_bytes": 0, "rxmsgs": 0, "rxmsg_bytes": 0,
        "simple_cnt": 0, "metadata_cache_cnt": 1,
        "brokers": {
            "127.0.0.1:9092/1": {
                "name": "127.0.0.1:9092/1", "nodeid": 1, "nodename": "127.0.0.1:9092",
                "source": "learned", "state": "UP", "stateage": 1, "outbuf_cnt": 2,
                "outbuf_msg_cnt": 5, "waitresp_cnt": 3, "waitresp_msg_cnt": 7, "tx": 10,
                "txbytes": 100, "txerrs": 4, "txretries": 6, "txidle": 0, "req_timeouts": 1,
                "rx": 10, "rxbytes": 100, "rxerrs": 2, "rxcorriderrs": 0, "rxpartial": 0,
                "rxidle": 0, "req": {}, "zbuf_grow": 0, "buf_grow": 0, "wakeups": 1,
                "connects": 1, "disconnects": 0,
                "rtt": {"min": 100, "max": 9000, "avg": 800, "sum": 8000, "cnt": 10,
                        "stddev": 5, "hdrsize": 1, "p50": 700, "p75": 800, "p90": 900,
                        "p95": 950, "p99": 8000, "p99_99": 9000, "outofrange": 0},
                "toppars": {}
            },
            ":0/bootstrap": {
                "name": ":0/bootstrap", "nodeid": -1, "nodename": "", "source": "configured",
                "state": "INIT", "stateage": 1, "outbuf_cnt": 0, "outbuf_msg_cnt": 0,
                "waitresp_cnt": 0, "waitresp_msg_cnt": 0, "tx": 0, "txbytes": 0, "txerrs": 0,
                "txretries": 0, "txidle": 0, "req_timeouts": 0, "rx": 0, "rxbytes": 0,
                "rxerrs": 0, "rxcorriderrs": 0, "rxpartial": 0, "rxidle": 0, "req": {},
                "zbuf_grow": 0, "buf_grow": 0, "toppars": {}
            }
        },
        "topics": {
            "cart-events": {
                "topic": "cart-events", "age": 1, "metadata_age": 1,
                "batchsize": {"min": 1, "max": 9, "avg": 5, "sum": 50, "cnt": 10, "stddev": 1,
                              "hdrsize": 1, "p50": 4096, "p75": 5, "p90": 6, "p95": 7,
                              "p99": 16384, "p99_99": 9, "outofrange": 0},
                "batchcnt": {"min": 1, "max": 9, "avg": 5, "sum": 50, "cnt": 10, "stddev": 1,
                             "hdrsize": 1, "p50": 14, "p75": 5, "p90": 6, "p95": 7,
                             "p99": 55, "p99_99": 9, "outofrange": 0},
                "partitions": {}
            }
        }
    }"#;

    /// Name, sorted labels and value of one recorded series.
    type Series = (String, Vec<(String, String)>, DebugValue);

    #[test]
    fn a_statistics_report_becomes_labelled_metrics() {
        let stats: Statistics = serde_json::from_str(REPORT).expect("a valid report");
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || export(&stats, "edge-1"));
        let values: Vec<Series> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let mut labels: Vec<(String, String)> = key
                    .key()
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                labels.sort();
                (key.key().name().to_owned(), labels, value)
            })
            .collect();
        let find = |name: &str, extra: &[(&str, &str)]| {
            let mut labels: Vec<(String, String)> = extra
                .iter()
                .chain(&[(INGESTOR, "edge-1")])
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            labels.sort();
            values
                .iter()
                .find(|(n, l, _)| n == name && *l == labels)
                .map(|(_, _, v)| v)
                .unwrap_or_else(|| panic!("no {name} {labels:?} in {values:?}"))
        };
        let broker = ("broker", "127.0.0.1:9092/1");
        assert_eq!(
            find(
                "ingest_kafka_broker_rtt_seconds",
                &[broker, ("quantile", "0.99")]
            ),
            &DebugValue::Gauge(0.008.into())
        );
        assert_eq!(
            find(
                "ingest_kafka_broker_errors_total",
                &[broker, ("kind", "send")]
            ),
            &DebugValue::Counter(4)
        );
        assert_eq!(
            find(
                "ingest_kafka_broker_errors_total",
                &[broker, ("kind", "timeout")]
            ),
            &DebugValue::Counter(1)
        );
        assert_eq!(
            find("ingest_kafka_broker_inflight_requests", &[broker]),
            &DebugValue::Gauge(3.0.into())
        );
        assert_eq!(
            find("ingest_kafka_queue_messages", &[]),
            &DebugValue::Gauge(12.0.into())
        );
        assert_eq!(
            find(
                "ingest_kafka_batch_bytes",
                &[("topic", "cart-events"), ("quantile", "0.5")]
            ),
            &DebugValue::Gauge(4096.0.into())
        );
        assert_eq!(
            find(
                "ingest_kafka_batch_messages",
                &[("topic", "cart-events"), ("quantile", "0.99")]
            ),
            &DebugValue::Gauge(55.0.into())
        );
        assert!(
            !values
                .iter()
                .any(|(_, l, _)| l.iter().any(|(_, v)| v == ":0/bootstrap")),
            "pseudo-brokers are left out"
        );
    }
}
