//! A blob read's range, resolved as the native host resolves it
//! (`wharf_spec::ranges`): what `read-blob` answers for each `Range`.

use wharf_spec::ranges::{RangeRequest, Resolved};

/// What a read of a blob of some size serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// `length` bytes from `offset`; `partial` when they come from the
    /// range asked for (206) rather than the whole blob (200).
    Bytes {
        offset: u64,
        length: u64,
        partial: bool,
    },
    /// The range cannot be satisfied: 416 with the size, no bytes.
    Unsatisfiable,
}

/// The bytes of a blob of `size` bytes that `range` asks for: the whole
/// blob without a range, or when the range is to be ignored (a suffix
/// range of an empty blob).
pub fn serve(range: Option<RangeRequest>, size: u64) -> Served {
    match range.and_then(|r| r.resolve(size)) {
        None => Served::Bytes {
            offset: 0,
            length: size,
            partial: false,
        },
        Some(Resolved::Satisfiable { first, last }) => Served::Bytes {
            offset: first,
            length: last - first + 1,
            partial: true,
        },
        Some(Resolved::Unsatisfiable) => Served::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_the_host() {
        let bytes = |offset, length, partial| Served::Bytes {
            offset,
            length,
            partial,
        };
        assert_eq!(serve(None, 10), bytes(0, 10, false));
        assert_eq!(serve(Some(RangeRequest::Span(2, 4)), 10), bytes(2, 3, true));
        assert_eq!(
            serve(Some(RangeRequest::Starting(7)), 10),
            bytes(7, 3, true)
        );
        assert_eq!(serve(Some(RangeRequest::Suffix(3)), 10), bytes(7, 3, true));
        assert_eq!(
            serve(Some(RangeRequest::Span(8, 99)), 10),
            bytes(8, 2, true)
        );
        assert_eq!(
            serve(Some(RangeRequest::Starting(10)), 10),
            Served::Unsatisfiable
        );
        assert_eq!(
            serve(Some(RangeRequest::Span(5, 3)), 10),
            Served::Unsatisfiable
        );
        // A suffix of an empty blob: the whole (empty) blob.
        assert_eq!(serve(Some(RangeRequest::Suffix(5)), 0), bytes(0, 0, false));
        assert_eq!(
            serve(Some(RangeRequest::Span(0, 0)), 0),
            Served::Unsatisfiable
        );
    }
}
