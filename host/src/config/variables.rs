//! `REGISTRY_*` variables, read as registry:2 reads them: each names a key
//! path in upper case with `_` between the parts (`REGISTRY_HTTP_TLS_KEY`
//! is `http.tls.key`), and its value replaces that key's value in the
//! configuration file's tree before the tree is read.
//!
//! Both the file and the variables are checked against one description of
//! the keys, [`ROOT`], so that they accept and refuse exactly the same keys:
//! a key in the file that [`ROOT`] does not list is refused like an unknown
//! variable. A key name may itself hold `_` (Wharf's own keys, such as
//! `limits.storage_bytes`): a variable's parts are matched against the key
//! names the description lists, longest first.

use super::ConfigError;
use serde_yaml_ng::{Mapping, Value};

/// What a key holds, and so how a variable's text becomes its value.
pub enum Shape {
    /// Text taken as written: paths, names, durations, addresses.
    Text,
    /// `true` or `false` (`yes`/`no`, `1`/`0` too, as registry:2 reads them).
    Bool,
    /// A YAML value: a number, a list or a map written inline.
    Yaml,
    /// A list of text; a variable's value is one item or a YAML list
    /// (`[/a.pem, /b.pem]`).
    TextList,
    /// A section with these keys.
    Section(&'static [(&'static str, Shape)]),
    /// A section where one key names the driver in use (`storage`,
    /// `auth`): the variable of the section itself, set to a driver's
    /// name, selects that driver (`REGISTRY_AUTH=htpasswd`).
    Drivers {
        drivers: &'static [(&'static str, Shape)],
        others: &'static [(&'static str, Shape)],
    },
    /// A map whose keys are the user's (header names): a variable's rest,
    /// in lower case, is the key.
    Map(&'static Shape),
    /// A list; a variable names an element by its index (`_0_`).
    List(&'static Shape),
    /// Anything: registry:2 sections Wharf accepts and does not read.
    Any,
}

use Shape::*;

const TLS: &[(&str, Shape)] = &[
    ("certificate", Text),
    ("key", Text),
    ("clientcas", TextList),
];

const DEBUG: &[(&str, Shape)] = &[
    ("addr", Text),
    ("prometheus", Section(&[("enabled", Bool), ("path", Text)])),
];

const HTTP: &[(&str, Shape)] = &[
    ("addr", Text),
    ("host", Text),
    ("relativeurls", Bool),
    ("secret", Text),
    ("draintimeout", Text),
    ("headers", Map(&TextList)),
    ("tls", Section(TLS)),
    ("debug", Section(DEBUG)),
];

const LOG: &[(&str, Shape)] = &[
    ("level", Text),
    ("formatter", Text),
    ("fields", Any),
    ("accesslog", Section(&[("disabled", Bool)])),
];

const FILESYSTEM: &[(&str, Shape)] = &[("rootdirectory", Text)];
const DELETE: &[(&str, Shape)] = &[("enabled", Bool)];
/// registry:2's S3 driver keys.
const S3: &[(&str, Shape)] = &[
    ("region", Text),
    ("bucket", Text),
    ("regionendpoint", Text),
    ("accesskey", Text),
    ("secretkey", Text),
    ("sessiontoken", Text),
    ("forcepathstyle", Bool),
    ("rootdirectory", Text),
    ("secure", Bool),
    ("skipverify", Bool),
    ("chunksize", Yaml),
    ("v4auth", Bool),
    ("encrypt", Bool),
    ("keyid", Text),
    ("storageclass", Text),
    ("objectacl", Text),
    ("multipartcopychunksize", Yaml),
    ("multipartcopymaxconcurrency", Yaml),
    ("multipartcopythresholdsize", Yaml),
    ("loglevel", Text),
    ("useragent", Text),
    ("accelerate", Bool),
    ("usedualstack", Bool),
];

const PURGING: &[(&str, Shape)] = &[
    ("enabled", Bool),
    ("age", Text),
    ("interval", Text),
    ("dryrun", Bool),
];

const GC: &[(&str, Shape)] = &[
    ("enabled", Bool),
    ("interval", Text),
    ("grace", Text),
    ("dryrun", Bool),
];

const MAINTENANCE: &[(&str, Shape)] = &[
    ("uploadpurging", Section(PURGING)),
    ("gc", Section(GC)),
    ("readonly", Section(&[("enabled", Bool)])),
];

const STORAGE: Shape = Drivers {
    drivers: &[("filesystem", Section(FILESYSTEM)), ("s3", Section(S3))],
    others: &[
        ("delete", Section(DELETE)),
        ("maintenance", Section(MAINTENANCE)),
        ("cache", Any),
        ("redirect", Section(&[("disable", Bool)])),
    ],
};

const AUTH: Shape = Drivers {
    drivers: &[
        ("htpasswd", Section(&[("realm", Text), ("path", Text)])),
        (
            "token",
            Section(&[
                ("realm", Text),
                ("service", Text),
                ("issuer", Text),
                ("rootcertbundle", Text),
                ("jwks", Text),
                ("autoredirect", Bool),
                ("autoredirectpath", Text),
                ("signingalgorithms", TextList),
            ]),
        ),
    ],
    others: &[("access", Yaml)],
};

const LIMITS: &[(&str, Shape)] = &[
    ("storage_bytes", Yaml),
    ("memory_bytes", Yaml),
    ("request_timeout", Text),
    ("concurrent_uploads", Yaml),
    ("concurrent_requests", Yaml),
    ("client_requests", Yaml),
];

const CAPACITY: &[(&str, Shape)] = &[
    ("instances", Yaml),
    ("queue_timeout", Text),
    ("guest_memory_bytes", Yaml),
    ("idle_timeout", Text),
    ("http2_streams", Yaml),
];

const TENANT: &[(&str, Shape)] = &[
    ("name", Text),
    ("hosts", TextList),
    (
        "storage",
        Section(&[
            ("filesystem", Section(FILESYSTEM)),
            ("s3", Section(S3)),
            ("delete", Section(DELETE)),
        ]),
    ),
    ("auth", AUTH),
    ("limits", Section(LIMITS)),
];

const ENDPOINT: &[(&str, Shape)] = &[
    ("name", Text),
    ("url", Text),
    ("disabled", Bool),
    ("headers", Map(&TextList)),
    ("timeout", Text),
    ("threshold", Yaml),
    ("backoff", Text),
    ("ignoredmediatypes", TextList),
    (
        "ignore",
        Section(&[("mediatypes", TextList), ("actions", TextList)]),
    ),
];

const NOTIFICATIONS: &[(&str, Shape)] = &[
    ("events", Section(&[("includereferences", Bool)])),
    ("endpoints", List(&Section(ENDPOINT))),
];

/// Every key Wharf reads, in the file and as a variable.
pub const ROOT: &[(&str, Shape)] = &[
    ("version", Text),
    ("log", Section(LOG)),
    ("storage", STORAGE),
    ("http", Section(HTTP)),
    ("auth", AUTH),
    (
        "health",
        Section(&[(
            "storagedriver",
            Section(&[("enabled", Bool), ("interval", Text), ("threshold", Yaml)]),
        )]),
    ),
    ("limits", Section(LIMITS)),
    ("capacity", Section(CAPACITY)),
    ("tenants", List(&Section(TENANT))),
    ("notifications", Section(NOTIFICATIONS)),
];

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// A key path as serde_path_to_error prints it: `tenants[0].limits`.
pub fn display(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

impl Shape {
    fn children(&self) -> Option<Vec<&'static (&'static str, Shape)>> {
        match self {
            Section(keys) => Some(keys.iter().collect()),
            Drivers { drivers, others } => Some(drivers.iter().chain(others.iter()).collect()),
            _ => None,
        }
    }
}

/// The key path and shape a variable names (without `REGISTRY_`), or
/// `None` if it names no key.
pub fn resolve(name: &str) -> Option<(Vec<Step>, &'static Shape)> {
    static TOP: Shape = Section(ROOT);
    let mut shape: &'static Shape = &TOP;
    let mut rest = name;
    let mut path = Vec::new();
    while !rest.is_empty() {
        match shape {
            Section(_) | Drivers { .. } => {
                let (key, child) = shape
                    .children()?
                    .into_iter()
                    .filter(|(key, _)| {
                        let upper = key.to_ascii_uppercase();
                        rest == upper
                            || rest
                                .strip_prefix(upper.as_str())
                                .is_some_and(|r| r.starts_with('_'))
                    })
                    .max_by_key(|(key, _)| key.len())?;
                rest = rest[key.len()..].trim_start_matches('_');
                path.push(Step::Key(key.to_string()));
                shape = child;
            }
            List(item) => {
                let (index, after) = rest.split_once('_').unwrap_or((rest, ""));
                path.push(Step::Index(index.parse().ok()?));
                rest = after;
                shape = item;
            }
            Map(value) => {
                path.push(Step::Key(rest.to_ascii_lowercase()));
                rest = "";
                shape = value;
            }
            Any => {
                for part in rest.split('_') {
                    path.push(Step::Key(part.to_ascii_lowercase()));
                }
                rest = "";
            }
            Text | Bool | Yaml | TextList => return None,
        }
    }
    Some((path, shape))
}

/// Every variable Wharf reads, for the error that names an unknown one.
pub fn names() -> Vec<String> {
    fn walk(prefix: &str, shape: &Shape, out: &mut Vec<String>) {
        match shape {
            Section(_) | Drivers { .. } => {
                if matches!(shape, Drivers { .. }) {
                    out.push(prefix.to_string());
                }
                for (key, child) in shape.children().unwrap_or_default() {
                    walk(
                        &format!("{prefix}_{}", key.to_ascii_uppercase()),
                        child,
                        out,
                    );
                }
            }
            List(item) => walk(&format!("{prefix}_<N>"), item, out),
            Map(_) => out.push(format!("{prefix}_<NAME>")),
            Any | Text | Bool | Yaml | TextList => out.push(prefix.to_string()),
        }
    }
    let mut out = Vec::new();
    for (key, shape) in ROOT {
        walk(
            &format!("REGISTRY_{}", key.to_ascii_uppercase()),
            shape,
            &mut out,
        );
    }
    out
}

/// The key path variable `name` (`REGISTRY_` included) names.
pub fn path_of(name: &str) -> Result<Vec<Step>, ConfigError> {
    name.strip_prefix("REGISTRY_")
        .and_then(resolve)
        .map(|(path, _)| path)
        .ok_or_else(|| ConfigError::UnknownVariable {
            name: name.to_string(),
            supported: names().join(", "),
        })
}

/// Set the key `name` (a variable, `REGISTRY_` included) names in `tree`
/// to `value`.
pub fn apply(tree: &mut Value, name: &str, value: &str) -> Result<Vec<Step>, ConfigError> {
    let unknown = || ConfigError::UnknownVariable {
        name: name.to_string(),
        supported: names().join(", "),
    };
    let bad = |reason: String| ConfigError::BadValue {
        key: name.to_string(),
        value: value.to_string(),
        reason,
    };
    let (path, shape) =
        resolve(name.strip_prefix("REGISTRY_").ok_or_else(unknown)?).ok_or_else(unknown)?;
    let slot = slot(tree, &path).map_err(bad)?;
    match shape {
        Text => *slot = Value::String(value.to_string()),
        Bool => {
            *slot = Value::Bool(
                wharf_spec::settings::parse_bool(value)
                    .ok_or_else(|| bad("expected true or false".into()))?,
            )
        }
        TextList => {
            *slot = if value.trim_start().starts_with('[') {
                let list: Vec<Value> = serde_yaml_ng::from_str(value)
                    .map_err(|e| bad(format!("expected a YAML list: {e}")))?;
                let texts = list
                    .into_iter()
                    .map(|item| scalar_text(&item).map(Value::String))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("expected a list of plain values".into()))?;
                Value::Sequence(texts)
            } else {
                Value::Sequence(vec![Value::String(value.to_string())])
            }
        }
        Drivers { drivers, others } if !value.trim_start().starts_with('{') => {
            // The driver's name: select it, keeping its settings if the
            // file has them and dropping any other driver's.
            let driver = value.trim().to_ascii_lowercase();
            if !drivers.iter().any(|(d, _)| *d == driver) {
                let known: Vec<&str> = drivers.iter().map(|(d, _)| *d).collect();
                return Err(bad(format!(
                    "Wharf supports {} here, not {driver:?}",
                    known.join(" and ")
                )));
            }
            let map = mapping(slot);
            map.retain(|k, _| {
                k.as_str()
                    .is_some_and(|k| k == driver || others.iter().any(|(other, _)| *other == k))
            });
            let key = Value::String(driver);
            if !map.get(&key).is_some_and(Value::is_mapping) {
                map.insert(key, Value::Mapping(Mapping::new()));
            }
        }
        _ => {
            *slot = serde_yaml_ng::from_str(value)
                .map_err(|e| bad(format!("expected a YAML value: {e}")))?
        }
    }
    Ok(path)
}

/// A YAML scalar as text (`true`, `600`, `*`); `None` for lists and maps.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `value` as a mapping, made one if it is not.
fn mapping(value: &mut Value) -> &mut Mapping {
    if !value.is_mapping() {
        *value = Value::Mapping(Mapping::new());
    }
    value.as_mapping_mut().expect("made a mapping")
}

/// The node at `path` in `tree`, made (as an empty value) if absent.
fn slot<'a>(tree: &'a mut Value, path: &[Step]) -> Result<&'a mut Value, String> {
    let mut node = tree;
    for step in path {
        node = match step {
            Step::Key(key) => {
                let map = mapping(node);
                // A variable names a header in any case; it replaces the
                // file's entry for it, not adds a second one.
                let existing = map
                    .keys()
                    .find(|k| k.as_str().is_some_and(|k| k.eq_ignore_ascii_case(key)))
                    .cloned();
                map.entry(existing.unwrap_or_else(|| Value::String(key.clone())))
                    .or_insert(Value::Null)
            }
            Step::Index(index) => {
                if !node.is_sequence() {
                    *node = Value::Sequence(Vec::new());
                }
                let list = node.as_sequence_mut().expect("made a sequence");
                let len = list.len();
                if *index == len {
                    list.push(Value::Null);
                }
                list.get_mut(*index).ok_or_else(|| {
                    format!("the list has {len} entries: index {index} is beyond its end")
                })?
            }
        };
    }
    Ok(node)
}

/// Refuse any key of `tree` that [`ROOT`] does not list, as an unknown
/// variable is refused: the file and the variables accept the same keys.
pub fn check(tree: &Value) -> Result<(), ConfigError> {
    fn walk(value: &Value, shape: &Shape, path: &mut Vec<Step>) -> Result<(), ConfigError> {
        match (shape, value) {
            (Section(_) | Drivers { .. }, Value::Mapping(map)) => {
                let children = shape.children().unwrap_or_default();
                for (key, child) in map {
                    let name = key.as_str().unwrap_or_default();
                    let Some((_, child_shape)) = children.iter().find(|(k, _)| *k == name) else {
                        path.push(Step::Key(name.to_string()));
                        return Err(ConfigError::UnknownKey { key: display(path) });
                    };
                    path.push(Step::Key(name.to_string()));
                    walk(child, child_shape, path)?;
                    path.pop();
                }
                Ok(())
            }
            (List(item), Value::Sequence(list)) => {
                for (i, element) in list.iter().enumerate() {
                    path.push(Step::Index(i));
                    walk(element, item, path)?;
                    path.pop();
                }
                Ok(())
            }
            // Wrong types are serde's to report, with the expected type.
            _ => Ok(()),
        }
    }
    walk(tree, &Section(ROOT), &mut Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str) -> String {
        display(&resolve(name).expect(name).0)
    }

    #[test]
    fn variables_name_keys_whose_names_hold_underscores() {
        assert_eq!(path("HTTP_TLS_KEY"), "http.tls.key");
        assert_eq!(path("LIMITS_STORAGE_BYTES"), "limits.storage_bytes");
        assert_eq!(
            path("TENANTS_1_LIMITS_REQUEST_TIMEOUT"),
            "tenants[1].limits.request_timeout"
        );
        assert_eq!(
            path("HTTP_HEADERS_ACCESS-CONTROL-ALLOW-ORIGIN"),
            "http.headers.access-control-allow-origin"
        );
        assert_eq!(
            path("STORAGE_MAINTENANCE_READONLY_ENABLED"),
            "storage.maintenance.readonly.enabled"
        );
        assert_eq!(path("HTTP"), "http");
        assert!(resolve("HTTP_TLS_MINIMUMTLS").is_none());
        assert!(resolve("HTTP_TLS_KEY_EXTRA").is_none());
        assert!(resolve("TENANTS_X_NAME").is_none());
    }

    /// Every variable the description lists loads, with a sample value of
    /// its shape, into a configuration the file reader accepts: the
    /// description holds no key the file would refuse.
    #[test]
    fn every_listed_key_is_one_the_file_accepts() {
        fn sample(shape: &Shape) -> &'static str {
            match shape {
                Bool => "false",
                Yaml => "7",
                TextList => "/x",
                Text => "1s",
                Section(_) | Drivers { .. } | Map(_) | List(_) | Any => "{}",
            }
        }
        fn walk(name: String, shape: &'static Shape, out: &mut Vec<(String, &'static Shape)>) {
            out.push((name.clone(), shape));
            match shape {
                List(item) => walk(format!("{name}_0"), item, out),
                Map(value) => walk(format!("{name}_SOME-KEY"), value, out),
                _ => {
                    for (key, child) in shape.children().unwrap_or_default() {
                        walk(format!("{name}_{}", key.to_ascii_uppercase()), child, out);
                    }
                }
            }
        }
        let mut all = Vec::new();
        for (key, shape) in ROOT {
            walk(
                format!("REGISTRY_{}", key.to_ascii_uppercase()),
                shape,
                &mut all,
            );
        }
        assert!(all.len() > 60, "{}", all.len());
        for (name, shape) in all {
            let mut tree = Value::Mapping(Mapping::new());
            let value = match (name.as_str(), shape) {
                ("REGISTRY_VERSION", _) => "0.1",
                ("REGISTRY_LOG_LEVEL", _) => "info",
                ("REGISTRY_LOG_FORMATTER", _) => "json",
                (n, _) if n.ends_with("ADDR") => "127.0.0.1:0",
                (n, Drivers { .. }) if n.ends_with("STORAGE") => "filesystem",
                (n, Drivers { .. }) if n.ends_with("AUTH") => "htpasswd",
                (_, shape) => sample(shape),
            };
            apply(&mut tree, &name, value).unwrap_or_else(|e| panic!("{name}: {e}"));
            check(&tree).unwrap_or_else(|e| panic!("{name}: {e}"));
            let read: Result<super::super::Config, _> = serde_path_to_error::deserialize(tree);
            if let Err(e) = read {
                // Only a value may be wrong (a tenant missing its name,
                // say), never the key.
                let message = e.to_string();
                assert!(
                    !message.contains("unknown field") && !message.contains("unknown variant"),
                    "{name}={value}: {message}"
                );
            }
        }
    }

    #[test]
    fn a_driver_variable_selects_the_driver_and_keeps_its_settings() {
        let mut tree: Value = serde_yaml_ng::from_str(
            "auth:\n  htpasswd:\n    path: /a\nstorage:\n  filesystem:\n    rootdirectory: /d\n  delete:\n    enabled: true\n",
        )
        .unwrap();
        apply(&mut tree, "REGISTRY_AUTH", "htpasswd").unwrap();
        apply(&mut tree, "REGISTRY_STORAGE", "filesystem").unwrap();
        assert_eq!(tree["auth"]["htpasswd"]["path"], Value::from("/a"));
        assert_eq!(tree["storage"]["delete"]["enabled"], Value::from(true));
        let e = apply(&mut tree, "REGISTRY_STORAGE", "azure").unwrap_err();
        assert!(e.to_string().contains("filesystem and s3"), "{e}");
        apply(&mut tree, "REGISTRY_STORAGE", "s3").unwrap();
        assert!(tree["storage"].get("filesystem").is_none());
        assert!(tree["storage"]["s3"].is_mapping());
    }

    #[test]
    fn a_key_the_description_lacks_is_refused_in_a_tree() {
        let tree: Value = serde_yaml_ng::from_str("http:\n  prefix: /r\n").unwrap();
        let e = check(&tree).unwrap_err().to_string();
        assert!(e.contains("http.prefix"), "{e}");
    }
}
