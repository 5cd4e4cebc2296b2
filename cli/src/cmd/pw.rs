//! `postwerk pw`: make or test a Dovecot password hash, like `doveadm pw`.
//! All hashing is `postwerk_core::password`; this file only gets the
//! password from the user and prints the result.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use postwerk_core::password::{self, DEFAULT_SCHEME, Scheme};

/// The longest password line read from standard input.
const MAX_PASSWORD_LEN: usize = 4096;

/// Make a password hash for the `password` column, or test one (like
/// `doveadm pw`).
///
/// Without `-p`, the password is read from standard input when it is not a
/// terminal (or with `--password-stdin`): one line, without its line ending.
/// On a terminal it is asked for twice, without echo.
#[derive(clap::Args, Debug)]
pub struct PwArgs {
    /// Password scheme for the new hash (case-insensitive), e.g. SHA512-CRYPT
    /// (the default), BLF-CRYPT, ARGON2ID. With -t: the scheme of a hash
    /// without a {SCHEME} prefix.
    #[arg(short = 's', long = "scheme")]
    scheme: Option<String>,
    /// The password on the command line. Discouraged: every user on the
    /// machine can see it in `ps`, and it lands in your shell history. Use
    /// the prompt or --password-stdin instead.
    #[arg(short = 'p', long = "password", conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Test this stored hash (e.g. '{SHA512-CRYPT}$6$...') against the
    /// password instead of making a new one; prints "HASH (verified)" and
    /// exits 0 when it matches, exits 1 when it does not.
    #[arg(short = 't', long = "test", value_name = "HASH")]
    test: Option<String>,
    /// Read the password from the first line of standard input, even if it
    /// is a terminal.
    #[arg(long = "password-stdin")]
    password_stdin: bool,
}

/// Runs `postwerk pw`.
pub fn run(args: PwArgs) -> anyhow::Result<()> {
    let scheme = match &args.scheme {
        Some(name) => name.parse::<Scheme>()?,
        None => DEFAULT_SCHEME,
    };
    let is_testing = args.test.is_some();
    let password = match args.password {
        Some(password) => password.into_bytes(),
        None if args.password_stdin || !std::io::stdin().is_terminal() => {
            read_password_line(std::io::stdin().lock())?
        }
        None => prompt_password(is_testing)?,
    };
    match args.test {
        Some(stored) => {
            // As doveadm: an unknown scheme or broken hash is an error, not a
            // mismatch.
            if password::verify(&password, &stored, scheme)? {
                println!("{stored} (verified)");
                Ok(())
            } else {
                bail!("password mismatch: the password does not match the hash")
            }
        }
        None => {
            println!("{}", password::hash(&password, scheme)?);
            Ok(())
        }
    }
}

/// One line of `input` without its `\n` or `\r\n`: any bytes, at most
/// [`MAX_PASSWORD_LEN`].
pub(crate) fn read_password_line(input: impl BufRead) -> anyhow::Result<Vec<u8>> {
    let mut line = Vec::new();
    // One byte more than allowed, to tell "too long" from "just fits".
    let limit = u64::try_from(MAX_PASSWORD_LEN + 2).unwrap_or(u64::MAX);
    input
        .take(limit)
        .read_until(b'\n', &mut line)
        .context("reading the password from standard input")?;
    if line.is_empty() {
        bail!("no password on standard input");
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.len() > MAX_PASSWORD_LEN {
        bail!("password on standard input is longer than {MAX_PASSWORD_LEN} bytes");
    }
    Ok(line)
}

/// Asks on the terminal without echo: once to test a hash, twice (and the
/// two must agree) for a new one.
pub(crate) fn prompt_password(is_testing: bool) -> anyhow::Result<Vec<u8>> {
    if is_testing {
        let password = rpassword::prompt_password("Enter password to verify: ")
            .context("reading the password")?;
        return Ok(password.into_bytes());
    }
    let first =
        rpassword::prompt_password("Enter new password: ").context("reading the password")?;
    let second =
        rpassword::prompt_password("Retype new password: ").context("reading the password")?;
    confirm(first, second).map(String::into_bytes)
}

/// The password if both entries agree.
fn confirm(first: String, second: String) -> anyhow::Result<String> {
    if first != second {
        bail!("passwords don't match");
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_are_stripped() {
        assert_eq!(read_password_line(&b"secret\n"[..]).unwrap(), b"secret");
        assert_eq!(read_password_line(&b"secret\r\n"[..]).unwrap(), b"secret");
        assert_eq!(read_password_line(&b"secret"[..]).unwrap(), b"secret");
        assert_eq!(read_password_line(&b"a\nb\n"[..]).unwrap(), b"a");
        assert_eq!(read_password_line(&b" spaced \n"[..]).unwrap(), b" spaced ");
        assert_eq!(read_password_line(&b"\xff\xfe\n"[..]).unwrap(), b"\xff\xfe");
        assert_eq!(read_password_line(&b"\n"[..]).unwrap(), b"");
    }

    #[test]
    fn empty_input_is_an_error() {
        assert!(read_password_line(&b""[..]).is_err());
    }

    #[test]
    fn overlong_line_is_an_error() {
        let exact = vec![b'x'; MAX_PASSWORD_LEN];
        let mut line = exact.clone();
        line.extend_from_slice(b"\r\n");
        assert_eq!(read_password_line(&line[..]).unwrap(), exact);
        let long = vec![b'x'; MAX_PASSWORD_LEN + 1];
        assert!(read_password_line(&long[..]).is_err());
        assert!(read_password_line(&vec![b'x'; 1 << 20][..]).is_err());
    }

    #[test]
    fn differing_entries_are_refused() {
        assert!(confirm("a".into(), "b".into()).is_err());
        assert_eq!(confirm("a".into(), "a".into()).unwrap(), "a");
    }
}
