//! The OTLP metric messages the receiver decodes a binary protobuf export into (docs/wire-contract.md §4.7): prost's
//! derive of the messages of opentelemetry-proto's `metrics_service.proto`, `metrics.proto`, `resource.proto` and
//! `common.proto`, with their field numbers and wire types, keeping only the fields the mapping reads. Two
//! departures, both invisible on the wire:
//!
//! - every `string` field is held as `Bytes`, a slice of the request body (`string` and `bytes` are encoded alike):
//!   an export of 1,000 points carries 5,000 strings, and copying each into a `String` of its own was a third of an
//!   export's cost. A string is checked to be UTF-8 where it is read ([`text`]);
//! - fields the mapping does not read (descriptions, units, scopes, timestamps, buckets, exemplars, ...) are not
//!   declared, so prost skips them as unknown fields; `AnyValue`'s array and map values are kept undecoded (a label
//!   cannot hold them).
//!
//! The OTLP JSON encoding is read with the `opentelemetry-proto` crate's serde types and brought here through their
//! protobuf encoding, so both encodings are mapped by one code path (`otlp::decode`). The test below decodes the
//! crate's messages, every field set, and compares.

// The fields are the .proto files' fields, by the same names; the crate's types document them.
#![allow(missing_docs)]

use bytes::Bytes;

/// The text of a string field, or why it is none.
pub fn text(bytes: &Bytes) -> Result<&str, std::str::Utf8Error> {
    std::str::from_utf8(bytes)
}

/// `opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportMetricsServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_metrics: Vec<ResourceMetrics>,
}

/// `opentelemetry.proto.metrics.v1.ResourceMetrics`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceMetrics {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_metrics: Vec<ScopeMetrics>,
}

/// `opentelemetry.proto.resource.v1.Resource`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

/// `opentelemetry.proto.metrics.v1.ScopeMetrics` (its scope is not read).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeMetrics {
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
}

/// `opentelemetry.proto.metrics.v1.Metric`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    #[prost(bytes = "bytes", tag = "1")]
    pub name: Bytes,
    #[prost(oneof = "metric::Data", tags = "5, 7, 9, 10, 11")]
    pub data: Option<metric::Data>,
}

/// `Metric`'s `data`.
pub mod metric {
    /// `opentelemetry.proto.metrics.v1.Metric.data`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Data {
        #[prost(message, tag = "5")]
        Gauge(super::Gauge),
        #[prost(message, tag = "7")]
        Sum(super::Sum),
        #[prost(message, tag = "9")]
        Histogram(super::Histogram),
        #[prost(message, tag = "10")]
        ExponentialHistogram(super::ExponentialHistogram),
        #[prost(message, tag = "11")]
        Summary(super::Summary),
    }
}

/// `opentelemetry.proto.metrics.v1.Gauge`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Gauge {
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<NumberDataPoint>,
}

/// `opentelemetry.proto.metrics.v1.Sum`; `aggregation_temporality` is the enum's number.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sum {
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<NumberDataPoint>,
    #[prost(int32, tag = "2")]
    pub aggregation_temporality: i32,
    #[prost(bool, tag = "3")]
    pub is_monotonic: bool,
}

/// `opentelemetry.proto.metrics.v1.Histogram`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<HistogramDataPoint>,
    #[prost(int32, tag = "2")]
    pub aggregation_temporality: i32,
}

/// `opentelemetry.proto.metrics.v1.ExponentialHistogram`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExponentialHistogram {
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<ExponentialHistogramDataPoint>,
    #[prost(int32, tag = "2")]
    pub aggregation_temporality: i32,
}

/// `opentelemetry.proto.metrics.v1.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<SummaryDataPoint>,
}

/// `opentelemetry.proto.metrics.v1.NumberDataPoint` (its timestamps and exemplars are not read).
#[derive(Clone, PartialEq, prost::Message)]
pub struct NumberDataPoint {
    #[prost(message, repeated, tag = "7")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "8")]
    pub flags: u32,
    #[prost(oneof = "number_data_point::Value", tags = "4, 6")]
    pub value: Option<number_data_point::Value>,
}

/// `NumberDataPoint`'s `value`.
pub mod number_data_point {
    /// `opentelemetry.proto.metrics.v1.NumberDataPoint.value`.
    #[derive(Clone, Copy, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(double, tag = "4")]
        AsDouble(f64),
        #[prost(sfixed64, tag = "6")]
        AsInt(i64),
    }
}

/// `opentelemetry.proto.metrics.v1.HistogramDataPoint` (its buckets are not read).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HistogramDataPoint {
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    #[prost(fixed64, tag = "4")]
    pub count: u64,
    #[prost(double, optional, tag = "5")]
    pub sum: Option<f64>,
    #[prost(uint32, tag = "10")]
    pub flags: u32,
}

/// `opentelemetry.proto.metrics.v1.ExponentialHistogramDataPoint` (its buckets are not read).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExponentialHistogramDataPoint {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    #[prost(fixed64, tag = "4")]
    pub count: u64,
    #[prost(double, optional, tag = "5")]
    pub sum: Option<f64>,
    #[prost(uint32, tag = "10")]
    pub flags: u32,
}

/// `opentelemetry.proto.metrics.v1.SummaryDataPoint` (its quantiles are not read).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryDataPoint {
    #[prost(message, repeated, tag = "7")]
    pub attributes: Vec<KeyValue>,
    #[prost(fixed64, tag = "4")]
    pub count: u64,
    #[prost(double, tag = "5")]
    pub sum: f64,
    #[prost(uint32, tag = "8")]
    pub flags: u32,
}

/// `opentelemetry.proto.common.v1.KeyValue` (its profiling-only `key_strindex` is not read).
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// `opentelemetry.proto.common.v1.AnyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5, 6, 7, 8")]
    pub value: Option<any_value::Value>,
}

/// `AnyValue`'s `value`.
pub mod any_value {
    use bytes::Bytes;

    /// `opentelemetry.proto.common.v1.AnyValue.value`; an `ArrayValue` or a `KeyValueList` is kept as its encoding.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(bytes = "bytes", tag = "1")]
        StringValue(Bytes),
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        #[prost(int64, tag = "3")]
        IntValue(i64),
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        #[prost(bytes = "bytes", tag = "5")]
        ArrayValue(Bytes),
        #[prost(bytes = "bytes", tag = "6")]
        KvlistValue(Bytes),
        #[prost(bytes = "bytes", tag = "7")]
        BytesValue(Bytes),
        #[prost(int32, tag = "8")]
        StringValueStrindex(i32),
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::metrics::v1 as otlp_collector;
    use opentelemetry_proto::tonic::common::v1 as otlp_common;
    use opentelemetry_proto::tonic::metrics::v1 as otlp;
    use opentelemetry_proto::tonic::resource::v1 as otlp_resource;
    use prost::Message;

    use super::*;

    /// Every `AnyValue` kind, as attributes.
    fn attributes(prefix: &str) -> Vec<otlp_common::KeyValue> {
        use otlp_common::any_value::Value;
        let nested = otlp_common::KeyValue {
            key: "inner".into(),
            value: Some(otlp_common::AnyValue { value: Some(Value::IntValue(1)) }),
            key_strindex: 0,
        };
        [
            Value::StringValue(format!("{prefix}-text")),
            Value::BoolValue(true),
            Value::IntValue(-7),
            Value::DoubleValue(0.25),
            Value::ArrayValue(otlp_common::ArrayValue {
                values: vec![otlp_common::AnyValue { value: Some(Value::BoolValue(false)) }],
            }),
            Value::KvlistValue(otlp_common::KeyValueList { values: vec![nested] }),
            Value::BytesValue(vec![0, 255]),
            Value::StringValueStrindex(3),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, value)| otlp_common::KeyValue {
            key: format!("{prefix}.{i}"),
            value: Some(otlp_common::AnyValue { value: Some(value) }),
            key_strindex: 0,
        })
        .chain([otlp_common::KeyValue { key: format!("{prefix}.empty"), value: None, key_strindex: 0 }])
        .collect()
    }

    fn exemplars() -> Vec<otlp::Exemplar> {
        vec![otlp::Exemplar {
            filtered_attributes: attributes("exemplar"),
            time_unix_nano: 5,
            span_id: vec![1; 8],
            trace_id: vec![2; 16],
            value: Some(otlp::exemplar::Value::AsDouble(1.5)),
        }]
    }

    /// An export with every field of every message set.
    fn full_export() -> otlp_collector::ExportMetricsServiceRequest {
        let number = |value| otlp::NumberDataPoint {
            attributes: attributes("point"),
            start_time_unix_nano: 1,
            time_unix_nano: 2,
            exemplars: exemplars(),
            flags: 1,
            value: Some(value),
        };
        let buckets =
            || Some(otlp::exponential_histogram_data_point::Buckets { offset: -2, bucket_counts: vec![1, 2] });
        let metric = |name: &str, data| otlp::Metric {
            name: name.into(),
            description: "what it is".into(),
            unit: "s".into(),
            metadata: attributes("metadata"),
            data: Some(data),
        };
        let metrics = vec![
            metric(
                "gauge",
                otlp::metric::Data::Gauge(otlp::Gauge {
                    data_points: vec![number(otlp::number_data_point::Value::AsDouble(2.5))],
                }),
            ),
            metric(
                "sum",
                otlp::metric::Data::Sum(otlp::Sum {
                    data_points: vec![number(otlp::number_data_point::Value::AsInt(-3))],
                    aggregation_temporality: otlp::AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }),
            ),
            metric(
                "histogram",
                otlp::metric::Data::Histogram(otlp::Histogram {
                    data_points: vec![otlp::HistogramDataPoint {
                        attributes: attributes("histogram"),
                        start_time_unix_nano: 1,
                        time_unix_nano: 2,
                        count: 9,
                        sum: Some(4.5),
                        bucket_counts: vec![4, 5],
                        explicit_bounds: vec![1.0],
                        exemplars: exemplars(),
                        flags: 1,
                        min: Some(0.5),
                        max: Some(3.0),
                    }],
                    aggregation_temporality: otlp::AggregationTemporality::Delta as i32,
                }),
            ),
            metric(
                "exponential",
                otlp::metric::Data::ExponentialHistogram(otlp::ExponentialHistogram {
                    data_points: vec![otlp::ExponentialHistogramDataPoint {
                        attributes: attributes("exponential"),
                        start_time_unix_nano: 1,
                        time_unix_nano: 2,
                        count: 11,
                        sum: Some(-1.0),
                        scale: 3,
                        zero_count: 1,
                        positive: buckets(),
                        negative: buckets(),
                        flags: 1,
                        exemplars: exemplars(),
                        min: Some(-2.0),
                        max: Some(2.0),
                        zero_threshold: 0.001,
                    }],
                    aggregation_temporality: otlp::AggregationTemporality::Cumulative as i32,
                }),
            ),
            metric(
                "summary",
                otlp::metric::Data::Summary(otlp::Summary {
                    data_points: vec![otlp::SummaryDataPoint {
                        attributes: attributes("summary"),
                        start_time_unix_nano: 1,
                        time_unix_nano: 2,
                        count: 4,
                        sum: 8.0,
                        quantile_values: vec![otlp::summary_data_point::ValueAtQuantile { quantile: 0.5, value: 2.0 }],
                        flags: 1,
                    }],
                }),
            ),
        ];
        otlp_collector::ExportMetricsServiceRequest {
            resource_metrics: vec![otlp::ResourceMetrics {
                resource: Some(otlp_resource::Resource {
                    attributes: attributes("resource"),
                    dropped_attributes_count: 2,
                    entity_refs: vec![otlp_common::EntityRef {
                        schema_url: "url".into(),
                        r#type: "k8s.pod".into(),
                        id_keys: vec!["k8s.pod.uid".into()],
                        description_keys: vec!["k8s.pod.name".into()],
                    }],
                }),
                scope_metrics: vec![otlp::ScopeMetrics {
                    scope: Some(otlp_common::InstrumentationScope {
                        name: "meter".into(),
                        version: "1.0".into(),
                        attributes: attributes("scope"),
                        dropped_attributes_count: 1,
                    }),
                    metrics,
                    schema_url: "url".into(),
                }],
                schema_url: "url".into(),
            }],
        }
    }

    /// What the fields this module keeps should decode to, read from the crate's messages by field name.
    fn kept(export: &otlp_collector::ExportMetricsServiceRequest) -> ExportMetricsServiceRequest {
        fn text(text: &str) -> Bytes {
            Bytes::copy_from_slice(text.as_bytes())
        }
        fn key_values(attributes: &[otlp_common::KeyValue]) -> Vec<KeyValue> {
            use otlp_common::any_value::Value as V;
            attributes
                .iter()
                .map(|kv| KeyValue {
                    key: text(&kv.key),
                    value: kv.value.as_ref().map(|value| AnyValue {
                        value: value.value.as_ref().map(|value| match value {
                            V::StringValue(s) => any_value::Value::StringValue(text(s)),
                            V::BoolValue(b) => any_value::Value::BoolValue(*b),
                            V::IntValue(i) => any_value::Value::IntValue(*i),
                            V::DoubleValue(d) => any_value::Value::DoubleValue(*d),
                            V::ArrayValue(a) => any_value::Value::ArrayValue(a.encode_to_vec().into()),
                            V::KvlistValue(l) => any_value::Value::KvlistValue(l.encode_to_vec().into()),
                            V::BytesValue(b) => any_value::Value::BytesValue(b.clone().into()),
                            V::StringValueStrindex(i) => any_value::Value::StringValueStrindex(*i),
                        }),
                    }),
                })
                .collect()
        }
        let number = |p: &otlp::NumberDataPoint| NumberDataPoint {
            attributes: key_values(&p.attributes),
            flags: p.flags,
            value: p.value.map(|value| match value {
                otlp::number_data_point::Value::AsDouble(d) => number_data_point::Value::AsDouble(d),
                otlp::number_data_point::Value::AsInt(i) => number_data_point::Value::AsInt(i),
            }),
        };
        // The kept fields of the three kinds of point that count: the same four, by the same names.
        macro_rules! counted {
            ($points:expr, $ours:ident) => {
                $points
                    .iter()
                    .map(|p| $ours {
                        attributes: key_values(&p.attributes),
                        count: p.count,
                        sum: p.sum,
                        flags: p.flags,
                    })
                    .collect()
            };
        }
        let data = |data: &otlp::metric::Data| match data {
            otlp::metric::Data::Gauge(g) => {
                metric::Data::Gauge(Gauge { data_points: g.data_points.iter().map(number).collect() })
            }
            otlp::metric::Data::Sum(s) => metric::Data::Sum(Sum {
                data_points: s.data_points.iter().map(number).collect(),
                aggregation_temporality: s.aggregation_temporality,
                is_monotonic: s.is_monotonic,
            }),
            otlp::metric::Data::Histogram(h) => metric::Data::Histogram(Histogram {
                data_points: counted!(h.data_points, HistogramDataPoint),
                aggregation_temporality: h.aggregation_temporality,
            }),
            otlp::metric::Data::ExponentialHistogram(h) => metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: counted!(h.data_points, ExponentialHistogramDataPoint),
                aggregation_temporality: h.aggregation_temporality,
            }),
            otlp::metric::Data::Summary(s) => {
                metric::Data::Summary(Summary { data_points: counted!(s.data_points, SummaryDataPoint) })
            }
        };
        ExportMetricsServiceRequest {
            resource_metrics: export
                .resource_metrics
                .iter()
                .map(|r| ResourceMetrics {
                    resource: r.resource.as_ref().map(|r| Resource { attributes: key_values(&r.attributes) }),
                    scope_metrics: r
                        .scope_metrics
                        .iter()
                        .map(|s| ScopeMetrics {
                            metrics: s
                                .metrics
                                .iter()
                                .map(|m| Metric { name: text(&m.name), data: m.data.as_ref().map(data) })
                                .collect(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_crates_messages_decode_into_the_fields_kept() {
        let export = full_export();
        let body = Bytes::from(export.encode_to_vec());
        let decoded = ExportMetricsServiceRequest::decode(body.clone()).unwrap();
        assert_eq!(decoded, kept(&export));
        // Every metric kind and attribute kind was there to compare.
        let metrics = &decoded.resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(metrics.len(), 5);
        assert!(metrics.iter().all(|m| m.data.is_some()));
        // The strings are the body's own bytes, not copies.
        let name = &metrics[0].name;
        let within = body.as_ptr_range();
        assert!(within.contains(&name.as_ptr()), "the metric name was copied");
    }

    #[test]
    fn a_string_that_is_not_utf8_decodes_and_says_so_where_it_is_read() {
        let mut export = full_export();
        export.resource_metrics[0].scope_metrics[0].metrics[0].name = "gauge".into();
        let mut body = export.encode_to_vec();
        let at = body.windows(5).position(|w| w == b"gauge").unwrap();
        body[at] = 0xff;
        let decoded = ExportMetricsServiceRequest::decode(Bytes::from(body)).unwrap();
        let name = &decoded.resource_metrics[0].scope_metrics[0].metrics[0].name;
        assert_eq!(name.as_ref(), b"\xffauge");
        assert!(text(name).is_err());
        assert_eq!(text(&decoded.resource_metrics[0].scope_metrics[0].metrics[1].name), Ok("sum"));
    }
}
