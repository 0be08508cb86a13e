//! `auth.access`: who may pull, push or delete which repositories, for
//! htpasswd users (Wharf's addition; registry:2 lets every signed-in user do
//! everything, which is also what Wharf does without this block).
//!
//! ```yaml
//! auth:
//!   htpasswd: { realm: Registry Realm, path: /auth/htpasswd }
//!   access:
//!     groups:
//!       developers: [alice, bob]
//!     rules:
//!       - repositories: [team-a/**]
//!         groups: [developers]
//!         users: [ci-robot]
//!         actions: [pull, push, delete]
//!       - repositories: [public/**]
//!         anonymous: true          # anyone, with or without credentials
//!         actions: [pull]
//!       - repositories: ["**"]
//!         users: ["*"]             # any signed-in user
//!         actions: [pull]
//! ```
//!
//! - A caller may do what any rule gives them; nothing else (default deny).
//!   Rules only add, so their order does not matter.
//! - Repository patterns are globs over the name's `/`-separated parts:
//!   `*` stands for any one part or any run of characters within a part,
//!   `**` for any number of parts (one or more at the end of a pattern, so
//!   `team-a/**` is every repository under `team-a/`, not `team-a` itself).
//! - The registry itself (`GET /v2/`) is open to every signed-in user; the
//!   catalog lists only what the caller may pull (`capabilities/repositories.rs`).
//!
//! The host decides with these rules before any handle reaches the
//! component ([`Governed`], an [`AccessControl`] around the htpasswd one):
//! what a caller may not do, the component never gets to try.

use crate::access::htpasswd::Stamp;
use crate::access::{AccessControl, Action, Caller, Identity, Refused, Verdict};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::RwLock;

/// One part of a repository pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`: any number of parts.
    Any,
    /// A part with `*` wildcards: the literal pieces between them.
    Part(Vec<String>),
}

/// A repository pattern, checked when the rules are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    segments: Vec<Segment>,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("an empty repository pattern matches nothing".into());
        }
        let mut segments = Vec::new();
        for part in text.split('/') {
            if part.is_empty() {
                return Err(format!(
                    "repository pattern {text:?} has an empty part (a leading, trailing or doubled `/`)"
                ));
            }
            if part == "**" {
                if segments.last() != Some(&Segment::Any) {
                    segments.push(Segment::Any);
                }
                continue;
            }
            if part.contains("**") {
                return Err(format!(
                    "repository pattern {text:?}: `**` stands for whole parts, as in `team/**`; \
                     use `*` within a part"
                ));
            }
            let valid = |c: char| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '*')
            };
            if let Some(bad) = part.chars().find(|c| !valid(*c)) {
                return Err(format!(
                    "repository pattern {text:?}: {bad:?} cannot appear in a repository name \
                     (lowercase letters, digits, `.`, `_`, `-`, and `*` or `**` as wildcards)"
                ));
            }
            segments.push(Segment::Part(part.split('*').map(str::to_string).collect()));
        }
        Ok(Pattern {
            text: text.to_string(),
            segments,
        })
    }

    pub fn matches(&self, repository: &str) -> bool {
        let parts: Vec<&str> = repository.split('/').collect();
        matches_from(&self.segments, &parts)
    }
}

fn matches_from(segments: &[Segment], parts: &[&str]) -> bool {
    match segments.split_first() {
        None => parts.is_empty(),
        // At the end, `**` wants at least one part: `team/**` is what is
        // under `team`, not `team` itself.
        Some((Segment::Any, [])) => !parts.is_empty(),
        Some((Segment::Any, rest)) => (0..=parts.len()).any(|n| matches_from(rest, &parts[n..])),
        Some((Segment::Part(pieces), rest)) => match parts.split_first() {
            Some((part, others)) => part_matches(pieces, part) && matches_from(rest, others),
            None => false,
        },
    }
}

/// Whether `part` is `pieces` joined by runs of any characters.
fn part_matches(pieces: &[String], part: &str) -> bool {
    let (first, rest) = pieces
        .split_first()
        .expect("split gives one piece at least");
    let Some(mut left) = part.strip_prefix(first.as_str()) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return left.is_empty();
    };
    for piece in middle {
        match left.find(piece.as_str()) {
            Some(at) => left = &left[at + piece.len()..],
            None => return false,
        }
    }
    left.len() >= last.len() && left.ends_with(last.as_str())
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Pattern, D::Error> {
        let text = String::deserialize(d)?;
        Pattern::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Action, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "pull" => Ok(Action::Pull),
            "push" => Ok(Action::Push),
            "delete" => Ok(Action::Delete),
            other => Err(serde::de::Error::custom(format!(
                "unknown action {other:?}: the actions are pull, push and delete"
            ))),
        }
    }
}

/// One rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub repositories: Vec<Pattern>,
    pub actions: Vec<Action>,
    /// User names; `*` is any signed-in user.
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Anyone, with or without credentials.
    #[serde(default)]
    pub anonymous: bool,
}

/// `auth.access` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    pub rules: Vec<Rule>,
}

/// The rules, checked and ready to decide. Read from the configuration
/// file as they are written, so that a malformed rule stops the start
/// with the file's line.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "AccessConfig")]
pub struct Rules {
    groups: BTreeMap<String, BTreeSet<String>>,
    rules: Vec<Rule>,
}

impl TryFrom<AccessConfig> for Rules {
    type Error = String;

    /// Check what `config` says: every rule names repositories, actions
    /// and someone, and every group it names exists.
    fn try_from(config: AccessConfig) -> Result<Rules, String> {
        for (i, rule) in config.rules.iter().enumerate() {
            let here = format!("rules[{i}]");
            if rule.repositories.is_empty() {
                return Err(format!("{here}: names no repositories"));
            }
            if rule.actions.is_empty() {
                return Err(format!("{here}: allows no actions (pull, push, delete)"));
            }
            if !rule.anonymous && rule.users.is_empty() && rule.groups.is_empty() {
                return Err(format!(
                    "{here}: names nobody: give users, groups, or `anonymous: true`"
                ));
            }
            if let Some(missing) = rule.groups.iter().find(|g| !config.groups.contains_key(*g)) {
                return Err(format!(
                    "{here}: group {missing:?} is not defined under groups"
                ));
            }
        }
        Ok(Rules {
            groups: config
                .groups
                .into_iter()
                .map(|(name, users)| (name, users.into_iter().collect()))
                .collect(),
            rules: config.rules,
        })
    }
}

impl Rules {
    /// Whether `identity` may do `action` on `repository`.
    pub fn allows(&self, identity: &Identity, repository: &str, action: Action) -> bool {
        self.rules.iter().any(|rule| {
            rule.actions.contains(&action)
                && self.names(rule, identity)
                && rule.repositories.iter().any(|p| p.matches(repository))
        })
    }

    /// Whether `rule` is about `identity`.
    fn names(&self, rule: &Rule, identity: &Identity) -> bool {
        if rule.anonymous {
            return true;
        }
        let Identity::User(user) = identity else {
            return false;
        };
        rule.users.iter().any(|u| u == "*" || u == user)
            || rule.groups.iter().any(|g| {
                self.groups
                    .get(g)
                    .is_some_and(|members| members.contains(user))
            })
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Where a registry's rules came from, to read them again when it
/// changes: the configuration file, and the tenant whose rules they are
/// (none: the top-level `auth.access`).
pub struct Source {
    pub file: PathBuf,
    pub tenant: Option<String>,
}

impl Source {
    /// The rules the file (with the `REGISTRY_*` variables) says now.
    fn read(&self) -> Result<Option<Rules>, String> {
        let config = crate::config::Config::load(Some(&self.file), std::env::vars())
            .map_err(|e| e.to_string())?;
        let auth = match &self.tenant {
            None => config.auth,
            Some(name) => {
                let tenant = config
                    .tenants
                    .into_iter()
                    .flatten()
                    .find(|t| &t.name == name)
                    .ok_or_else(|| format!("tenant {name} is no longer in the file"))?;
                tenant.auth
            }
        };
        Ok(auth.access)
    }
}

/// The rules in force, and the file's stamp when they were read.
struct Loaded {
    rules: Option<Rules>,
    stamp: Option<Stamp>,
}

/// An access control whose decisions the rules govern: `inner` still says
/// who the caller is; the rules say what they may do. The configuration
/// file is looked at once per request, as the htpasswd file is: when it
/// changed, its rules replace these (a malformed new version is logged and
/// the rules in force kept; one without `auth.access` lets every signed-in
/// user do everything again).
pub struct Governed<A> {
    inner: A,
    loaded: RwLock<Loaded>,
    source: Option<Source>,
    tenant: String,
}

impl<A: AccessControl> Governed<A> {
    pub fn new(
        inner: A,
        rules: Option<Rules>,
        source: Option<Source>,
        tenant: &str,
    ) -> Governed<A> {
        let stamp = source.as_ref().and_then(|s| Stamp::of(&s.file).ok());
        Governed {
            inner,
            loaded: RwLock::new(Loaded { rules, stamp }),
            source,
            tenant: tenant.to_string(),
        }
    }

    /// Read the rules again if the configuration file changed.
    fn refresh(&self) {
        let Some(source) = &self.source else {
            return;
        };
        let stamp = Stamp::of(&source.file).ok();
        if crate::sync::read(&self.loaded).stamp == stamp {
            return;
        }
        let mut loaded = crate::sync::write(&self.loaded);
        if loaded.stamp == stamp {
            return;
        }
        loaded.stamp = stamp;
        match source.read() {
            Ok(rules) => {
                tracing::info!(
                    tenant = self.tenant,
                    file = %source.file.display(),
                    rules = rules.as_ref().map_or(0, Rules::len),
                    "access rules reloaded"
                );
                loaded.rules = rules;
            }
            Err(e) => tracing::error!(
                tenant = self.tenant,
                error = %e,
                "the configuration file changed but its access rules cannot be used; keeping the rules in force"
            ),
        }
    }
}

impl<A: AccessControl> AccessControl for Governed<A> {
    fn authenticate<'a>(&'a self, caller: &'a Caller) -> BoxFuture<'a, Result<Identity, Refused>> {
        self.refresh();
        self.inner.authenticate(caller)
    }

    fn authorize(&self, identity: &Identity, repository: Option<&str>, action: Action) -> Verdict {
        let loaded = crate::sync::read(&self.loaded);
        let (Some(repository), Some(rules)) = (repository, &loaded.rules) else {
            // The registry itself, or no rules: whatever `inner` says
            // (signed-in users in, others asked to sign in); the catalog
            // is filtered per repository.
            return self.inner.authorize(identity, repository, action);
        };
        if rules.allows(identity, repository, action) {
            return Verdict::Allow(identity.user().map(str::to_string));
        }
        match identity {
            // Someone who has not signed in may be allowed once they do
            // (and a token is not htpasswd's to judge).
            Identity::Anonymous | Identity::Token(_) => {
                self.inner.authorize(identity, Some(repository), action)
            }
            Identity::User(user) => Verdict::Deny(format!(
                "{user} may not {} {repository}: no rule of auth.access allows it",
                match action {
                    Action::Pull => "pull from",
                    Action::Push => "push to",
                    Action::Delete => "delete from",
                }
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> Pattern {
        Pattern::parse(p).unwrap()
    }

    #[test]
    fn globs_match_parts_and_runs_of_parts() {
        let under = pattern("team-a/**");
        assert!(under.matches("team-a/app"));
        assert!(under.matches("team-a/x/y"));
        assert!(!under.matches("team-a"));
        assert!(!under.matches("team-ab/app"));
        let all = pattern("**");
        assert!(all.matches("a") && all.matches("a/b/c"));
        let one = pattern("*/app");
        assert!(one.matches("x/app") && !one.matches("x/y/app") && !one.matches("app"));
        let within = pattern("team/*-dev");
        assert!(within.matches("team/api-dev") && within.matches("team/-dev"));
        assert!(!within.matches("team/api-prod"));
        let middle = pattern("a/**/z");
        assert!(middle.matches("a/z") && middle.matches("a/b/c/z") && !middle.matches("a/b"));
        let exact = pattern("library/nginx");
        assert!(exact.matches("library/nginx") && !exact.matches("library/nginx2"));
        let star = pattern("a*b*c");
        assert!(star.matches("abc") && star.matches("a-b-c") && star.matches("abbc"));
        assert!(!star.matches("acb") && !star.matches("ab"));
    }

    #[test]
    fn malformed_patterns_say_why() {
        for (bad, says) in [
            ("", "empty"),
            ("team//app", "empty part"),
            ("team/", "empty part"),
            ("Team/app", "'T'"),
            ("team/a**", "whole parts"),
        ] {
            let e = Pattern::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    const CONFIG: &str = "\
auth:
  htpasswd:
    path: /auth/htpasswd
  access:
    groups:
      developers: [alice, bob]
    rules:
      - repositories: [team-a/**]
        groups: [developers]
        actions: [pull, push, delete]
      - repositories: [team-a/**]
        users: [carol]
        actions: [pull]
      - repositories: [public/**]
        anonymous: true
        actions: [pull]
      - repositories: [\"**\"]
        users: [\"*\"]
        actions: [pull]
        # Nothing else: no one may push outside team-a.
";

    /// The `auth.access` of a configuration file's text.
    fn read(text: &str) -> Result<Option<Rules>, String> {
        #[derive(Deserialize)]
        struct File {
            auth: AuthOnly,
        }
        #[derive(Deserialize)]
        struct AuthOnly {
            access: Option<Rules>,
        }
        serde_yaml_ng::from_str::<File>(text)
            .map(|f| f.auth.access)
            .map_err(|e| e.to_string())
    }

    fn rules() -> Rules {
        read(CONFIG).unwrap().unwrap()
    }

    fn user(name: &str) -> Identity {
        Identity::User(name.into())
    }

    #[test]
    fn users_groups_and_anonymous_get_what_their_rules_give() {
        let r = rules();
        assert!(r.allows(&user("alice"), "team-a/app", Action::Push));
        assert!(r.allows(&user("bob"), "team-a/app", Action::Delete));
        assert!(r.allows(&user("carol"), "team-a/app", Action::Pull));
        assert!(!r.allows(&user("carol"), "team-a/app", Action::Push));
        assert!(!r.allows(&user("alice"), "team-b/app", Action::Push));
        assert!(r.allows(&user("dave"), "team-b/app", Action::Pull));
        assert!(r.allows(&Identity::Anonymous, "public/tools", Action::Pull));
        assert!(!r.allows(&Identity::Anonymous, "public/tools", Action::Push));
        assert!(!r.allows(&Identity::Anonymous, "team-a/app", Action::Pull));
    }

    #[test]
    fn without_an_access_block_there_are_no_rules() {
        let text = "auth:\n  htpasswd:\n    path: /auth/htpasswd\n";
        assert!(read(text).unwrap().is_none());
    }

    #[test]
    fn a_malformed_rule_is_refused_with_its_line() {
        let bad_pattern = CONFIG.replace("[public/**]", "[Public/**]");
        let e = read(&bad_pattern).unwrap_err();
        assert!(
            e.contains("auth.access.rules[2].repositories") && e.contains("line 14"),
            "{e}"
        );
        let bad_action = CONFIG.replace("[pull, push, delete]", "[pull, write]");
        let e = read(&bad_action).unwrap_err();
        assert!(
            e.contains("unknown action \"write\"") && e.contains("line 10"),
            "{e}"
        );
        let unknown_group = CONFIG.replace("groups: [developers]", "groups: [devs]");
        let e = read(&unknown_group).unwrap_err();
        assert!(
            e.contains("rules[0]") && e.contains("\"devs\"") && e.contains("line "),
            "{e}"
        );
    }

    struct SignedIn;

    impl AccessControl for SignedIn {
        fn authenticate<'a>(&'a self, _: &'a Caller) -> BoxFuture<'a, Result<Identity, Refused>> {
            Box::pin(std::future::ready(Ok(Identity::Anonymous)))
        }

        fn authorize(&self, identity: &Identity, _: Option<&str>, _: Action) -> Verdict {
            match identity {
                Identity::User(u) => Verdict::Allow(Some(u.clone())),
                Identity::Anonymous | Identity::Token(_) => {
                    Verdict::Challenge("Basic realm=\"r\"".into())
                }
            }
        }
    }

    #[test]
    fn denied_callers_are_refused_and_anonymous_ones_challenged() {
        let g = Governed::new(SignedIn, Some(rules()), None, "test");
        assert_eq!(
            g.authorize(&user("alice"), Some("team-a/app"), Action::Push),
            Verdict::Allow(Some("alice".into()))
        );
        assert!(matches!(
            g.authorize(&user("carol"), Some("team-a/app"), Action::Push),
            Verdict::Deny(why) if why.contains("carol may not push to team-a/app")
        ));
        assert!(matches!(
            g.authorize(&Identity::Anonymous, Some("team-a/app"), Action::Pull),
            Verdict::Challenge(_)
        ));
        assert_eq!(
            g.authorize(&Identity::Anonymous, Some("public/x"), Action::Pull),
            Verdict::Allow(None)
        );
        // The registry itself: signed-in users in, others asked to sign in.
        assert!(matches!(
            g.authorize(&user("dave"), None, Action::Pull),
            Verdict::Allow(_)
        ));
        assert!(matches!(
            g.authorize(&Identity::Anonymous, None, Action::Pull),
            Verdict::Challenge(_)
        ));
    }
}
