//! List responses (`MetricValueList`, `ExternalMetricValueList`) written one item at a time. A list whose body fits
//! in [`FULL_BODY_BYTES`] is sent as one buffer after one serialization pass, as any other answer. A longer one is
//! counted to its end first, so that one over `--max-response-bytes` is refused before anything is sent, and is then
//! produced in pieces of about [`CHUNK_BYTES`] as the connection takes them: no response is ever held whole.
//!
//! The bytes are exactly those of serializing the whole list at once with serde_json: compact with a trailing
//! newline, or indented by two spaces without one.

use std::io::{self, Write};

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;
use serde_json::ser::{PrettyFormatter, Serializer};
use serde_json::value::RawValue;

use crate::response::{self, Chunks, HttpResponse, RequestError};

/// A list whose body is at most about this long is sent as one buffer (it ends after the item that reaches it).
pub const FULL_BODY_BYTES: usize = 256 * 1024;

/// A streamed piece ends after the item that makes it at least this long.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// The items of a list, serialized one at a time.
pub trait ListItems: Send + 'static {
    /// What one item serializes from.
    type Item<'a>: Serialize
    where
        Self: 'a;

    /// How many items there are.
    fn len(&self) -> usize;

    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Item `index` (below [`ListItems::len`]).
    fn item(&self, index: usize) -> Self::Item<'_>;
}

/// The envelope of a list and how it is printed.
#[derive(Debug, Clone, Copy)]
pub struct ListFormat {
    /// `kind`: a constant that needs no JSON escaping.
    pub kind: &'static str,
    /// `apiVersion`: a constant that needs no JSON escaping.
    pub api_version: &'static str,
    /// Indented by two spaces.
    pub pretty: bool,
}

impl ListFormat {
    /// Everything before the first item.
    fn head(&self, out: &mut Vec<u8>) {
        let parts: [&[u8]; 3] = if self.pretty {
            [b"{\n  \"kind\": \"", b"\",\n  \"apiVersion\": \"", b"\",\n  \"metadata\": {},\n  \"items\": ["]
        } else {
            [b"{\"kind\":\"", b"\",\"apiVersion\":\"", b"\",\"metadata\":{},\"items\":["]
        };
        out.extend_from_slice(parts[0]);
        out.extend_from_slice(self.kind.as_bytes());
        out.extend_from_slice(parts[1]);
        out.extend_from_slice(self.api_version.as_bytes());
        out.extend_from_slice(parts[2]);
    }

    /// Item `index` of `list`, with the separator before it.
    fn item<L: ListItems, W: Write>(&self, list: &L, index: usize, out: &mut W) -> serde_json::Result<()> {
        let item = list.item(index);
        if self.pretty {
            // An element of `items` sits two levels deep: its lines are indented by four more spaces than when it
            // is printed alone.
            out.write_all(if index == 0 { b"\n    " } else { b",\n    " }).map_err(serde_json::Error::io)?;
            item.serialize(&mut Serializer::with_formatter(Indented::new(out, 2), PrettyFormatter::new()))
        } else {
            if index > 0 {
                out.write_all(b",").map_err(serde_json::Error::io)?;
            }
            serde_json::to_writer(out, &item)
        }
    }

    /// Everything after the last item.
    fn tail(&self, empty: bool) -> &'static [u8] {
        match (self.pretty, empty) {
            (false, _) => b"]}\n",
            (true, true) => b"]\n}",
            (true, false) => b"\n  ]\n}",
        }
    }
}

/// `value` serialized once, to be written verbatim into every item: compact, or indented as it is printed at
/// `depth` levels inside an item.
pub fn raw_json<T: Serialize>(value: &T, pretty: bool, depth: usize) -> serde_json::Result<Box<RawValue>> {
    if !pretty {
        return serde_json::value::to_raw_value(value);
    }
    let mut out = Vec::new();
    value.serialize(&mut Serializer::with_formatter(Indented::new(&mut out, depth), PrettyFormatter::new()))?;
    RawValue::from_string(String::from_utf8(out).map_err(|e| serde_json::Error::io(io::Error::other(e)))?)
}

/// Writes through, indenting every new line by `depth` more levels of two spaces. JSON strings never hold a raw
/// newline (serde_json escapes it), so every newline is the formatter's.
struct Indented<W> {
    out: W,
    pad: &'static [u8],
}

impl<W: Write> Indented<W> {
    fn new(out: W, depth: usize) -> Self {
        const SPACES: &[u8] = b"                ";
        Indented { out, pad: &SPACES[..(2 * depth).min(SPACES.len())] }
    }
}

impl<W: Write> Write for Indented<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            self.out.write_all(&rest[..=newline])?;
            self.out.write_all(self.pad)?;
            rest = &rest[newline + 1..];
        }
        self.out.write_all(rest)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Counts what is written without keeping it, and fails as soon as the count passes `limit`, so that counting a
/// huge list costs no more than `limit` bytes of serialization.
struct Counter {
    count: usize,
    limit: usize,
}

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.count = self.count.saturating_add(buf.len());
        if self.count > self.limit {
            return Err(io::Error::other("the response is over its limit"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The 200 response holding `list`, or [`RequestError::ResponseTooLarge`] when its body would be longer than
/// `max_bytes`.
pub fn respond<L: ListItems>(list: L, format: ListFormat, max_bytes: usize) -> Result<HttpResponse, RequestError> {
    let too_large = || RequestError::ResponseTooLarge { limit: max_bytes };
    let len = list.len();
    let mut buffer = Vec::with_capacity(128);
    format.head(&mut buffer);
    let mut next = 0;
    while next < len && buffer.len() < FULL_BODY_BYTES {
        if let Err(error) = format.item(&list, next, &mut buffer) {
            return Ok(response::serialization_failed(&error));
        }
        next += 1;
    }
    let tail = format.tail(len == 0);
    if next == len {
        buffer.extend_from_slice(tail);
        if buffer.len() > max_bytes {
            return Err(too_large());
        }
        return Ok(response::with_body(StatusCode::OK, "application/json", Bytes::from(buffer)));
    }

    let mut counter = Counter { count: buffer.len(), limit: max_bytes };
    for index in next..len {
        if let Err(error) = format.item(&list, index, &mut counter) {
            if counter.count > max_bytes {
                return Err(too_large());
            }
            return Ok(response::serialization_failed(&error));
        }
    }
    let total = counter.count.saturating_add(tail.len());
    if total > max_bytes {
        return Err(too_large());
    }
    let chunks = ListChunks { list, format, prefix: Bytes::from(buffer), next, remaining: total as u64 };
    Ok(response::with_chunks(StatusCode::OK, "application/json", Box::new(chunks)))
}

/// A long list being sent: the part serialized while counting, then the rest, a piece at a time.
struct ListChunks<L> {
    list: L,
    format: ListFormat,
    /// What the first pass kept, handed out in pieces of at most [`CHUNK_BYTES`].
    prefix: Bytes,
    /// The first item not in `prefix`.
    next: usize,
    remaining: u64,
}

impl<L: ListItems> Chunks for ListChunks<L> {
    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.remaining == 0 {
            return None;
        }
        let chunk = if !self.prefix.is_empty() {
            self.prefix.split_to(self.prefix.len().min(CHUNK_BYTES))
        } else {
            let len = self.list.len();
            let mut out = Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4);
            while self.next < len && out.len() < CHUNK_BYTES {
                if let Err(error) = self.format.item(&self.list, self.next, &mut out) {
                    // The same items serialized while counting; should this ever fail, the body ends short of its
                    // announced length and the client sees a broken response rather than a truncated list.
                    tracing::error!(%error, "serializing a list item failed");
                    self.remaining = 0;
                    return None;
                }
                self.next += 1;
            }
            if self.next == len {
                out.extend_from_slice(self.format.tail(false));
            }
            Bytes::from(out)
        };
        self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
        Some(chunk)
    }

    fn remaining(&self) -> u64 {
        self.remaining
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::api::types::List;

    #[derive(Debug, Clone, Serialize)]
    struct Thing<N> {
        name: String,
        nested: Option<N>,
        labels: std::collections::BTreeMap<String, String>,
        empty: Vec<u8>,
    }

    /// Items whose `nested` is serialized once, as the selector of a metric list is.
    struct Things(Vec<Thing<Box<RawValue>>>);

    impl ListItems for Things {
        type Item<'a> = &'a Thing<Box<RawValue>>;
        fn len(&self) -> usize {
            self.0.len()
        }
        fn item(&self, index: usize) -> &Thing<Box<RawValue>> {
            &self.0[index]
        }
    }

    #[derive(Debug, Clone, Serialize)]
    struct Nested {
        a: Vec<u32>,
        b: std::collections::BTreeMap<&'static str, &'static str>,
    }

    fn thing<N>(i: usize, nested: impl FnOnce() -> N) -> Thing<N> {
        Thing {
            name: format!("thing-{i}-\u{e9}\n\t\"q\""),
            nested: (!i.is_multiple_of(3)).then(nested),
            labels: (0..i % 4).map(|j| (format!("k{j}"), format!("v{i}"))).collect(),
            empty: Vec::new(),
        }
    }

    fn nested() -> Nested {
        Nested { a: vec![1, 2], b: [("k", "v\n\"x\"")].into() }
    }

    fn things(count: usize, pretty: bool) -> Things {
        Things((0..count).map(|i| thing(i, || raw_json(&nested(), pretty, 1).unwrap())).collect())
    }

    /// What serde_json makes of the whole list in one go, with `nested` serialized in place: the bytes every
    /// response must have.
    fn expected(count: usize, pretty: bool) -> Vec<u8> {
        let list = List::new("ThingList", "things/v1", (0..count).map(|i| thing(i, nested)).collect());
        if pretty {
            serde_json::to_vec_pretty(&list).unwrap()
        } else {
            let mut bytes = serde_json::to_vec(&list).unwrap();
            bytes.push(b'\n');
            bytes
        }
    }

    /// Every frame of the body, and whether hyper was told its exact length.
    async fn frames(response: HttpResponse) -> (Vec<Bytes>, Option<u64>) {
        let mut body = response.into_body();
        let exact = http_body::Body::size_hint(&body).exact();
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            frames.push(frame.unwrap().into_data().unwrap());
        }
        (frames, exact)
    }

    #[tokio::test]
    async fn short_and_long_lists_are_the_bytes_of_serializing_them_whole() {
        for count in [0, 1, 2, 7, 3000] {
            for pretty in [false, true] {
                let want = expected(count, pretty);
                let format = ListFormat { kind: "ThingList", api_version: "things/v1", pretty };
                let response = respond(things(count, pretty), format, usize::MAX).unwrap();
                assert_eq!(response.status(), 200);
                let (frames, exact) = frames(response).await;
                let got: Vec<u8> = frames.concat();
                assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want), "{count} {pretty}");
                assert_eq!(exact, Some(want.len() as u64));
            }
        }
    }

    #[tokio::test]
    async fn a_long_list_comes_in_bounded_frames() {
        let items = things(20_000, false);
        let item_max = items.0.iter().map(|t| serde_json::to_vec(t).unwrap().len()).max().unwrap();
        let want = expected(20_000, false);
        assert!(want.len() > 4 * FULL_BODY_BYTES, "{}", want.len());
        let format = ListFormat { kind: "ThingList", api_version: "things/v1", pretty: false };
        let (frames, _) = frames(respond(items, format, usize::MAX).unwrap()).await;
        assert!(frames.len() >= want.len() / (CHUNK_BYTES + item_max), "{} frames", frames.len());
        for frame in &frames {
            assert!(frame.len() <= CHUNK_BYTES + item_max + 16, "a frame of {} bytes", frame.len());
        }
        assert_eq!(frames.concat(), want);
    }

    #[tokio::test]
    async fn a_list_over_the_byte_limit_is_refused_and_one_at_it_is_served() {
        for count in [3, 3000] {
            for pretty in [false, true] {
                let format = ListFormat { kind: "ThingList", api_version: "things/v1", pretty };
                let size = expected(count, pretty).len();
                let response = respond(things(count, pretty), format, size).unwrap();
                assert_eq!(frames(response).await.0.concat().len(), size);
                let refused = respond(things(count, pretty), format, size - 1).unwrap_err();
                assert!(matches!(refused, RequestError::ResponseTooLarge { limit } if limit == size - 1));
            }
        }
    }

    #[test]
    fn counting_stops_at_the_limit() {
        let mut counter = Counter { count: 0, limit: 10 };
        assert!(counter.write_all(b"0123456789").is_ok());
        assert!(counter.write_all(b"a").is_err());
    }
}
