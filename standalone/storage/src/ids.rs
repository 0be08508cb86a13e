//! Upload session ids and staging names.
//!
//! A session id is a version 4 UUID in its hyphenated lowercase form, as
//! the native host makes them: it is a directory name under `_uploads/`,
//! and the check [`is_session_id`] keeps an id from naming anything else.

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// A version 4 (random) UUID made of `random`, hyphenated.
pub fn uuid_v4(mut random: [u8; 16]) -> String {
    random[6] = (random[6] & 0x0f) | 0x40;
    random[8] = (random[8] & 0x3f) | 0x80;
    let h = hex(&random);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A fresh random UUID.
pub fn new_uuid() -> String {
    uuid_v4(crate::random::bytes16())
}

/// Whether `id` is a UUID in canonical form (any version): 8-4-4-4-12
/// lowercase hex digits. The host accepts exactly these.
pub fn is_session_id(id: &str) -> bool {
    id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_version_4_uuids_the_check_accepts() {
        let id = uuid_v4([0xff; 16]);
        assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let id = uuid_v4([0; 16]);
        assert_eq!(id, "00000000-0000-4000-8000-000000000000");
        assert!(is_session_id(&id));
        let fresh = new_uuid();
        assert!(is_session_id(&fresh));
        assert_ne!(fresh, new_uuid());
    }

    #[test]
    fn refuses_anything_but_a_canonical_uuid() {
        for id in [
            "",
            "..",
            "FFFFFFFF-FFFF-4FFF-BFFF-FFFFFFFFFFFF",
            "ffffffffffff4fffbfffffffffffffff",
            "ffffffff-ffff-4fff-bfff-fffffffffff/",
            "ffffffff-ffff-4fff-bfff-ffffffffffff0",
            "{ffffffff-ffff-4fff-bfff-ffffffffffff}",
        ] {
            assert!(!is_session_id(id), "{id}");
        }
    }
}
