//! Configuration: a TOML file merged with prefixed environment variables,
//! deserialised into a raw struct that each service then validates before it
//! binds anything.
//!
//! Environment keys use `__` for nesting: with prefix `MAILSTORE_`,
//! `MAILSTORE_DATABASE__URL` sets `database.url`.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    Missing(String),
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Check(String),
}

/// Loads `T` from its defaults, then the TOML file (if given), then
/// environment variables starting with `env_prefix`.
pub fn load<T>(file: Option<&Path>, env_prefix: &str) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default,
{
    let mut fig = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::Missing(path.display().to_string()));
        }
        fig = fig.merge(Toml::file(path));
    }
    // <PREFIX>CONFIG names the file (the binaries' --config); it is not a key.
    fig = fig.merge(Env::prefixed(env_prefix).split("__").ignore(&["config"]));
    fig.extract().map_err(|e| ConfigError::Invalid(Box::new(e)))
}

/// An optional listen address: empty means the listener is off.
pub fn listen_addr(name: &str, s: &str) -> Result<Option<std::net::SocketAddr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| format!("{name}: not a socket address: {s:?}"))
}

/// The service secret from a file (a mounted Kubernetes Secret) or the
/// config value; `None` when neither is set.
pub fn read_secret(value: &str, file: &str) -> Result<Option<String>, String> {
    if !file.is_empty() {
        return std::fs::read_to_string(file)
            .map(|s| Some(s.trim().to_string()))
            .map_err(|e| format!("service_secret_file {file}: {e}"));
    }
    Ok((!value.is_empty()).then(|| value.to_string()))
}

/// A PEM certificate/key pair, both or neither.
pub fn tls_pair(
    cert: &str,
    key: &str,
) -> Result<Option<(std::path::PathBuf, std::path::PathBuf)>, String> {
    match (cert.is_empty(), key.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => Ok(Some((cert.into(), key.into()))),
        _ => Err("tls_cert and tls_key go together".into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Sample {
        listen: String,
        limits: Limits,
    }
    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Limits {
        max: u32,
    }

    #[test]
    fn file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "listen = \"0.0.0.0:1\"\n[limits]\nmax = 7\n").unwrap();
        // A prefix no real environment has, so the test never depends on it.
        let c: Sample = load(Some(&path), "SERVICE_KIT_TEST_UNUSED_").unwrap();
        assert_eq!(c.listen, "0.0.0.0:1");
        assert_eq!(c.limits.max, 7);
    }

    #[test]
    fn missing_file_and_bad_types_are_errors() {
        assert!(matches!(
            load::<Sample>(Some(Path::new("/nonexistent.toml")), "X_"),
            Err(ConfigError::Missing(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[limits]\nmax = \"many\"\n").unwrap();
        assert!(matches!(
            load::<Sample>(Some(&path), "SERVICE_KIT_TEST_UNUSED_"),
            Err(ConfigError::Invalid(_))
        ));
    }
}
