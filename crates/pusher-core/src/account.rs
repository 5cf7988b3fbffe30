//! Kazoo account database names (spec §1.7).
//!
//! A device document lives in its account's database, named after the 32-hex account
//! id split as `account/ab/cd/<rest>`. On the CouchDB HTTP path the `/` are encoded as
//! `%2F`; [`account_db`] returns the raw name and [`encode_db_name`] the path form.

/// Why a value is not an account id or account database name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// Neither a 32-hex account id nor an `account/ab/cd/rest` database name.
    #[error("invalid account id or database name {0:?}")]
    Invalid(String),
}

/// Raw (unencoded) database name of an account, e.g.
/// `3c1e6a2f9b7d4e0a8c5b1d2e3f405162` → `account/3c/1e/6a2f9b7d4e0a8c5b1d2e3f405162`.
///
/// Accepts an account id (32 hex digits, any case; the result is lowercase) or an
/// already formatted name, raw (`account/ab/cd/rest`) or encoded (`account%2Fab%2Fcd%2Frest`,
/// `%2f` too).
pub fn account_db(account_id: &str) -> Result<String, AccountError> {
    let lower = account_id.to_ascii_lowercase();
    let id = if is_account_id(&lower) {
        Some(lower)
    } else if let Some(rest) = lower.strip_prefix("account/") {
        joined_id(rest.split('/'))
    } else if let Some(rest) = lower.strip_prefix("account%2f") {
        joined_id(rest.split("%2f"))
    } else {
        None
    }
    .ok_or_else(|| AccountError::Invalid(account_id.chars().take(80).collect()))?;
    Ok(format!("account/{}/{}/{}", &id[..2], &id[2..4], &id[4..]))
}

/// The database name as it appears on a CouchDB URL path: `/` encoded as `%2F`.
pub fn encode_db_name(db: &str) -> String {
    db.replace('/', "%2F")
}

fn is_account_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Rebuilds the account id from the `ab`, `cd`, `rest` parts of a database name.
fn joined_id<'a>(mut parts: impl Iterator<Item = &'a str>) -> Option<String> {
    let (a, b, c) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || a.len() != 2 || b.len() != 2 {
        return None;
    }
    let id = format!("{a}{b}{c}");
    is_account_id(&id).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &str = "account/3c/1e/6a2f9b7d4e0a8c5b1d2e3f405162";

    #[test]
    fn from_account_id() {
        assert_eq!(account_db("3c1e6a2f9b7d4e0a8c5b1d2e3f405162").unwrap(), RAW);
        assert_eq!(account_db("3C1E6A2F9B7D4E0A8C5B1D2E3F405162").unwrap(), RAW);
    }

    #[test]
    fn from_formatted_names() {
        assert_eq!(account_db(RAW).unwrap(), RAW);
        assert_eq!(
            account_db("account%2F3c%2F1e%2F6a2f9b7d4e0a8c5b1d2e3f405162").unwrap(),
            RAW
        );
        assert_eq!(
            account_db("account%2f3c%2f1e%2f6a2f9b7d4e0a8c5b1d2e3f405162").unwrap(),
            RAW
        );
        assert_eq!(
            account_db("ACCOUNT/3C/1E/6A2F9B7D4E0A8C5B1D2E3F405162").unwrap(),
            RAW
        );
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "d3v1ce",
            "3c1e6a2f9b7d4e0a8c5b1d2e3f40516",   // 31
            "3c1e6a2f9b7d4e0a8c5b1d2e3f4051623", // 33
            "3c1e6a2f9b7d4e0a8c5b1d2e3f40516g",
            "account/3c/1e/6a2f9b7d4e0a8c5b1d2e3f40516",
            "account/3c1/e/6a2f9b7d4e0a8c5b1d2e3f405162",
            "account/3c/1e/6a2f9b7d4e0a8c5b1d2e3f405162/x",
            "account/3c/1e/6a2f9b7d4e0a8c5b1d2e3f405162-202401",
            "account%2F3c/1e%2F6a2f9b7d4e0a8c5b1d2e3f405162",
            "system_config",
            "3c1e6a2f-9b7d-4e0a-8c5b-1d2e3f405162",
            "é3c1e6a2f9b7d4e0a8c5b1d2e3f40516",
        ] {
            assert_eq!(
                account_db(bad),
                Err(AccountError::Invalid(bad.to_string())),
                "{bad}"
            );
        }
        let err = account_db("nope").unwrap_err();
        assert!(err.to_string().contains("\"nope\""), "{err}");
    }

    #[test]
    fn error_value_is_bounded() {
        let long = "x".repeat(10_000);
        let AccountError::Invalid(v) = account_db(&long).unwrap_err();
        assert_eq!(v.len(), 80);
    }

    #[test]
    fn encoded_form() {
        assert_eq!(
            encode_db_name(RAW),
            "account%2F3c%2F1e%2F6a2f9b7d4e0a8c5b1d2e3f405162"
        );
    }
}
