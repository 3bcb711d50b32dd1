//! Request paths split into percent-decoded segments: shared by the write API ([`crate::ingest`]) and the read
//! API's routes ([`crate::api::route`]), which do not know each other. Pure: no IO.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// A path segment that is not UTF-8 once percent-decoded; such a path matches no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a path segment is not UTF-8 once percent-decoded")]
pub struct BadSegment;

/// Splits a path into percent-decoded segments, borrowing those without escapes (nearly all). A segment that is
/// not UTF-8 once decoded matches nothing.
pub fn decode_segments(path: &str) -> Result<Vec<Cow<'_, str>>, BadSegment> {
    // Byte-wise: '/' and '%' are ASCII, so the slices fall on character boundaries; the generic `str::split` and
    // the UTF-8 check of undecoded segments cost more than the rest of the routing on the hot paths.
    let mut segments = Vec::with_capacity(8);
    let mut start = 0;
    for (i, byte) in path.bytes().enumerate() {
        if byte == b'/' {
            segments.push(decode_segment(&path[start..i])?);
            start = i + 1;
        }
    }
    segments.push(decode_segment(&path[start..])?);
    Ok(segments)
}

fn decode_segment(segment: &str) -> Result<Cow<'_, str>, BadSegment> {
    if !segment.as_bytes().contains(&b'%') {
        return Ok(Cow::Borrowed(segment));
    }
    percent_decode_str(segment).decode_utf8().map_err(|_| BadSegment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_split_at_every_slash_and_decode_only_escapes() {
        // The plain definition, to compare the byte-wise one with.
        let plain = |path: &str| -> Result<Vec<String>, BadSegment> {
            path.split('/')
                .map(|s| percent_decode_str(s).decode_utf8().map(|c| c.into_owned()).map_err(|_| BadSegment))
                .collect()
        };
        for path in ["", "/", "a", "a//b", "a/b/", "/namespaces/default/pods/my-pod/q", "x/%2A/%2Fy", "caf%C3%A9/é/%"]
        {
            let ours: Vec<String> = decode_segments(path).unwrap().into_iter().map(Cow::into_owned).collect();
            assert_eq!(ours, plain(path).unwrap(), "{path:?}");
        }
        assert_eq!(decode_segments("a/%2Fb").unwrap(), ["a", "/b"]);
        assert!(matches!(decode_segments("a/b").unwrap()[1], Cow::Borrowed("b")));
        assert_eq!(decode_segments("a/%ff"), Err(BadSegment));
    }
}
