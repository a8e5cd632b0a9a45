//! [`PostgresUrl`]: a connection URL whose password never shows in messages or logs.

/// A `postgres://` connection URL. Its `Debug` form hides the password, so that a logged
/// configuration never shows it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// Wraps a URL such as `postgres://user:secret@host:5432/db`.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresUrl(url.into())
    }

    /// The URL, with its password.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`, for messages.
    pub fn redacted(&self) -> String {
        let url = &self.0;
        let Some(scheme_end) = url.find("://").map(|at| at + 3) else {
            return "***".to_owned();
        };
        let rest = url.get(scheme_end..).unwrap_or_default();
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let authority = rest.get(..authority_end).unwrap_or_default();
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => format!(
                "{}{}:***{}",
                url.get(..scheme_end).unwrap_or_default(),
                authority.get(..colon).unwrap_or_default(),
                rest.get(at..).unwrap_or_default()
            ),
            _ if url.contains("password=") => {
                "postgres://*** (the URL holds a password)".to_owned()
            }
            _ => url.clone(),
        }
    }

    /// Whether a `--db` argument names a PostgreSQL database rather than a file.
    pub fn is_postgres(location: &str) -> bool {
        location.starts_with("postgres://") || location.starts_with("postgresql://")
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn passwords_never_show() {
        let url = PostgresUrl::new("postgres://app:s3cret@db.example:5432/game");
        assert_eq!(url.redacted(), "postgres://app:***@db.example:5432/game");
        assert!(!format!("{url:?}").contains("s3cret"));
        let config = Config::postgres("postgresql://app:s3cret@db/game");
        assert!(!format!("{config:?}").contains("s3cret"));
        assert!(!config.location().contains("s3cret"));
        assert_eq!(
            PostgresUrl::new("postgres://app@db/game").redacted(),
            "postgres://app@db/game"
        );
        assert!(
            !PostgresUrl::new("postgres:///game?password=s3cret")
                .redacted()
                .contains("s3cret")
        );
    }
}
