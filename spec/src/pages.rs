//! Pages of sorted listings (tags, repositories, referrers), cut the same
//! way by every storage of Wharf: up to `limit` names sorting after
//! `after`, and `more` when a kept name follows the page.

/// One page of a sorted listing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub entries: Vec<String>,
    pub more: bool,
}

/// Up to `limit` names of `sorted` after `after`.
pub fn page(sorted: Vec<String>, after: Option<&str>, limit: u32) -> Page {
    page_kept(sorted, after, limit, |_| true)
}

/// The same, of the names `keep` accepts. `keep` is asked only as far as
/// the page reaches (one kept name past it, to tell whether there are
/// more), so it may cost a look at storage.
pub fn page_kept(
    sorted: Vec<String>,
    after: Option<&str>,
    limit: u32,
    mut keep: impl FnMut(&str) -> bool,
) -> Page {
    let mut page = Page::default();
    for name in sorted
        .into_iter()
        .filter(|n| after.is_none_or(|after| n.as_str() > after))
    {
        if !keep(&name) {
            continue;
        }
        if page.entries.len() >= limit as usize {
            page.more = true;
            break;
        }
        page.entries.push(name);
    }
    page
}

/// The same, read a chunk at a time from a sorted source: `next(after, n)`
/// gives up to `n` names sorting after `after`, in order, fewer only at the
/// end. Reads as far as the page reaches, so a page costs what it holds
/// (and the names `keep` turns down), not what the source holds.
pub fn page_read(
    mut next: impl FnMut(Option<&str>, usize) -> Vec<String>,
    after: Option<&str>,
    limit: u32,
    mut keep: impl FnMut(&str) -> bool,
) -> Page {
    let chunk = (limit as usize).saturating_add(1);
    let mut page = Page::default();
    let mut cursor = after.map(str::to_string);
    loop {
        let names = next(cursor.as_deref(), chunk);
        let end = names.len() < chunk;
        for name in names {
            if !keep(&name) {
                cursor = Some(name);
                continue;
            }
            if page.entries.len() >= limit as usize {
                page.more = true;
                return page;
            }
            cursor = Some(name.clone());
            page.entries.push(name);
        }
        if end {
            return page;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pages_after_a_name_and_tells_of_more() {
        let all = names(&["a", "b", "c", "d"]);
        assert_eq!(
            page(all.clone(), None, 2),
            Page {
                entries: names(&["a", "b"]),
                more: true
            }
        );
        assert_eq!(
            page(all.clone(), Some("b"), 2),
            Page {
                entries: names(&["c", "d"]),
                more: false
            }
        );
        assert_eq!(
            page(all.clone(), Some("bb"), 10).entries,
            names(&["c", "d"])
        );
        assert_eq!(
            page(all, None, 0),
            Page {
                entries: vec![],
                more: true
            }
        );
    }

    #[test]
    fn skipped_names_neither_fill_the_page_nor_make_more() {
        let all = names(&["a", "b", "c", "d", "e"]);
        let odd = |n: &str| n != "b" && n != "d";
        let mut asked = vec![];
        let p = page_kept(all.clone(), None, 2, |n| {
            asked.push(n.to_string());
            odd(n)
        });
        assert_eq!(p.entries, names(&["a", "c"]));
        assert!(p.more);
        assert_eq!(asked, names(&["a", "b", "c", "d", "e"]));
        let p = page_kept(all, Some("c"), 2, odd);
        assert_eq!(
            p,
            Page {
                entries: names(&["e"]),
                more: false
            }
        );
    }

    #[test]
    fn pages_read_in_chunks_are_the_pages_of_the_whole() {
        let all = names(&["a", "b", "c", "d", "e", "f", "g"]);
        let reads = std::cell::RefCell::new(vec![]);
        let next = |after: Option<&str>, n: usize| {
            reads.borrow_mut().push((after.map(str::to_string), n));
            all.iter()
                .filter(|s| after.is_none_or(|a| s.as_str() > a))
                .take(n)
                .cloned()
                .collect()
        };
        for after in [None, Some("a"), Some("bb"), Some("g")] {
            for limit in 0..9 {
                for skip in [&[][..], &["b", "c", "d"], &["a", "g"]] {
                    let keep = |n: &str| !skip.contains(&n);
                    assert_eq!(
                        page_read(next, after, limit, keep),
                        page_kept(all.clone(), after, limit, keep),
                        "after {after:?}, limit {limit}, skipping {skip:?}"
                    );
                }
            }
        }
        // A full page of kept names takes one read of limit + 1.
        reads.borrow_mut().clear();
        page_read(next, None, 2, |_| true);
        assert_eq!(*reads.borrow(), [(None, 3)]);
    }
}
