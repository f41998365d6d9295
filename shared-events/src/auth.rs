//! Who may trade as whom: the `--auth-file` table of bearer tokens. Each line is
//! `TOKEN USER` or `sha256:HEX USER` (the SHA-256 of the token, so the file need not
//! hold the secret itself), optionally followed by the word `operator`: an operator
//! token also moves money (`/deposit`, `/withdraw`, for any user) and reads every
//! user's balances; a trader's token never does. `#` starts a comment. Tokens are kept only as hashes in
//! memory and never appear in errors or logs. Both services read the same file.

use crate::domain::is_valid_user;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// Shortest accepted token: short tokens are guessable.
pub const TOKEN_LEN_MIN: usize = 16;
/// Longest accepted token.
pub const TOKEN_LEN_MAX: usize = 256;

/// Token hashes and the user each one may act as.
#[derive(Debug, Clone, Default)]
pub struct AuthTable {
    /// Each token's user, and whether the token is an operator's.
    users: HashMap<[u8; 32], (String, bool)>,
}

fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The `sha256:HEX` form of a token, for writing an auth file without the secret.
pub fn hash_token(token: &str) -> String {
    let hex: String = sha256(token).iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl AuthTable {
    /// Reads an auth file; the error names the file and line, never the token.
    pub fn load(path: &Path) -> Result<AuthTable, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        AuthTable::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<AuthTable, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = format!("line {}", i + 1);
            let mut parts = line.split_whitespace();
            let (Some(secret), Some(user), role, None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(format!(
                    "{at}: expected `TOKEN USER` or `sha256:HEX USER`, optionally then `operator`"
                ));
            };
            let operator = match role {
                None => false,
                Some("operator") => true,
                Some(_) => {
                    return Err(format!(
                        "{at}: after the user only the word `operator` may follow"
                    ));
                }
            };
            if !is_valid_user(user) {
                return Err(format!(
                    "{at}: the user must be 1..=64 characters of [A-Za-z0-9_.-]"
                ));
            }
            let hash = match secret.strip_prefix("sha256:") {
                Some(hex) => {
                    parse_hex32(hex).ok_or_else(|| format!("{at}: sha256: needs 64 hex digits"))?
                }
                None if (TOKEN_LEN_MIN..=TOKEN_LEN_MAX).contains(&secret.len()) => sha256(secret),
                None => {
                    return Err(format!(
                        "{at}: tokens must be {TOKEN_LEN_MIN}..={TOKEN_LEN_MAX} characters"
                    ));
                }
            };
            if users.insert(hash, (user.to_owned(), operator)).is_some() {
                return Err(format!("{at}: the same token appears twice"));
            }
        }
        Ok(AuthTable { users })
    }

    /// The user a token may act as, if it is known.
    pub fn user_of(&self, token: &str) -> Option<&str> {
        self.users
            .get(&sha256(token))
            .map(|(user, _)| user.as_str())
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// What an `Authorization` header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access<'a> {
    /// No credentials: 401.
    Missing,
    /// A token that is not in the table, or a malformed header: 401.
    Unknown,
    /// A known token acting as this user.
    User(&'a str),
    /// A known operator token (acting as this user when it trades).
    Operator(&'a str),
}

impl<'a> Access<'a> {
    /// The user a known token acts as.
    pub fn user(&self) -> Option<&'a str> {
        match self {
            Access::User(user) | Access::Operator(user) => Some(user),
            Access::Missing | Access::Unknown => None,
        }
    }
}

impl AuthTable {
    /// Reads `Authorization: Bearer TOKEN` (the header's raw value).
    pub fn check<'a>(&'a self, authorization: Option<&[u8]>) -> Access<'a> {
        let Some(raw) = authorization else {
            return Access::Missing;
        };
        let Some(token) = std::str::from_utf8(raw)
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return Access::Unknown;
        };
        match self.users.get(&sha256(token.trim())) {
            None => Access::Unknown,
            Some((user, false)) => Access::User(user),
            Some((user, true)) => Access::Operator(user),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_hashed_tokens() {
        let hashed = hash_token("bob-secret-token-0002");
        let table = AuthTable::parse(&format!(
            "# comment\nalice-secret-token-0001 alice\n\n{hashed} bob  # bob's\n"
        ))
        .unwrap();
        assert_eq!(table.len(), 2);
        assert_eq!(
            table.check(Some(b"Bearer alice-secret-token-0001")),
            Access::User("alice")
        );
        assert_eq!(
            table.check(Some(b"Bearer bob-secret-token-0002")),
            Access::User("bob")
        );
        assert_eq!(
            table.check(Some(b"Bearer nope-nope-nope-nope")),
            Access::Unknown
        );
        assert_eq!(table.check(Some(b"Basic YWxpY2U6eA==")), Access::Unknown);
        assert_eq!(table.check(None), Access::Missing);
    }

    #[test]
    fn operator_tokens_are_declared_per_line() {
        let table = AuthTable::parse(
            "alice-secret-token-0001 alice
bank-secret-token-00001 bank operator
",
        )
        .unwrap();
        assert_eq!(
            table.check(Some(b"Bearer bank-secret-token-00001")),
            Access::Operator("bank")
        );
        assert_eq!(
            table.check(Some(b"Bearer alice-secret-token-0001")).user(),
            Some("alice")
        );
        let err = AuthTable::parse("bank-secret-token-00001 bank admin").unwrap_err();
        assert!(err.contains("only the word `operator`"), "{err}");
    }

    #[test]
    fn bad_files_name_the_line_not_the_token() {
        for (text, says) in [
            ("short alice", "line 1: tokens must be"),
            ("a-long-enough-token-here", "line 1: expected"),
            ("a-long-enough-token-here bad%user", "line 1: the user"),
            ("sha256:abcd alice", "line 1: sha256"),
            (
                "\na-long-enough-token-here a\na-long-enough-token-here b",
                "line 3: the same token",
            ),
        ] {
            let err = AuthTable::parse(text).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
            assert!(
                !err.contains("a-long-enough-token-here"),
                "the token leaked: {err}"
            );
        }
    }
}
