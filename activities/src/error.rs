//! How an activity says whether its failure is worth retrying.

/// A failed activity attempt. `Permanent` failures are not retried by the workflow's
/// retry policies; `Transient` ones are, with backoff.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Worth retrying: a connection refused, a timeout, a busy server.
    #[error("{0:#}")]
    Transient(anyhow::Error),
    /// Retrying cannot help: the input or the world is in a state this step must not touch.
    /// `kind` is the stable error type shown in the audit feed (e.g. `NameTaken`).
    #[error("{message}")]
    Permanent { kind: &'static str, message: String },
}

impl StepError {
    pub fn permanent(kind: &'static str, message: impl Into<String>) -> Self {
        Self::Permanent {
            kind,
            message: message.into(),
        }
    }

    /// The error type recorded in the audit feed and used by retry policies.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Transient(_) => "Transient",
            Self::Permanent { kind, .. } => kind,
        }
    }
}

impl From<anyhow::Error> for StepError {
    fn from(e: anyhow::Error) -> Self {
        Self::Transient(e)
    }
}

impl From<sqlx::Error> for StepError {
    fn from(e: sqlx::Error) -> Self {
        Self::Transient(e.into())
    }
}

impl From<reqwest::Error> for StepError {
    fn from(e: reqwest::Error) -> Self {
        // reqwest errors may carry the URL; ours never carry credentials in URLs.
        Self::Transient(e.into())
    }
}

impl From<std::io::Error> for StepError {
    fn from(e: std::io::Error) -> Self {
        Self::Transient(e.into())
    }
}

pub type StepResult<T> = Result<T, StepError>;
