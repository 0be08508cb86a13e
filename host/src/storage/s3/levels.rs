//! Tag and referrer pages on S3, listed from where the page starts
//! (`start-after`) rather than whole, so a page costs the listing of what
//! it holds and a check of each name it holds, however many tags or
//! referrers the level has.
//!
//! Referrers are `<alg>/<hex>/link` under their subject's level: S3 lists
//! keys in byte order, which is the digests' order (`/` and `:` sort alike
//! against every character an algorithm's name may hold).
//!
//! Tags are "directories" `<tag>/…`, listed with a delimiter. Their key
//! order is the tags' order but for one case: a tag that another extends
//! with `-` or `.` sorts after it as a key (`v1.0/` after `v1.0-rc/`, as
//! `-` and `.` sort before `/`) and before it as a tag. So a tag missing
//! from a chunk listed in key order can still belong in it only when it is
//! such a prefix of a listed tag and its key lies past the listing's end;
//! each of those is looked up, and the chunk then sorted.

use super::{Inner, key};
use crate::storage::Result;
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::list::{PaginatedListOptions, PaginatedListResult, PaginatedListStore as _};
use std::collections::BTreeSet;
use wharf_spec::Digest;

/// How many names are checked at once.
pub const AT_ONCE: usize = 16;

/// The most keys one S3 listing returns.
pub const MAX_KEYS: usize = 1000;

/// Up to `n` tags of `repository` after `after`, in order (fewer only at
/// the end), each with whether it names a manifest that is there.
pub async fn tags(
    s3: &Inner,
    repository: &str,
    after: Option<&str>,
    n: usize,
) -> Result<Vec<(String, bool)>> {
    let prefix = format!("{}/", key(s3.layout.tags(repository)));
    let mut offset = after.map(|after| format!("{prefix}{after}"));
    let mut listed = BTreeSet::new();
    let mut last = None;
    let mut ended = false;
    while listed.len() < n {
        let options = PaginatedListOptions {
            delimiter: Some("/".into()),
            ..listing(offset.clone(), (n - listed.len()).min(MAX_KEYS))
        };
        let chunk = list(s3, &prefix, options).await?;
        for dir in &chunk.result.common_prefixes {
            let Some(tag) = dir.filename() else { continue };
            last = Some(tag.to_string());
            if after.is_none_or(|after| tag > after) {
                listed.insert(tag.to_string());
            }
        }
        // The next request starts past the last "directory" (`0` follows
        // `/`) or object listed, whichever is later: a continuation token
        // can land inside a "directory" and list it again.
        let past_dir = last.as_ref().map(|tag| format!("{prefix}{tag}0"));
        let past_object = chunk.result.objects.last().map(|o| o.location.to_string());
        match (chunk.page_token, past_dir.max(past_object)) {
            (Some(_), Some(next)) if offset.as_ref().is_none_or(|o| next > *o) => {
                offset = Some(next)
            }
            _ => {
                ended = true;
                break;
            }
        }
    }
    if !ended && let Some(last) = last {
        let unlisted: BTreeSet<String> = listed
            .iter()
            .flat_map(|tag| extended_prefixes(tag))
            .filter(|p| after.is_none_or(|after| p.as_str() > after))
            .filter(|p| !listed.contains(p) && format!("{p}/") > format!("{last}/"))
            .collect();
        let found: Vec<Option<String>> = futures::stream::iter(unlisted)
            .map(|tag| async move {
                let current = key(s3.layout.tag_current(repository, &tag));
                Ok::<_, crate::storage::StoreError>(s3.head(&current).await?.map(|_| tag))
            })
            .buffered(AT_ONCE)
            .try_collect()
            .await?;
        listed.extend(found.into_iter().flatten());
    }
    let tags: Vec<String> = listed.into_iter().take(n).collect();
    Ok(futures::stream::iter(tags)
        .map(|tag| async move {
            let resolves = s3.tag_resolves(repository, &tag).await;
            (tag, resolves)
        })
        .buffered(AT_ONCE)
        .collect()
        .await)
}

/// The prefixes of `tag` that it extends with `-` or `.`: the tags that
/// sort before it but whose keys sort after its own.
fn extended_prefixes(tag: &str) -> impl Iterator<Item = String> + '_ {
    tag.char_indices()
        .filter(|&(i, c)| i > 0 && (c == '-' || c == '.'))
        .map(|(i, _)| tag[..i].to_string())
}

/// Up to `n` referrers of `subject` in `repository` after `after`, in
/// order (fewer only at the end), each with whether its link names it.
pub async fn referrers(
    s3: &Inner,
    repository: &str,
    subject: &Digest,
    after: Option<&str>,
    n: usize,
) -> Result<Vec<(String, bool)>> {
    let prefix = format!("{}/", key(s3.layout.referrers(repository, subject)));
    // `sha256:…` as its key begins, `sha256/…`; what sorts after the
    // offset is a superset of what sorts after `after`.
    let offset = after.map(|after| format!("{prefix}{}", after.replacen(':', "/", 1)));
    let mut listed = Vec::new();
    let mut page_token = None;
    while listed.len() < n {
        let options = PaginatedListOptions {
            page_token: page_token.take(),
            ..listing(offset.clone(), (n - listed.len()).min(MAX_KEYS))
        };
        let chunk = list(s3, &prefix, options).await?;
        listed.extend(
            chunk
                .result
                .objects
                .iter()
                .filter_map(|o| referrer_of(o.location.as_ref().strip_prefix(&prefix)?))
                .filter(|d| after.is_none_or(|after| d.to_string().as_str() > after)),
        );
        match chunk.page_token {
            Some(token) => page_token = Some(token),
            None => break,
        }
    }
    listed.sort_by_cached_key(Digest::to_string);
    listed.truncate(n);
    futures::stream::iter(listed)
        .map(|digest| async move {
            let link = key(s3.layout.referrer_link(repository, subject, &digest));
            let linked = s3.read_link(&link).await?.as_ref() == Some(&digest);
            Ok((digest.to_string(), linked))
        })
        .buffered(AT_ONCE)
        .try_collect()
        .await
}

/// The referrer a key under its subject's level stands for:
/// `<alg>/<hex>/link`.
fn referrer_of(rest: &str) -> Option<Digest> {
    let (digest, file) = rest.rsplit_once('/')?;
    let (algorithm, hex) = digest.split_once('/')?;
    (file == "link")
        .then(|| Digest::parse(&format!("{algorithm}:{hex}")).ok())
        .flatten()
}

/// A listing of up to `max_keys` keys after `offset`.
pub fn listing(offset: Option<String>, max_keys: usize) -> PaginatedListOptions {
    PaginatedListOptions {
        offset,
        max_keys: Some(max_keys),
        ..Default::default()
    }
}

/// One listing request under `prefix`.
pub async fn list(
    s3: &Inner,
    prefix: &str,
    options: PaginatedListOptions,
) -> Result<PaginatedListResult> {
    s3.store
        .list_paginated(Some(prefix), options)
        .await
        .map_err(|e| s3.failed("listing objects", e))
}

#[cfg(test)]
mod tests {
    use super::extended_prefixes;

    #[test]
    fn a_tag_extends_the_prefixes_before_its_dashes_and_dots() {
        let prefixes: Vec<String> = extended_prefixes("v1.2-rc.1").collect();
        assert_eq!(prefixes, ["v1", "v1.2", "v1.2-rc"]);
        assert_eq!(extended_prefixes("latest").count(), 0);
        // A tag cannot begin with either, and the empty prefix is no tag.
        assert_eq!(extended_prefixes("-x").count(), 0);
    }
}
