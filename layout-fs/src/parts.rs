//! An upload session's bytes as committed parts, as the standalone
//! component writes them, and their folding into the one `data` file that
//! `wharf serve` appends to.
//!
//! Instances of the standalone component share nothing but the directory,
//! so a session cannot hold a file that requests append to in turn (two
//! at once would interleave, and a lock would outlive a crashed instance). Instead each request writes a
//! file of its own and commits it by hard-linking it to
//! `wharf-part-<offset>`, the offset its bytes start at, 20 digits so the
//! names sort by offset. A link fails when the name exists, so of two
//! requests appending at the same offset exactly one wins.
//!
//! The session's bytes are the chain of parts from offset 0, each starting
//! where the one before ends; [`chain`] finds it. A native host's session
//! keeps its bytes in `data`, which counts as the part at offset 0, so such
//! a session resumes in the standalone component; [`fold_into_data`]
//! turns a session of parts into one `wharf serve` resumes.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

/// The name of the part holding the bytes appended at `offset`.
pub fn part_name(offset: u64) -> String {
    format!("{PART_PREFIX}{offset:020}")
}

/// What a part's name starts with.
pub const PART_PREFIX: &str = "wharf-part-";

/// A native host session's data file: the bytes from offset 0.
pub const HOST_DATA: &str = "data";

/// What a request's own file starts with before it is committed as a part
/// (`wharf-writing-<random>`, in the session).
pub const WRITING_PREFIX: &str = "wharf-writing-";

/// The offset a session file's name says its bytes start at, if it is a
/// part (or the native host's `data`).
pub fn part_offset(name: &str) -> Option<u64> {
    if name == HOST_DATA {
        return Some(0);
    }
    let digits = name.strip_prefix(PART_PREFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A part found in a session's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

/// The parts that make up the session, in order: from offset 0, each the
/// one starting where the last ended. Empty parts add nothing and are
/// passed over; a part off the chain (none can be made by this design,
/// but a directory may hold anything) is ignored.
pub fn chain(mut found: Vec<Part>) -> Vec<Part> {
    found.retain(|p| p.size > 0);
    // By offset; at one offset, the native host's `data` first.
    found.sort_by(|a, b| {
        (a.offset, a.name != HOST_DATA, &a.name).cmp(&(b.offset, b.name != HOST_DATA, &b.name))
    });
    let mut chain: Vec<Part> = Vec::new();
    let mut end = 0u64;
    for part in found {
        if part.offset == end {
            end = match end.checked_add(part.size) {
                Some(e) => e,
                None => break,
            };
            chain.push(part);
        }
    }
    chain
}

/// Where the next byte appended to `chain` lands.
pub fn end(chain: &[Part]) -> u64 {
    chain.last().map_or(0, |p| p.offset + p.size)
}

/// The parts in the session directory `dir`, as its chain (empty if the
/// directory is gone).
pub fn session_parts(dir: &Path) -> io::Result<Vec<Part>> {
    let mut found = Vec::new();
    for name in crate::walk::sorted_entries(dir)? {
        let Some(offset) = part_offset(&name) else {
            continue;
        };
        let path = dir.join(&name);
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => found.push(Part {
                name,
                offset,
                size: m.len(),
            }),
            Ok(_) => {}
            // Taken by a finish meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(chain(found))
}

/// Make the session in `dir` one that `wharf serve` resumes: if it holds
/// parts, its chain (with any `data` first) is copied through `staging`
/// (a fresh name in the layout's `wharf-tmp/`), synced and renamed over
/// `data`; then the parts and any request's uncommitted file are removed.
/// False when there was nothing to fold. A crash at any point leaves a
/// session this folds again to the same bytes: once `data` holds the
/// chain, the parts add nothing to it and are only removed.
pub fn fold_into_data(dir: &Path, staging: &Path) -> io::Result<bool> {
    let loose: Vec<String> = crate::walk::sorted_entries(dir)?
        .into_iter()
        .filter(|name| {
            name.starts_with(WRITING_PREFIX) || (name != HOST_DATA && part_offset(name).is_some())
        })
        .collect();
    if loose.is_empty() {
        return Ok(false);
    }
    let parts = session_parts(dir)?;
    if parts.iter().any(|p| p.name != HOST_DATA) {
        if let Some(tmp) = staging.parent() {
            fs::create_dir_all(tmp)?;
        }
        let copied = (|| {
            let mut out = File::create(staging)?;
            for part in &parts {
                let path = dir.join(&part.name);
                let copied = io::copy(&mut File::open(&path)?.take(part.size), &mut out)?;
                if copied != part.size {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} is shorter than its {} bytes", path.display(), part.size),
                    ));
                }
            }
            out.sync_all()?;
            fs::rename(staging, dir.join(HOST_DATA))?;
            crate::durable::sync_dir(dir)
        })();
        if copied.is_err() {
            let _ = fs::remove_file(staging);
        }
        copied?;
    }
    for name in loose {
        match fs::remove_file(dir.join(&name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    crate::durable::sync_dir(dir)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str, size: u64) -> Part {
        Part {
            name: name.to_string(),
            offset: part_offset(name).unwrap(),
            size,
        }
    }

    #[test]
    fn names_sort_by_offset_and_parse_back() {
        assert_eq!(part_name(0), "wharf-part-00000000000000000000");
        assert_eq!(part_name(u64::MAX), "wharf-part-18446744073709551615");
        assert!(part_name(9) < part_name(10));
        for offset in [0, 1, 4096, u64::MAX] {
            assert_eq!(part_offset(&part_name(offset)), Some(offset));
        }
        assert_eq!(part_offset("data"), Some(0));
        for other in [
            "startedat",
            "wharf-algorithm",
            "wharf-writing-00ff",
            "wharf-part-1",
            "wharf-part-0000000000000000000x",
            "wharf-part-99999999999999999999",
        ] {
            assert_eq!(part_offset(other), None, "{other}");
        }
    }

    #[test]
    fn the_chain_runs_from_zero_part_after_part() {
        assert_eq!(end(&chain(vec![])), 0);
        let parts = vec![
            part(&part_name(10), 5),
            part(&part_name(0), 10),
            part(&part_name(15), 1),
        ];
        let c = chain(parts);
        assert_eq!(c.iter().map(|p| p.offset).collect::<Vec<_>>(), [0, 10, 15]);
        assert_eq!(end(&c), 16);
    }

    #[test]
    fn empty_and_stray_parts_are_passed_over() {
        let c = chain(vec![
            part("data", 0),
            part(&part_name(0), 4),
            part(&part_name(2), 9),
            part(&part_name(4), 0),
            part(&part_name(4), 3),
            part(&part_name(100), 3),
        ]);
        assert_eq!(c.iter().map(|p| p.offset).collect::<Vec<_>>(), [0, 4]);
        assert_eq!(end(&c), 7);
    }

    #[test]
    fn a_native_hosts_data_file_is_the_first_part() {
        let c = chain(vec![part(&part_name(3), 2), part("data", 3)]);
        assert_eq!(c[0].name, "data");
        assert_eq!(end(&c), 5);
    }

    fn session(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            fs::write(dir.path().join(name), bytes).unwrap();
        }
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        crate::walk::sorted_entries(dir).unwrap()
    }

    #[test]
    fn parts_fold_into_data_with_the_writing_files_gone() {
        let dir = session(&[
            ("wharf-algorithm", b"sha256"),
            (&part_name(0), b"hello "),
            (&part_name(6), b"world"),
            (&part_name(99), b"stray"),
            ("wharf-writing-0a1b", b"never committed"),
        ]);
        let staging = dir.path().join("tmp/staging");
        assert!(fold_into_data(dir.path(), &staging).unwrap());
        assert_eq!(fs::read(dir.path().join("data")).unwrap(), b"hello world");
        assert_eq!(names(dir.path()), ["data", "tmp", "wharf-algorithm"]);
        assert!(names(&dir.path().join("tmp")).is_empty());
        assert!(!fold_into_data(dir.path(), &staging).unwrap());
    }

    #[test]
    fn parts_after_a_hosts_data_extend_it() {
        let dir = session(&[("data", b"abc"), (&part_name(3), b"def")]);
        assert!(fold_into_data(dir.path(), &dir.path().join("staging")).unwrap());
        assert_eq!(fs::read(dir.path().join("data")).unwrap(), b"abcdef");
        assert_eq!(names(dir.path()), ["data"]);
    }

    #[test]
    fn a_fold_interrupted_after_its_rename_folds_again_to_the_same_bytes() {
        // `data` already holds the chain; the parts were not removed yet.
        let dir = session(&[
            ("data", b"hello world"),
            (&part_name(0), b"hello "),
            (&part_name(6), b"world"),
        ]);
        assert!(fold_into_data(dir.path(), &dir.path().join("staging")).unwrap());
        assert_eq!(fs::read(dir.path().join("data")).unwrap(), b"hello world");
        assert_eq!(names(dir.path()), ["data"]);
    }

    #[test]
    fn a_hosts_own_session_is_left_alone() {
        let dir = session(&[("data", b"abc"), ("startedat", b"1")]);
        assert!(!fold_into_data(dir.path(), &dir.path().join("staging")).unwrap());
        assert_eq!(names(dir.path()), ["data", "startedat"]);
    }
}
