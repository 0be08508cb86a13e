//! `wharf htpasswd USER`: prints an htpasswd line with a bcrypt hash of a
//! password read from a prompt (twice) or standard input, as
//! `htpasswd -Bbn` does. The file it goes into is read by
//! [`crate::access::htpasswd`].

use crate::access::htpasswd;
use anyhow::Context as _;
use std::io::Read as _;

/// Reads the password and prints `USER:HASH` with bcrypt at `cost`.
pub fn print_line(user: &str, password_stdin: bool, cost: u32) -> anyhow::Result<()> {
    let password = if password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the password from standard input")?;
        text.lines().next().unwrap_or_default().to_string()
    } else {
        let first = rpassword::prompt_password(format!("Password for {user}: "))
            .context("reading the password (no terminal? use --password-stdin)")?;
        let again = rpassword::prompt_password("Again: ").context("reading the password")?;
        anyhow::ensure!(first == again, "the passwords differ; nothing written");
        first
    };
    anyhow::ensure!(!password.is_empty(), "empty password; nothing written");
    println!("{}", htpasswd::entry(user, &password, cost)?);
    Ok(())
}
