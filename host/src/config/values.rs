//! Values as registry:2 writes them, for every section: Go durations
//! (`500ms`, `1h30m`), listen addresses (`:5000`), and header lists
//! (`http.headers`, an endpoint's `headers`).

use super::ConfigError;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// The values of one `http.headers` entry: a list, or one value; numbers
/// and booleans as written (`Access-Control-Max-Age: [600]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawHeaderValues")]
pub struct HeaderValues(Vec<String>);

impl HeaderValues {
    pub fn values(&self) -> &[String] {
        &self.0
    }
}

/// `headers` (`http.headers`, or an endpoint's, named `key` in errors) as
/// HTTP headers: one entry per header, whatever the case it was written in
/// (of two spellings, the one sorting last wins), each value checked.
pub fn header_map(
    headers: &std::collections::BTreeMap<String, HeaderValues>,
    key: &str,
) -> Result<hyper::header::HeaderMap, ConfigError> {
    let bad = |key: String, value: &str, reason: &str| ConfigError::BadValue {
        key,
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let mut map = hyper::header::HeaderMap::new();
    for (name, values) in headers {
        let header = hyper::header::HeaderName::try_from(name.as_str())
            .map_err(|_| bad(key.to_string(), name, "not a valid HTTP header name"))?;
        map.remove(&header);
        for value in values.values() {
            let value = hyper::header::HeaderValue::try_from(value.as_str())
                .map_err(|_| bad(format!("{key}.{name}"), value, "not a valid header value"))?;
            map.append(header.clone(), value);
        }
    }
    Ok(map)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawHeaderValues {
    Many(Vec<Scalar>),
    One(Scalar),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Bool(bool),
    Integer(i64),
    Number(f64),
}

impl Scalar {
    fn text(self) -> String {
        match self {
            Scalar::Text(s) => s,
            Scalar::Bool(b) => b.to_string(),
            Scalar::Integer(i) => i.to_string(),
            Scalar::Number(n) => n.to_string(),
        }
    }
}

impl From<RawHeaderValues> for HeaderValues {
    fn from(raw: RawHeaderValues) -> HeaderValues {
        HeaderValues(match raw {
            RawHeaderValues::Many(v) => v.into_iter().map(Scalar::text).collect(),
            RawHeaderValues::One(v) => vec![v.text()],
        })
    }
}

pub(crate) fn de_required_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Duration, D::Error> {
    de_duration(d).map(|d| d.unwrap_or_default())
}

/// A positive duration as Go (and so registry:2) writes one: numbers, each
/// with a unit, `ns`, `us` (or `µs`), `ms`, `s`, `m` or `h`: `500ms`,
/// `30s`, `1.5h`, `1h30m`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        if number.is_empty() || number.starts_with('.') && number.len() == 1 {
            return None;
        }
        let n: f64 = number.parse().ok()?;
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * seconds;
        rest = after;
    }
    let duration = Duration::try_from_secs_f64(total).ok()?;
    (!duration.is_zero()).then_some(duration)
}

pub(crate) fn de_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "duration {s:?} is not a positive duration with units: 500ms, 30s, 2m, 1h30m"
        ))
    })
}

/// `host:port` or `:port` (all interfaces), as registry:2 accepts.
pub(crate) fn parse_addr(s: &str) -> Option<SocketAddr> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse().ok()
}

pub(crate) fn de_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    parse_addr(&s).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "addr {s:?} is not an address like 0.0.0.0:5000, 127.0.0.1:5000 or :5000"
        ))
    })
}
