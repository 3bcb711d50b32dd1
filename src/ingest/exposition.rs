//! The two bodies Pushgateway clients send (docs/wire-contract.md §4.5): the Prometheus text format 0.0.4 and
//! length-delimited `io.prometheus.client.MetricFamily` protobuf messages. Pure: bytes in, samples out.
//!
//! Both parsers keep what the adapter stores and check the rest: counters, gauges and untyped values as they are;
//! of a summary or a histogram its `_count` and `_sum` (quantiles and buckets are checked, then dropped). A body that
//! does not parse is refused whole, with the line (text) or the family (protobuf) that is wrong. Values are kept as
//! `f64` and timestamps as given: whether a sample can be stored (NaN, ±Inf, a timestamp) is the mapping's decision,
//! which names the sample.
//!
//! The text parser is our own: the crates that parse this format skip the lines they do not understand and split
//! label values at commas, so a malformed push would be half stored without a word. It follows the rules of
//! Prometheus' own parser (`expfmt`): `# HELP` and `# TYPE` lines, any other `#` line a comment, escapes `\\`,
//! `\"` and `\n` in label values, a family's samples found by name (with `_count`, `_sum` and `_bucket` for the
//! summary and histogram families declared by `# TYPE`).

use std::sync::Arc;

use super::FastMap;

use prost::Message;

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `untyped`, or no `# TYPE` line.
    Untyped,
    /// `summary`: `_count` and `_sum` kept.
    Summary,
    /// `histogram` (and protobuf's gauge histogram): `_count` and `_sum` kept.
    Histogram,
}

impl Kind {
    fn from_text(word: &str) -> Option<Kind> {
        Some(match word {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "untyped" => Kind::Untyped,
            "summary" => Kind::Summary,
            "histogram" => Kind::Histogram,
            _ => return None,
        })
    }
}

/// One value to store: a counter, gauge or untyped sample, or the `_count` or `_sum` of a summary or histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct PushedSample {
    /// The family's name (what a POST replaces), e.g. `latency_seconds`; shared by the family's samples.
    pub family: Arc<str>,
    /// The family's type.
    pub kind: Kind,
    /// The sample's name, e.g. `latency_seconds_count`.
    pub name: Arc<str>,
    /// Labels in the order given; names are unique.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
    /// A timestamp in milliseconds, when the sample carried one.
    pub timestamp_ms: Option<i64>,
}

impl PushedSample {
    /// `name{a="b",...}` as the text format writes it: how a refusal names the sample.
    pub fn describe(&self) -> String {
        describe(&self.name, self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// `name{a="b",...}`, label values escaped as in the text format.
pub fn describe<'a>(name: &str, labels: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut text = name.to_string();
    let mut first = true;
    for (key, value) in labels {
        text.push(if first { '{' } else { ',' });
        first = false;
        text.push_str(key);
        text.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => text.push_str("\\\\"),
                '"' => text.push_str("\\\""),
                '\n' => text.push_str("\\n"),
                c => text.push(c),
            }
        }
        text.push('"');
    }
    if !first {
        text.push('}');
    }
    text
}

/// Why a body is refused whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The body is not in the format it was sent as.
    #[error("{0}")]
    Syntax(String),
    /// More samples to store than allowed.
    #[error("more than {limit} samples")]
    TooManySamples {
        /// The limit.
        limit: usize,
    },
}

/// What a sample line is to its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Value,
    Count,
    Sum,
    Bucket,
    Quantile,
}

struct TextFamily {
    name: Arc<str>,
    kind: Kind,
    typed: bool,
    help: bool,
    has_samples: bool,
}

/// Parses a text-format body (0.0.4). At most `max_samples` samples are kept; one more refuses the body.
pub fn parse_text(body: &[u8], max_samples: usize) -> Result<Vec<PushedSample>, ParseError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ParseError::Syntax(format!(
            "the body is not UTF-8 text (at byte {}); send the text format 0.0.4",
            e.valid_up_to()
        ))
    })?;
    let mut families = TextFamilies::default();
    let mut samples = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        let error =
            |message: String| ParseError::Syntax(format!("text format parsing error in line {}: {message}", index + 1));
        let line = line.strip_suffix('\r').unwrap_or(line).trim_start_matches(is_blank);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            parse_comment(comment, &mut families).map_err(error)?;
            continue;
        }
        let line = parse_sample_line(line).map_err(error)?;
        let (family_name, role) = family_of(&families, line.name);
        let family = families.entry(family_name);
        family.has_samples = true;
        let kind = family.kind;
        let role = match (kind, role) {
            (Kind::Summary, Role::Value) => Role::Quantile,
            (Kind::Histogram, Role::Value) => {
                return Err(error(format!(
                    "{} is a histogram: its samples are {0}_bucket, {0}_sum and {0}_count",
                    line.name
                )));
            }
            (_, role) => role,
        };
        let special = match role {
            Role::Quantile => Some("quantile"),
            Role::Bucket => Some("le"),
            _ => None,
        };
        if let Some(special) = special {
            match line.labels.iter().find(|(k, _)| k == special) {
                Some((_, bound)) if parse_float(bound).is_some() => {}
                Some((_, bound)) => {
                    return Err(error(format!("expected float as value for {special} label, got {bound:?}")));
                }
                None => return Err(error(format!("{} needs a {special} label", line.name))),
            }
            // Checked and dropped: only counts and sums are stored.
            continue;
        }
        if samples.len() == max_samples {
            return Err(ParseError::TooManySamples { limit: max_samples });
        }
        samples.push(PushedSample {
            family: Arc::clone(&family.name),
            kind,
            // A family's own samples share its name; `_count` and `_sum` have theirs.
            name: if role == Role::Value { Arc::clone(&family.name) } else { line.name.into() },
            labels: line.labels,
            value: line.value,
            timestamp_ms: line.timestamp_ms,
        });
    }
    Ok(samples)
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The families of a text body, in order of appearance, found by name.
#[derive(Default)]
struct TextFamilies {
    index: FastMap<String, usize>,
    list: Vec<TextFamily>,
}

impl TextFamilies {
    fn get(&self, name: &str) -> Option<&TextFamily> {
        self.index.get(name).map(|&at| &self.list[at])
    }

    /// The family called `name`, a new untyped one if it has not been seen yet (its name allocated only then).
    fn entry(&mut self, name: &str) -> &mut TextFamily {
        let at = match self.index.get(name) {
            Some(&at) => at,
            None => {
                let family = TextFamily {
                    name: name.into(),
                    kind: Kind::Untyped,
                    typed: false,
                    help: false,
                    has_samples: false,
                };
                self.list.push(family);
                self.index.insert(name.to_string(), self.list.len() - 1);
                self.list.len() - 1
            }
        };
        &mut self.list[at]
    }
}

/// The family a sample name belongs to: the summary or histogram whose `_count`, `_sum` (or `_bucket`) it is, else
/// the family of that exact name (new ones are untyped).
fn family_of<'n>(families: &TextFamilies, name: &'n str) -> (&'n str, Role) {
    let typed = |base: &str, kinds: &[Kind]| families.get(base).is_some_and(|f| kinds.contains(&f.kind));
    for (suffix, role, kinds) in [
        ("_count", Role::Count, &[Kind::Summary, Kind::Histogram][..]),
        ("_sum", Role::Sum, &[Kind::Summary, Kind::Histogram][..]),
        ("_bucket", Role::Bucket, &[Kind::Histogram][..]),
    ] {
        if let Some(base) = name.strip_suffix(suffix)
            && typed(base, kinds)
        {
            return (base, role);
        }
    }
    (name, Role::Value)
}

/// `# HELP name text`, `# TYPE name type`, or a comment.
fn parse_comment(comment: &str, families: &mut TextFamilies) -> Result<(), String> {
    let comment = comment.trim_start_matches(is_blank);
    let (keyword, rest) = split_word(comment);
    if keyword != "HELP" && keyword != "TYPE" {
        return Ok(());
    }
    let (name, rest) = split_word(rest.trim_start_matches(is_blank));
    if name.is_empty() {
        return Err(format!("{keyword} line without a metric name"));
    }
    check_metric_name(name)?;
    let family = families.entry(name);
    let rest = rest.trim_start_matches(is_blank);
    if keyword == "HELP" {
        if family.help {
            return Err(format!("second HELP line for metric name {name:?}"));
        }
        family.help = true;
        check_help_escapes(rest)?;
        return Ok(());
    }
    if family.typed {
        return Err(format!("second TYPE line for metric name {name:?}, or TYPE reported after samples"));
    }
    if family.has_samples {
        return Err(format!("TYPE line for metric name {name:?} after its samples"));
    }
    let (word, trailing) = split_word(rest);
    if !trailing.trim_matches(is_blank).is_empty() {
        return Err(format!("unexpected text after the type of {name:?}: {:?}", trailing.trim_matches(is_blank)));
    }
    let kind = Kind::from_text(word).ok_or_else(|| {
        format!("unknown metric type {word:?} for {name:?}: the text format 0.0.4 has counter, gauge, histogram, summary and untyped")
    })?;
    family.kind = kind;
    family.typed = true;
    Ok(())
}

fn check_help_escapes(help: &str) -> Result<(), String> {
    let mut chars = help.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\\' | 'n') => {}
                other => {
                    return Err(format!(
                        "invalid escape sequence '\\{}' in HELP text",
                        other.map(String::from).unwrap_or_default()
                    ));
                }
            }
        }
    }
    Ok(())
}

fn split_word(text: &str) -> (&str, &str) {
    let end = text.find(is_blank).unwrap_or(text.len());
    text.split_at(end)
}

/// A metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn check_metric_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':');
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':') {
        return Err(format!("invalid metric name {name:?}: it must match [a-zA-Z_:][a-zA-Z0-9_:]*"));
    }
    Ok(())
}

/// A label name: `[a-zA-Z_][a-zA-Z0-9_]*`, and not `__name__`.
fn check_label_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("invalid label name {name:?}: it must match [a-zA-Z_][a-zA-Z0-9_]*"));
    }
    if name == "__name__" {
        return Err("label name \"__name__\" is reserved".to_string());
    }
    Ok(())
}

/// A float as Prometheus writes one: Go's syntax, `NaN`, `Inf`, `+Inf`, `-Inf` included.
fn parse_float(text: &str) -> Option<f64> {
    // Rust reads "inf", "infinity" and "nan" in any case, as Go does; it has no hexadecimal floats, which no client
    // writes.
    text.parse::<f64>().ok()
}

struct SampleLine<'a> {
    name: &'a str,
    labels: Vec<(String, String)>,
    value: f64,
    timestamp_ms: Option<i64>,
}

fn parse_sample_line(line: &str) -> Result<SampleLine<'_>, String> {
    let name_end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return Err(format!("expected a metric name, found {:?}", first_chars(line)));
    }
    check_metric_name(name)?;
    let mut rest = line[name_end..].trim_start_matches(is_blank);
    let mut labels: Vec<(String, String)> = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, name, &mut labels)?;
    }
    let rest = rest.trim_start_matches(is_blank);
    let (value_text, rest) = split_word(rest);
    if value_text.is_empty() {
        return Err(format!("expected a value for {name}"));
    }
    let value = parse_float(value_text).ok_or_else(|| format!("expected float as value, got {value_text:?}"))?;
    let (timestamp_text, rest) = split_word(rest.trim_start_matches(is_blank));
    let timestamp_ms = if timestamp_text.is_empty() {
        None
    } else {
        Some(
            timestamp_text
                .parse::<i64>()
                .map_err(|_| format!("expected integer as timestamp, got {timestamp_text:?}"))?,
        )
    };
    if !rest.trim_matches(is_blank).is_empty() {
        return Err(format!("spurious string after timestamp: {:?}", first_chars(rest.trim_matches(is_blank))));
    }
    Ok(SampleLine { name, labels, value, timestamp_ms })
}

/// The labels after `{`, up to and including `}`; returns what follows.
fn parse_labels<'a>(mut rest: &'a str, metric: &str, labels: &mut Vec<(String, String)>) -> Result<&'a str, String> {
    loop {
        rest = rest.trim_start_matches(is_blank);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let name_end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        let label = &rest[..name_end];
        if label.is_empty() {
            return Err(format!("invalid label name in the labels of {metric}, at {:?}", first_chars(rest)));
        }
        check_label_name(label)?;
        if labels.iter().any(|(k, _)| k == label) {
            return Err(format!("duplicate label name {label:?} for metric {metric}"));
        }
        rest = rest[name_end..].trim_start_matches(is_blank);
        rest = rest.strip_prefix('=').ok_or_else(|| format!("expected '=' after label name {label:?}"))?;
        rest = rest.trim_start_matches(is_blank);
        rest = rest.strip_prefix('"').ok_or_else(|| format!("expected '\"' to start the value of label {label:?}"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated value of label {label:?}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => {
                        return Err(format!("invalid escape sequence '\\{other}' in the value of label {label:?}"));
                    }
                    None => return Err(format!("unterminated value of label {label:?}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((label.to_string(), value));
        rest = rest[end + 1..].trim_start_matches(is_blank);
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(format!("expected ',' or '}}' after the value of label {label:?}"));
        }
    }
}

fn first_chars(text: &str) -> String {
    text.chars().take(20).collect()
}

/// The content type of a delimited protobuf push (what `client_golang`'s push package sends by default).
pub fn is_protobuf(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else { return false };
    let mut parts = content_type.split(';').map(str::trim);
    if !parts.next().is_some_and(|media| media.eq_ignore_ascii_case("application/vnd.google.protobuf")) {
        return false;
    }
    let (mut proto, mut delimited) = (false, false);
    for parameter in parts {
        let Some((key, value)) = parameter.split_once('=') else { continue };
        let value = value.trim().trim_matches('"');
        match key.trim().to_ascii_lowercase().as_str() {
            "proto" => proto = value == "io.prometheus.client.MetricFamily",
            "encoding" => delimited = value == "delimited",
            _ => {}
        }
    }
    proto && delimited
}

/// The messages of `io.prometheus.client` (prometheus/client_model's `metrics.proto`, proto2), the fields the adapter
/// reads; prost skips the others (exemplars, buckets, quantiles, native histograms).
mod proto {
    /// `LabelPair`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPair {
        /// Label name.
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        /// Label value.
        #[prost(string, optional, tag = "2")]
        pub value: Option<String>,
    }

    /// `Gauge`, `Counter` and `Untyped`: one value (field 1 in each).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Value {
        /// The value.
        #[prost(double, optional, tag = "1")]
        pub value: Option<f64>,
    }

    /// `Summary`, without its quantiles.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Summary {
        /// Observations.
        #[prost(uint64, optional, tag = "1")]
        pub sample_count: Option<u64>,
        /// Their sum.
        #[prost(double, optional, tag = "2")]
        pub sample_sum: Option<f64>,
    }

    /// `Histogram`, without its buckets.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        /// Observations.
        #[prost(uint64, optional, tag = "1")]
        pub sample_count: Option<u64>,
        /// Their sum.
        #[prost(double, optional, tag = "2")]
        pub sample_sum: Option<f64>,
        /// Observations, of a float histogram.
        #[prost(double, optional, tag = "4")]
        pub sample_count_float: Option<f64>,
    }

    /// `Metric`: labels and the value of its family's type.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metric {
        /// Labels.
        #[prost(message, repeated, tag = "1")]
        pub label: Vec<LabelPair>,
        /// A gauge's value.
        #[prost(message, optional, tag = "2")]
        pub gauge: Option<Value>,
        /// A counter's value.
        #[prost(message, optional, tag = "3")]
        pub counter: Option<Value>,
        /// A summary's count and sum.
        #[prost(message, optional, tag = "4")]
        pub summary: Option<Summary>,
        /// An untyped value.
        #[prost(message, optional, tag = "5")]
        pub untyped: Option<Value>,
        /// Timestamp in milliseconds.
        #[prost(int64, optional, tag = "6")]
        pub timestamp_ms: Option<i64>,
        /// A histogram's count and sum.
        #[prost(message, optional, tag = "7")]
        pub histogram: Option<Histogram>,
    }

    /// `MetricFamily`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricFamily {
        /// Family name.
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        /// Help text.
        #[prost(string, optional, tag = "2")]
        pub help: Option<String>,
        /// `MetricType`: COUNTER 0, GAUGE 1, SUMMARY 2, UNTYPED 3, HISTOGRAM 4, GAUGE_HISTOGRAM 5.
        #[prost(int32, optional, tag = "3")]
        pub r#type: Option<i32>,
        /// The metrics.
        #[prost(message, repeated, tag = "4")]
        pub metric: Vec<Metric>,
    }
}

pub use proto::{
    Histogram as ProtoHistogram, LabelPair as ProtoLabelPair, Metric as ProtoMetric, MetricFamily as ProtoMetricFamily,
    Summary as ProtoSummary, Value as ProtoValue,
};

/// Parses a body of length-delimited `MetricFamily` messages. At most `max_samples` samples are kept.
pub fn parse_protobuf(body: &[u8], max_samples: usize) -> Result<Vec<PushedSample>, ParseError> {
    let mut buffer = body;
    let mut samples = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut index = 0;
    while !buffer.is_empty() {
        let family = ProtoMetricFamily::decode_length_delimited(&mut buffer).map_err(|e| {
            ParseError::Syntax(format!(
                "MetricFamily message {} is not a delimited io.prometheus.client.MetricFamily: {e}",
                index + 1
            ))
        })?;
        index += 1;
        let name = family.name.clone().unwrap_or_default();
        let shared: Arc<str> = name.as_str().into();
        let error = |message: String| ParseError::Syntax(format!("MetricFamily {name:?}: {message}"));
        check_metric_name(&name).map_err(error)?;
        if !seen.insert(name.clone()) {
            return Err(error("sent twice in one push; send each family once".to_string()));
        }
        let kind = match family.r#type.unwrap_or(0) {
            0 => Kind::Counter,
            1 => Kind::Gauge,
            2 => Kind::Summary,
            3 => Kind::Untyped,
            4 | 5 => Kind::Histogram,
            other => return Err(error(format!("unknown metric type {other}"))),
        };
        for metric in &family.metric {
            let mut labels: Vec<(String, String)> = Vec::with_capacity(metric.label.len());
            for pair in &metric.label {
                let key = pair.name.clone().unwrap_or_default();
                check_label_name(&key).map_err(error)?;
                if labels.iter().any(|(k, _)| *k == key) {
                    return Err(error(format!("duplicate label name {key:?}")));
                }
                labels.push((key, pair.value.clone().unwrap_or_default()));
            }
            let missing = |what: &str| error(format!("a metric of type {kind:?} without its {what} value"));
            let values: Vec<(Arc<str>, f64)> = match kind {
                Kind::Counter => vec![(
                    Arc::clone(&shared),
                    metric.counter.as_ref().and_then(|v| v.value).ok_or_else(|| missing("counter"))?,
                )],
                Kind::Gauge => {
                    vec![(
                        Arc::clone(&shared),
                        metric.gauge.as_ref().and_then(|v| v.value).ok_or_else(|| missing("gauge"))?,
                    )]
                }
                Kind::Untyped => vec![(
                    Arc::clone(&shared),
                    metric.untyped.as_ref().and_then(|v| v.value).ok_or_else(|| missing("untyped"))?,
                )],
                Kind::Summary => {
                    let summary = metric.summary.as_ref().ok_or_else(|| missing("summary"))?;
                    vec![
                        (format!("{name}_count").into(), summary.sample_count.unwrap_or(0) as f64),
                        (format!("{name}_sum").into(), summary.sample_sum.unwrap_or(0.0)),
                    ]
                }
                Kind::Histogram => {
                    let histogram = metric.histogram.as_ref().ok_or_else(|| missing("histogram"))?;
                    let count = match (histogram.sample_count, histogram.sample_count_float) {
                        (Some(count), _) => count as f64,
                        (None, Some(count)) => count,
                        (None, None) => 0.0,
                    };
                    vec![
                        (format!("{name}_count").into(), count),
                        (format!("{name}_sum").into(), histogram.sample_sum.unwrap_or(0.0)),
                    ]
                }
            };
            for (sample_name, value) in values {
                if samples.len() == max_samples {
                    return Err(ParseError::TooManySamples { limit: max_samples });
                }
                samples.push(PushedSample {
                    family: Arc::clone(&shared),
                    kind,
                    name: sample_name,
                    labels: labels.clone(),
                    value,
                    timestamp_ms: metric.timestamp_ms,
                });
            }
        }
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(body: &str) -> Result<Vec<PushedSample>, ParseError> {
        parse_text(body.as_bytes(), 1000)
    }

    fn syntax(body: &str) -> String {
        match text(body) {
            Err(ParseError::Syntax(message)) => message,
            other => panic!("{body:?} parsed: {other:?}"),
        }
    }

    fn names(samples: &[PushedSample]) -> Vec<(&str, &str, f64)> {
        samples.iter().map(|s| (s.family.as_ref(), s.name.as_ref(), s.value)).collect()
    }

    #[test]
    fn counters_gauges_untyped_and_the_counts_and_sums_of_summaries_and_histograms() {
        let body = "# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\njobs_total{queue=\"a\"} 3\n\
            # TYPE temp gauge\ntemp -1.5\nplain 7 \n\
            # TYPE rpc summary\nrpc{quantile=\"0.5\"} 1\nrpc_sum 10\nrpc_count 4\n\
            # TYPE lat histogram\nlat_bucket{le=\"0.1\"} 1\nlat_bucket{le=\"+Inf\"} 2\nlat_sum 0.3\nlat_count 2\n\
            # a comment\n#\n\n   \nplain_count 1\n";
        let samples = text(body).unwrap();
        assert_eq!(
            names(&samples),
            [
                ("jobs_total", "jobs_total", 3.0),
                ("temp", "temp", -1.5),
                ("plain", "plain", 7.0),
                ("rpc", "rpc_sum", 10.0),
                ("rpc", "rpc_count", 4.0),
                ("lat", "lat_sum", 0.3),
                ("lat", "lat_count", 2.0),
                // Not a summary or histogram: an untyped family of its own.
                ("plain_count", "plain_count", 1.0),
            ]
        );
        assert_eq!(samples[0].kind, Kind::Counter);
        assert_eq!(samples[0].labels, [("queue".to_string(), "a".to_string())]);
        assert_eq!(samples[2].kind, Kind::Untyped);
        assert_eq!(samples[5].kind, Kind::Histogram);
        assert_eq!(text("").unwrap(), []);
    }

    #[test]
    fn escapes_in_label_values_and_odd_but_valid_spacing() {
        let body = "m{path=\"C:\\\\DIR\\\\F.TXT\",msg=\"say \\\"hi\\\"\\nbye\",comma=\"a,b=c}\",empty=\"\",} 1 1700000000000\n\
            m2 { a = \"x\" } +Inf\nm3{}\tNaN\nm4 -Inf\r\n";
        let samples = text(body).unwrap();
        assert_eq!(
            samples[0].labels,
            [
                ("path".to_string(), "C:\\DIR\\F.TXT".to_string()),
                ("msg".to_string(), "say \"hi\"\nbye".to_string()),
                ("comma".to_string(), "a,b=c}".to_string()),
                ("empty".to_string(), String::new()),
            ]
        );
        assert_eq!(samples[0].timestamp_ms, Some(1_700_000_000_000));
        assert_eq!(samples[0].describe(), r#"m{path="C:\\DIR\\F.TXT",msg="say \"hi\"\nbye",comma="a,b=c}",empty=""}"#);
        assert_eq!(samples[1].labels, [("a".to_string(), "x".to_string())]);
        assert_eq!(samples[1].value, f64::INFINITY);
        assert!(samples[2].value.is_nan());
        assert_eq!(samples[3].value, f64::NEG_INFINITY);
    }

    #[test]
    fn malformed_lines_refuse_the_body_and_name_the_line() {
        for (body, expected) in [
            ("m{a=\"x} 1", "line 1: unterminated value"),
            ("ok 1\nm{a=\"\\t\"} 1", "line 2: invalid escape sequence '\\t'"),
            ("m{a=\"x\" b=\"y\"} 1", "expected ',' or '}'"),
            ("m{a=x} 1", "expected '\"'"),
            ("m{a=\"1\",a=\"2\"} 1", "duplicate label name \"a\""),
            ("m{__name__=\"x\"} 1", "reserved"),
            ("m{1a=\"x\"} 1", "invalid label name"),
            ("m", "expected a value"),
            ("m one", "expected float as value, got \"one\""),
            ("m 1 2 3", "spurious string after timestamp"),
            ("m 1 1.5", "expected integer as timestamp"),
            ("9m 1", "invalid metric name \"9m\""),
            ("# TYPE m gaugehistogram\nm 1", "unknown metric type \"gaugehistogram\""),
            ("# TYPE m info", "unknown metric type \"info\""),
            ("# TYPE m counter\n# TYPE m gauge", "second TYPE line"),
            ("m 1\n# TYPE m counter", "after its samples"),
            ("# HELP m a\n# HELP m b", "second HELP line"),
            ("# HELP m bad \\t escape", "invalid escape sequence"),
            ("# TYPE m counter extra", "unexpected text"),
            ("# TYPE s summary\ns 1", "needs a quantile label"),
            ("# TYPE h histogram\nh_bucket 1", "needs a le label"),
            ("# TYPE h histogram\nh_bucket{le=\"x\"} 1", "expected float as value for le label"),
            ("# TYPE h histogram\nh 1", "is a histogram"),
        ] {
            let message = syntax(body);
            assert!(message.contains(expected), "{body:?}: {message}");
            assert!(message.starts_with("text format parsing error in line "), "{message}");
        }
        assert!(syntax("\u{0}\u{ff}").contains("line 1"));
        assert!(matches!(parse_text(b"m 1\n\xff", 10), Err(ParseError::Syntax(m)) if m.contains("not UTF-8")));
    }

    #[test]
    fn samples_beyond_the_limit_refuse_the_body_but_dropped_buckets_do_not_count() {
        let body = "a 1\nb 2\nc 3\n";
        assert_eq!(parse_text(body.as_bytes(), 3).unwrap().len(), 3);
        assert_eq!(parse_text(body.as_bytes(), 2), Err(ParseError::TooManySamples { limit: 2 }));
        let histogram = "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1";
        assert_eq!(parse_text(histogram.as_bytes(), 2).unwrap().len(), 2);
    }

    fn delimited(families: &[ProtoMetricFamily]) -> Vec<u8> {
        let mut body = Vec::new();
        for family in families {
            family.encode_length_delimited(&mut body).unwrap();
        }
        body
    }

    fn family(name: &str, kind: i32, metrics: Vec<ProtoMetric>) -> ProtoMetricFamily {
        ProtoMetricFamily { name: Some(name.into()), help: Some("h".into()), r#type: Some(kind), metric: metrics }
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<ProtoLabelPair> {
        pairs.iter().map(|(k, v)| ProtoLabelPair { name: Some(k.to_string()), value: Some(v.to_string()) }).collect()
    }

    fn value(v: f64) -> Option<ProtoValue> {
        Some(ProtoValue { value: Some(v) })
    }

    #[test]
    fn delimited_protobuf_of_every_type() {
        let body = delimited(&[
            family(
                "c_total",
                0,
                vec![ProtoMetric { label: labels(&[("pod", "p")]), counter: value(3.0), ..Default::default() }],
            ),
            family("g", 1, vec![ProtoMetric { gauge: value(-2.5), ..Default::default() }]),
            family("u", 3, vec![ProtoMetric { untyped: value(1.0), timestamp_ms: Some(5), ..Default::default() }]),
            family(
                "s",
                2,
                vec![ProtoMetric {
                    summary: Some(ProtoSummary { sample_count: Some(4), sample_sum: Some(1.5) }),
                    ..Default::default()
                }],
            ),
            family(
                "h",
                4,
                vec![ProtoMetric {
                    histogram: Some(ProtoHistogram {
                        sample_count: Some(2),
                        sample_sum: Some(0.25),
                        sample_count_float: None,
                    }),
                    ..Default::default()
                }],
            ),
        ]);
        let samples = parse_protobuf(&body, 100).unwrap();
        assert_eq!(
            names(&samples),
            [
                ("c_total", "c_total", 3.0),
                ("g", "g", -2.5),
                ("u", "u", 1.0),
                ("s", "s_count", 4.0),
                ("s", "s_sum", 1.5),
                ("h", "h_count", 2.0),
                ("h", "h_sum", 0.25)
            ]
        );
        assert_eq!(samples[0].labels, [("pod".to_string(), "p".to_string())]);
        assert_eq!(samples[2].timestamp_ms, Some(5));
        assert_eq!(parse_protobuf(&[], 10).unwrap(), []);
        assert_eq!(parse_protobuf(&body, 6), Err(ParseError::TooManySamples { limit: 6 }));
    }

    #[test]
    fn bad_protobuf_refuses_the_body() {
        let err = |body: &[u8]| match parse_protobuf(body, 100) {
            Err(ParseError::Syntax(message)) => message,
            other => panic!("parsed: {other:?}"),
        };
        assert!(err(b"\x05ab").contains("not a delimited"));
        assert!(err(b"hello world").contains("not a delimited"));
        let unknown = delimited(&[family("x", 9, vec![ProtoMetric { gauge: value(1.0), ..Default::default() }])]);
        assert!(err(&unknown).contains("unknown metric type 9"), "{}", err(&unknown));
        let twice = delimited(&[
            family("x", 1, vec![ProtoMetric { gauge: value(1.0), ..Default::default() }]),
            family("x", 1, vec![ProtoMetric { gauge: value(2.0), ..Default::default() }]),
        ]);
        assert!(err(&twice).contains("sent twice"));
        let missing = delimited(&[family("x", 0, vec![ProtoMetric { gauge: value(1.0), ..Default::default() }])]);
        assert!(err(&missing).contains("without its counter value"), "{}", err(&missing));
        let bad_label = delimited(&[family(
            "x",
            1,
            vec![ProtoMetric { label: labels(&[("a-b", "1")]), gauge: value(1.0), ..Default::default() }],
        )]);
        assert!(err(&bad_label).contains("invalid label name"));
        let bad_name = delimited(&[family("a b", 1, vec![])]);
        assert!(err(&bad_name).contains("invalid metric name"));
    }

    #[test]
    fn the_content_type_of_client_golang_selects_protobuf() {
        assert!(is_protobuf(Some(
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
        )));
        assert!(is_protobuf(Some(
            "application/vnd.google.protobuf;encoding=delimited;proto=\"io.prometheus.client.MetricFamily\""
        )));
        for other in [
            None,
            Some("text/plain; version=0.0.4"),
            Some("application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=text"),
            Some("application/vnd.google.protobuf; proto=other.Message; encoding=delimited"),
            Some("application/octet-stream"),
        ] {
            assert!(!is_protobuf(other), "{other:?}");
        }
    }
}
