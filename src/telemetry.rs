//! Process-wide diagnostic logging. Logs go to stderr so that stdout stays reserved for the
//! audit trail (see `crate::audit`), which log shippers can then route separately.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};

/// Used when `RUST_LOG` is unset or empty: client libraries are chatty at `info`.
pub const DEFAULT_FILTER: &str =
    "info,kube=warn,hyper=warn,tower=warn,vaultrs=off,rustify=off,reqwest=warn";

/// Shape of the diagnostic log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, event fields at the top level.
    #[default]
    Json,
    /// Human-readable lines for local runs.
    Text,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("RUST_LOG is not a valid filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadySet(#[from] TryInitError),
}

/// Installs the global subscriber. Meant to be called once at start-up; a second call
/// returns [`TelemetryError::AlreadySet`] and leaves the first subscriber in place.
pub fn init(format: LogFormat) -> Result<(), TelemetryError> {
    install(
        format,
        filter_from(std::env::var("RUST_LOG").ok().as_deref())?,
    )
}

fn install(format: LogFormat, filter: EnvFilter) -> Result<(), TelemetryError> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .finish()
            .try_init()?,
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .finish()
            .try_init()?,
    }
    Ok(())
}

/// A typo in `RUST_LOG` is reported rather than silently replaced by the default, so an
/// operator asking for `debug` does not quietly get `info`.
fn filter_from(directives: Option<&str>) -> Result<EnvFilter, TelemetryError> {
    match directives.map(str::trim) {
        None | Some("") => Ok(EnvFilter::try_new(DEFAULT_FILTER)?),
        Some(directives) => Ok(EnvFilter::try_new(directives)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_blank_rust_log_uses_the_default_filter() {
        for unset in [None, Some(""), Some("   ")] {
            let filter = filter_from(unset).expect("default filter parses");
            assert_eq!(
                filter.to_string(),
                EnvFilter::new(DEFAULT_FILTER).to_string()
            );
        }
    }

    #[test]
    fn invalid_rust_log_is_reported() {
        assert!(matches!(
            filter_from(Some("keyward=loud")),
            Err(TelemetryError::Filter(_))
        ));
    }

    #[test]
    fn installing_a_second_subscriber_returns_an_error_instead_of_panicking() {
        // The first call may already fail if another test installed a subscriber; the second
        // one must fail either way.
        let _ = install(LogFormat::Json, EnvFilter::new(DEFAULT_FILTER));
        assert!(matches!(
            install(LogFormat::Text, EnvFilter::new(DEFAULT_FILTER)),
            Err(TelemetryError::AlreadySet(_))
        ));
    }
}
