//! Reading settings: [`Env`] (the process environment, or a map in tests)
//! and [`ConfigError`], one bad setting named by its variable. A leaf: the
//! gateway's `config`, the worker `tuning` and the emulator all read through
//! it, and it knows none of them.

use std::{collections::HashMap, fmt, str::FromStr, time::Duration};

use secrecy::SecretString;
use url::Url;

use crate::settings::Var;

/// One bad setting: which variable, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: &'static str,
    /// What is wrong, in a few words.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration error: {} {}", self.var, self.problem)
    }
}

impl std::error::Error for ConfigError {}

fn missing(var: &'static str) -> ConfigError {
    ConfigError {
        var,
        problem: "is required but not set".into(),
    }
}

type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A source of settings: the process environment, or a map in tests.
pub struct Env {
    lookup: Lookup,
}

impl Env {
    /// Reads the real process environment.
    pub fn process() -> Self {
        Self {
            lookup: Box::new(|k| std::env::var(k).ok()),
        }
    }

    /// Reads from a fixed map (tests, `dev`).
    pub fn from_map(map: HashMap<String, String>) -> Self {
        Self {
            lookup: Box::new(move |k| map.get(k).cloned()),
        }
    }

    /// The same source with `values` (flags given on the command line) over it.
    pub fn overlay(self, values: HashMap<&'static str, String>) -> Self {
        let under = self.lookup;
        Self {
            lookup: Box::new(move |k| values.get(k).cloned().or_else(|| under(k))),
        }
    }

    /// The raw value; empty strings count as unset.
    pub fn get(&self, var: &str) -> Option<String> {
        (self.lookup)(var).filter(|v| !v.trim().is_empty())
    }

    /// A value that must be present.
    pub fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.get(var).ok_or_else(|| missing(var))
    }

    /// `var`'s value, or its default (from [`crate::settings`]) when unset.
    pub fn value(&self, var: &Var) -> Option<String> {
        self.get(var.name).or_else(|| var.default.map(String::from))
    }

    /// `var` parsed with `FromStr` over its default; required when it has none.
    pub fn parse<T>(&self, var: &Var) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let raw = self.value(var).ok_or_else(|| missing(var.name))?;
        raw.trim().parse().map_err(|e| ConfigError {
            var: var.name,
            problem: format!("is malformed ({e}): got {raw:?}"),
        })
    }

    /// `var` as a humantime duration (`150s`, `2m`) over its default.
    pub fn duration(&self, var: &Var) -> Result<Duration, ConfigError> {
        let raw = self.value(var).ok_or_else(|| missing(var.name))?;
        humantime::parse_duration(raw.trim()).map_err(|e| ConfigError {
            var: var.name,
            problem: format!("is not a duration like `150s` or `2m` ({e}): got {raw:?}"),
        })
    }

    /// A value parsed with `FromStr`, or the default when unset.
    pub fn parse_or<T>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => raw.trim().parse().map_err(|e| ConfigError {
                var,
                problem: format!("is malformed ({e}): got {raw:?}"),
            }),
        }
    }

    /// A humantime duration (`150s`, `2m`), or the default when unset.
    pub fn duration_or(
        &self,
        var: &'static str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => humantime::parse_duration(raw.trim()).map_err(|e| ConfigError {
                var,
                problem: format!("is not a duration like `150s` or `2m` ({e}): got {raw:?}"),
            }),
        }
    }

    /// A URL with an http(s) scheme.
    pub fn url(&self, var: &'static str) -> Result<Url, ConfigError> {
        let raw = self.required(var)?;
        let url = Url::parse(raw.trim()).map_err(|e| ConfigError {
            var,
            problem: format!("is not a valid URL ({e})"),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError {
                var,
                problem: "must be an http:// or https:// URL".into(),
            });
        }
        Ok(url)
    }

    /// A secret value; never echoed back in errors.
    pub fn secret(&self, var: &'static str) -> Option<SecretString> {
        self.get(var).map(SecretString::from)
    }
}
