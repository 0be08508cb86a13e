//! Single RFC 9110 byte ranges (`a-b`, `a-`, `-n`), in two steps: the guest
//! parses the `Range` header into a [`RangeRequest`] without knowing the
//! blob, and the store resolves it against the blob's size with
//! [`RangeRequest::resolve`] in the same call that opens the blob.

/// A `Range: bytes=` header's one range, before it meets a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// `first-`.
    Starting(u64),
    /// `first-last`, inclusive (possibly `last < first`, which is invalid).
    Span(u64, u64),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

/// A range resolved against a blob of known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// Inclusive bounds, both within the blob.
    Satisfiable {
        first: u64,
        last: u64,
    },
    Unsatisfiable,
}

impl RangeRequest {
    /// `None` when the header is not a single well-formed byte range, i.e.
    /// when it is to be ignored and the whole blob served.
    pub fn parse(header: &str) -> Option<RangeRequest> {
        let spec = header.trim().strip_prefix("bytes=")?.trim();
        let (first, last) = spec.split_once('-')?;
        let number = |s: &str| -> Option<u64> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        Some(match (first.is_empty(), last.is_empty()) {
            (true, _) => RangeRequest::Suffix(number(last)?),
            (false, true) => RangeRequest::Starting(number(first)?),
            (false, false) => RangeRequest::Span(number(first)?, number(last)?),
        })
    }

    /// The bytes this range takes of a blob of `size` bytes. `None` when the
    /// range is to be ignored: a suffix range of an empty blob names no
    /// bytes at all, and RFC 9110 lets the whole (empty) blob be served.
    pub fn resolve(self, size: u64) -> Option<Resolved> {
        let (first, last) = match self {
            RangeRequest::Suffix(_) if size == 0 => return None,
            RangeRequest::Suffix(0) => return Some(Resolved::Unsatisfiable),
            RangeRequest::Suffix(n) => (size.saturating_sub(n), size - 1),
            RangeRequest::Starting(first) => (first, u64::MAX),
            // An invalid byte-range-spec: RFC 9110 (14.2) says 416.
            RangeRequest::Span(first, last) if last < first => {
                return Some(Resolved::Unsatisfiable);
            }
            RangeRequest::Span(first, last) => (first, last),
        };
        Some(if first >= size {
            Resolved::Unsatisfiable
        } else {
            Resolved::Satisfiable {
                first,
                last: last.min(size - 1),
            }
        })
    }
}

/// The bytes a read of a blob serves: `length` bytes from `offset`,
/// `partial` when they are the range asked for (206) rather than the whole
/// blob (200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Portion {
    pub offset: u64,
    pub length: u64,
    pub partial: bool,
}

/// What a read of a blob of `size` bytes serves for `range`: the whole blob
/// without one, or when it is to be ignored; `None` when it cannot be
/// satisfied (416 with the size, no bytes). Every store answers a blob read
/// with this.
pub fn portion(range: Option<RangeRequest>, size: u64) -> Option<Portion> {
    match range.and_then(|r| r.resolve(size)) {
        None => Some(Portion {
            offset: 0,
            length: size,
            partial: false,
        }),
        Some(Resolved::Satisfiable { first, last }) => Some(Portion {
            offset: first,
            length: last - first + 1,
            partial: true,
        }),
        Some(Resolved::Unsatisfiable) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(header: &str, size: u64) -> Option<Resolved> {
        RangeRequest::parse(header)?.resolve(size)
    }

    #[test]
    fn resolves_rfc9110_single_ranges() {
        use Resolved::*;
        assert_eq!(
            resolve("bytes=0-4", 10),
            Some(Satisfiable { first: 0, last: 4 })
        );
        assert_eq!(
            resolve("bytes=5-", 10),
            Some(Satisfiable { first: 5, last: 9 })
        );
        assert_eq!(
            resolve("bytes=-3", 10),
            Some(Satisfiable { first: 7, last: 9 })
        );
        assert_eq!(
            resolve("bytes=-30", 10),
            Some(Satisfiable { first: 0, last: 9 })
        );
        assert_eq!(
            resolve("bytes=8-100", 10),
            Some(Satisfiable { first: 8, last: 9 })
        );
        assert_eq!(resolve("bytes=10-", 10), Some(Unsatisfiable));
        assert_eq!(resolve("bytes=-0", 10), Some(Unsatisfiable));
        assert_eq!(resolve("bytes=0-0", 0), Some(Unsatisfiable));
        assert_eq!(resolve("bytes=5-3", 10), Some(Unsatisfiable));
    }

    #[test]
    fn ignores_malformed_and_multiple_ranges() {
        for header in [
            "",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(RangeRequest::parse(header), None, "{header}");
        }
        assert_eq!(resolve("bytes=-5", 0), None);
    }

    #[test]
    fn a_read_serves_the_whole_blob_or_the_range() {
        let bytes = |offset, length, partial| {
            Some(Portion {
                offset,
                length,
                partial,
            })
        };
        assert_eq!(portion(None, 10), bytes(0, 10, false));
        assert_eq!(
            portion(Some(RangeRequest::Span(2, 4)), 10),
            bytes(2, 3, true)
        );
        assert_eq!(
            portion(Some(RangeRequest::Starting(7)), 10),
            bytes(7, 3, true)
        );
        assert_eq!(
            portion(Some(RangeRequest::Suffix(3)), 10),
            bytes(7, 3, true)
        );
        assert_eq!(
            portion(Some(RangeRequest::Span(8, 99)), 10),
            bytes(8, 2, true)
        );
        assert_eq!(portion(Some(RangeRequest::Starting(10)), 10), None);
        assert_eq!(portion(Some(RangeRequest::Span(5, 3)), 10), None);
        // A suffix of an empty blob: the whole (empty) blob.
        assert_eq!(
            portion(Some(RangeRequest::Suffix(5)), 0),
            bytes(0, 0, false)
        );
        assert_eq!(portion(Some(RangeRequest::Span(0, 0)), 0), None);
    }
}
