//! The process's limit on open files.
//!
//! Every connection is a descriptor, and so is every blob kept mapped
//! between downloads (`storage/mapped.rs`). Service managers commonly start
//! a process with a soft limit of 1024 and a far higher hard limit; the
//! soft limit is only a default, which a server may raise as far as the
//! hard limit allows (the Go runtime does so for Distribution).

use std::io;

/// Raise the soft limit on open files to the hard limit. Returns the soft
/// limit before and after.
pub fn raise_to_hard_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads one rlimit from the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, limit.rlim_cur))
}

#[cfg(test)]
mod tests {
    fn limit() -> libc::rlimit {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into the struct we own.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        limit
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        // Start below the hard limit (half of it leaves other tests in this
        // process all the descriptors they need).
        let mut lowered = limit();
        lowered.rlim_cur = lowered.rlim_max / 2;
        // SAFETY: setrlimit reads one rlimit from the struct we own.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        let (before, after) = super::raise_to_hard_limit().unwrap();
        assert_eq!(before, lowered.rlim_max / 2);
        assert_eq!(after, lowered.rlim_max);
        assert_eq!(limit().rlim_cur, lowered.rlim_max);
    }
}
