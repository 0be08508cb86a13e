//! The log, as `log.*` configures it: a level (or a `WHARF_LOG` filter),
//! `text` or `json` lines on stderr, and `log.fields` added to every line
//! (registry:2's default configuration sets `service: registry`, which log
//! pipelines filter on).
//!
//! The fields are added to each formatted line as it is written: the
//! formatter writes one whole line per write, so a JSON line gains them
//! after its opening brace and a text line before its newline.

use serde::Deserialize;
use std::io::{IsTerminal as _, Write};

/// `log`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `log.level`: `error`, `warn`, `info` (default) or `debug`; `WHARF_LOG`
    /// (a tracing filter) takes precedence when set.
    pub level: Option<LogLevel>,
    /// `log.formatter`: `text` (default) or `json`, one object per line.
    pub formatter: Option<LogFormatter>,
    /// `log.accesslog.disabled`: no line per request.
    pub accesslog: AccessLog,
    /// `log.fields`: added to every line (`service: registry`).
    pub fields: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormatter {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLog {
    pub disabled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

impl LogLevel {
    /// The `tracing` filter directive for this level.
    pub fn directive(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

/// Install the process's logger. Call once, first thing.
pub fn init(log: &Log) {
    let default = log.level.map_or("info", LogLevel::directive);
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG").unwrap_or_else(|_| default.into());
    let json = log.formatter == Some(LogFormatter::Json);
    let fields = Fields::new(log.fields.as_ref(), json);
    let logger = tracing_subscriber::fmt()
        .with_writer(move || Stderr {
            fields: fields.clone(),
        })
        .with_env_filter(filter);
    if json {
        logger.json().flatten_event(true).init();
    } else {
        // Colours only on a terminal, and not around added fields.
        let ansi = std::io::stderr().is_terminal() && log.fields.is_none();
        logger.with_ansi(ansi).init();
    }
}

/// What each line gains, already formatted for its format.
#[derive(Clone)]
enum Fields {
    None,
    /// `"service":"registry",` for after a JSON line's `{`.
    Json(std::sync::Arc<str>),
    /// ` service=registry` for before a text line's newline.
    Text(std::sync::Arc<str>),
}

impl Fields {
    fn new(fields: Option<&serde_json::Map<String, serde_json::Value>>, json: bool) -> Fields {
        let Some(fields) = fields.filter(|f| !f.is_empty()) else {
            return Fields::None;
        };
        if json {
            let object = serde_json::Value::Object(fields.clone()).to_string();
            // `{"a":1,"b":2}` → `"a":1,"b":2,`
            let inner = &object[1..object.len() - 1];
            Fields::Json(format!("{inner},").into())
        } else {
            let text: String = fields
                .iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!(" {k}={s}"),
                    other => format!(" {k}={other}"),
                })
                .collect();
            Fields::Text(text.into())
        }
    }
}

/// stderr, with the fields added to each line.
struct Stderr {
    fields: Fields,
}

impl Write for Stderr {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut err = std::io::stderr().lock();
        match &self.fields {
            Fields::None => err.write_all(line)?,
            Fields::Json(fields) => match line.split_first() {
                Some((b'{', rest)) => {
                    err.write_all(b"{")?;
                    err.write_all(fields.as_bytes())?;
                    err.write_all(rest)?;
                }
                _ => err.write_all(line)?,
            },
            Fields::Text(fields) => match line.strip_suffix(b"\n") {
                Some(text) => {
                    err.write_all(text)?;
                    err.write_all(fields.as_bytes())?;
                    err.write_all(b"\n")?;
                }
                None => err.write_all(line)?,
            },
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_formatted_for_each_format() {
        let fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"service":"registry","shard":3}"#).unwrap();
        let Fields::Json(json) = Fields::new(Some(&fields), true) else {
            panic!("json fields");
        };
        assert_eq!(&*json, r#""service":"registry","shard":3,"#);
        let Fields::Text(text) = Fields::new(Some(&fields), false) else {
            panic!("text fields");
        };
        assert_eq!(&*text, " service=registry shard=3");
        assert!(matches!(Fields::new(None, true), Fields::None));
    }
}
