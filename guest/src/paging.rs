//! `n`/`last` pagination shared by the tag list and the catalog, with the
//! RFC 8288 `Link: <…>; rel="next"` header registry:2 clients follow.
//!
//! Without `n` a listing returns up to [`MAX_ENTRIES`] entries; a larger
//! `n` is capped there. Whenever entries remain, the response carries a
//! `Link` to the next page, so a capped answer is still complete to a
//! client that follows links.

use crate::capabilities::Page;
use crate::errors::{Code, Error};
use crate::query::Query;

/// Most entries one response carries.
pub const MAX_ENTRIES: u32 = 10_000;
/// Most entries asked of the store in one call.
pub const STORE_PAGE: u32 = 1_000;

/// The `n` and `last` parameters of a listing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paging {
    /// How many entries to return, already capped.
    pub n: u32,
    pub last: Option<String>,
}

impl Paging {
    /// `n` must be a non-negative decimal integer; anything else is 400
    /// `UNSUPPORTED` (the spec has no pagination code; registry:2 uses its
    /// own `PAGINATION_NUMBER_INVALID`).
    pub fn from_query(query: &Query) -> Result<Paging, Error> {
        let n = match query.get("n") {
            None => MAX_ENTRIES,
            Some(raw) => raw
                .parse::<u64>()
                .map(|n| u32::try_from(n.min(u64::from(MAX_ENTRIES))).unwrap_or(MAX_ENTRIES))
                .map_err(|_| {
                    Error::new(Code::Unsupported)
                        .status(400)
                        .message("pagination parameter n must be a non-negative integer")
                })?,
        };
        let last = query
            .get("last")
            .filter(|l| !l.is_empty())
            .map(str::to_string);
        Ok(Paging { n, last })
    }

    /// Gather up to `n` entries after `last` from `fetch(after, limit)`,
    /// which answers `None` when the listed thing does not exist. Returns
    /// the entries and whether more follow.
    pub fn collect<F>(&self, mut fetch: F) -> Result<Option<(Vec<String>, bool)>, Error>
    where
        F: FnMut(Option<&str>, u32) -> Result<Option<Page>, Error>,
    {
        let mut entries: Vec<String> = Vec::new();
        let mut after = self.last.clone();
        loop {
            let want = self
                .n
                .saturating_sub(u32::try_from(entries.len()).unwrap_or(u32::MAX));
            let Some(page) = fetch(after.as_deref(), want.min(STORE_PAGE))? else {
                return Ok(None);
            };
            let got_any = !page.entries.is_empty();
            entries.extend(page.entries.into_iter().take(want as usize));
            let full = entries.len() >= self.n as usize;
            if !page.more || full || !got_any {
                return Ok(Some((entries, page.more && self.n > 0)));
            }
            after = entries.last().cloned();
        }
    }

    /// The `Link` header value pointing at the page after `last_returned`.
    pub fn next_link(&self, path: &str, last_returned: &str) -> String {
        format!("<{path}?last={last_returned}&n={}>; rel=\"next\"", self.n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(all: &[&str]) -> impl FnMut(Option<&str>, u32) -> Result<Option<Page>, Error> {
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        move |after, limit| {
            let rest: Vec<String> = all
                .iter()
                .filter(|e| after.is_none_or(|a| e.as_str() > a))
                .cloned()
                .collect();
            let take = (limit as usize).min(2); // a store with a small page of its own
            Ok(Some(Page {
                more: rest.len() > take,
                entries: rest.into_iter().take(take).collect(),
            }))
        }
    }

    #[test]
    fn collects_across_short_store_pages() {
        let p = Paging { n: 5, last: None };
        let (entries, more) = p
            .collect(store(&["a", "b", "c", "d", "e", "f"]))
            .unwrap()
            .unwrap();
        assert_eq!(entries, ["a", "b", "c", "d", "e"]);
        assert!(more);
        let p = Paging {
            n: 5,
            last: Some("c".into()),
        };
        let (entries, more) = p
            .collect(store(&["a", "b", "c", "d", "e", "f"]))
            .unwrap()
            .unwrap();
        assert_eq!(entries, ["d", "e", "f"]);
        assert!(!more);
    }

    #[test]
    fn n_zero_lists_nothing_and_reports_no_more() {
        let p = Paging { n: 0, last: None };
        assert_eq!(p.collect(store(&["a"])).unwrap(), Some((vec![], false)));
    }

    #[test]
    fn n_must_be_a_number() {
        for bad in ["n=x", "n=-1", "n=", "n=1.5"] {
            assert!(
                Paging::from_query(&Query::parse(Some(bad))).is_err(),
                "{bad}"
            );
        }
        let huge = Paging::from_query(&Query::parse(Some("n=99999999999999999"))).unwrap();
        assert_eq!(huge.n, MAX_ENTRIES);
    }
}
