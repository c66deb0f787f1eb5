//! One configuration struct per program, read from an optional TOML file and then overridden by
//! `BRAINBOX_*` environment variables, validated once at start.
//!
//! Environment keys map to nested fields with a double underscore: `BRAINBOX_METRICS__LISTEN`
//! sets `metrics.listen`. Values are parsed as TOML scalars or arrays when they parse, else taken
//! as strings, so `BRAINBOX_SENSOR__RING_BUFFER_PAGES=64` is a number and
//! `BRAINBOX_LOG__LEVEL=debug` a string.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// A configuration problem, always naming the key (dotted path) and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("configuration file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    /// A key has the wrong type, an unknown name, or a value that fails validation.
    #[error("configuration key `{key}` (from {origin}): {reason}")]
    Key {
        key: String,
        origin: String,
        reason: String,
    },
}

impl ConfigError {
    /// A validation failure for `key`.
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Key {
            key: key.into(),
            origin: "validation".into(),
            reason: reason.into(),
        }
    }
}

/// Semantic checks that serde cannot express (ranges, cross-field rules).
pub trait Validate {
    /// Returns the first problem found, naming its key.
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Loads `T` from `file` (if any) plus the process environment with the `BRAINBOX_` prefix.
pub fn load<T: DeserializeOwned + Validate>(file: Option<&Path>) -> Result<T, ConfigError> {
    load_from(file, std::env::vars())
}

/// Like [`load`], with the environment given explicitly (for tests).
pub fn load_from<T, I>(file: Option<&Path>, env: I) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
    I: IntoIterator<Item = (String, String)>,
{
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            text.parse::<Table>().map_err(|e| ConfigError::Syntax {
                path: path.to_owned(),
                message: e.to_string().trim().to_owned(),
            })?
        }
        None => Table::new(),
    };
    let mut env_keys = Vec::new();
    let mut env: Vec<_> = env.into_iter().collect();
    env.sort();
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("BRAINBOX_") else {
            continue;
        };
        // BRAINBOX_CONFIG names the file itself; BRAINBOX_LAB_* belong to the lab scripts.
        if rest == "CONFIG" || rest.starts_with("LAB_") || rest.is_empty() {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::Key {
                key: name.clone(),
                origin: "environment".into(),
                reason: "empty path segment (use `__` between nested keys)".into(),
            });
        }
        env_keys.push(path.join("."));
        insert(&mut table, &path, parse_env_value(&raw));
    }
    let value = Value::Table(table);
    let config: T = serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        let origin = if env_keys.iter().any(|k| key.starts_with(k.as_str())) {
            "environment".to_string()
        } else {
            file.map_or_else(|| "defaults".to_string(), |p| p.display().to_string())
        };
        ConfigError::Key {
            key,
            origin,
            reason: e.into_inner().to_string(),
        }
    })?;
    config.validate()?;
    Ok(config)
}

fn parse_env_value(raw: &str) -> Value {
    // Only scalars and arrays are taken as TOML; anything else stays a string.
    match format!("v = {raw}").parse::<Table>() {
        Ok(mut t) => match t.remove("v") {
            Some(
                v @ (Value::Integer(_) | Value::Float(_) | Value::Boolean(_) | Value::Array(_)),
            ) => v,
            _ => Value::String(raw.to_owned()),
        },
        Err(_) => Value::String(raw.to_owned()),
    }
}

fn insert(table: &mut Table, path: &[String], value: Value) {
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut cur = table;
    for p in parents {
        let entry = cur
            .entry(p.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        cur = entry.as_table_mut().expect("just made a table");
    }
    cur.insert(last.clone(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        listen: String,
        pages: u32,
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Cfg {
        name: String,
        inner: Inner,
    }

    impl Validate for Cfg {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.inner.pages > 1024 {
                return Err(ConfigError::invalid("inner.pages", "at most 1024"));
            }
            Ok(())
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn env_overrides_file_and_nests() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "name = \"a\"\n[inner]\npages = 4\n").unwrap();
        let c: Cfg = load_from(
            Some(&f),
            env(&[
                ("BRAINBOX_INNER__PAGES", "8"),
                ("BRAINBOX_NAME", "b"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.name, "b");
        assert_eq!(c.inner.pages, 8);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load_from::<Cfg, _>(None, env(&[("BRAINBOX_INNER__NOPE", "1")])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("inner.nope") || msg.contains("nope"), "{msg}");
        assert!(msg.contains("environment"), "{msg}");
    }

    #[test]
    fn wrong_type_names_key() {
        let err = load_from::<Cfg, _>(None, env(&[("BRAINBOX_INNER__PAGES", "many")])).unwrap_err();
        assert!(err.to_string().contains("inner.pages"), "{err}");
    }

    #[test]
    fn validation_names_key() {
        let err = load_from::<Cfg, _>(None, env(&[("BRAINBOX_INNER__PAGES", "5000")])).unwrap_err();
        assert!(err.to_string().contains("inner.pages"), "{err}");
    }

    #[test]
    fn bad_toml_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "name = \n").unwrap();
        let err = load_from::<Cfg, _>(Some(&f), env(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    }
}
