//! `User-Agents` rules: which registrations carry a push token, and where (spec §5.1).
//!
//! The `User-Agents` config object maps a rule key to `{"regex": ..., "properties":
//! {...}}`. A registration's `User-Agent` is searched (unanchored, like Erlang's
//! `re:run`) with each rule's regex in stored order; the first match wins and its
//! `properties` say which Contact parameter (or `reg_success` field) fills each key of
//! the device's `push` object.
//!
//! The config is operator-written, so [`UserAgentRules::compile`] keeps every valid
//! rule and reports each bad one as a [`RuleError`]; patterns are size-limited and run
//! with a backtrack limit so one rule cannot stall the consumer. The backtrack limit
//! does not bound everything: an unanchored search retries at every start position and
//! look-arounds rescan the text, so some patterns cost O(n²) or worse in the length of
//! the User-Agent without ever backtracking much. Only the first
//! [`MAX_USER_AGENT_BYTES`] of a User-Agent are therefore matched.

use fancy_regex::{Regex, RegexBuilder};
use serde_json::Value;

use crate::kapps_config::json_kind;

/// Pattern used when a rule has no `regex` (Kazoo's default): matches only an empty UA.
pub const DEFAULT_REGEX: &str = "^$";

/// Longest pattern accepted, in characters.
pub const MAX_PATTERN_CHARS: usize = 4096;

/// Backtracking steps allowed per match attempt before it is abandoned.
pub const BACKTRACK_LIMIT: usize = 100_000;

/// Longest prefix of a User-Agent that rules are matched against, in bytes (cut on a
/// character boundary). Real User-Agents are well under 300 bytes; without this cap a
/// 200 kB User-Agent held a handler for minutes on a look-around rule such as
/// `(?=(a*)*$)\1b` (found by the hostile-input corpus).
pub const MAX_USER_AGENT_BYTES: usize = 1024;

/// A problem with one rule, or with the `User-Agents` value itself.
///
/// Displays as `User-Agents.<key>: <cause>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// `User-Agents` is neither an object nor `null`.
    #[error("User-Agents: expected an object, got {0}")]
    NotAnObject(&'static str),
    /// The rule's value is not an object; the rule is skipped.
    #[error("User-Agents.{key}: rule is not an object but {kind}")]
    RuleNotObject {
        /// Rule key.
        key: String,
        /// JSON type found.
        kind: &'static str,
    },
    /// `regex` is present but not a string; the rule is skipped.
    #[error("User-Agents.{key}: regex is not a string but {kind}")]
    RegexNotString {
        /// Rule key.
        key: String,
        /// JSON type found.
        kind: &'static str,
    },
    /// `regex` is longer than [`MAX_PATTERN_CHARS`]; the rule is skipped.
    #[error("User-Agents.{key}: regex is {chars} characters long (limit {MAX_PATTERN_CHARS})")]
    RegexTooLong {
        /// Rule key.
        key: String,
        /// Pattern length in characters.
        chars: usize,
    },
    /// `regex` does not compile; the rule is skipped.
    #[error("User-Agents.{key}: invalid regex: {reason}")]
    InvalidRegex {
        /// Rule key.
        key: String,
        /// Compiler message.
        reason: String,
    },
    /// `properties` is present but not an object; the rule is kept with no properties.
    #[error("User-Agents.{key}: properties is not an object but {kind}; using none")]
    PropertiesNotObject {
        /// Rule key.
        key: String,
        /// JSON type found.
        kind: &'static str,
    },
    /// One property value is not a string; that property is skipped.
    #[error("User-Agents.{key}: property {name} is not a string but {kind}; skipped")]
    PropertyNotString {
        /// Rule key.
        key: String,
        /// Property name.
        name: String,
        /// JSON type found.
        kind: &'static str,
    },
    /// Matching a User-Agent failed (backtrack limit hit); the rule is skipped for it.
    #[error("User-Agents.{key}: matching failed: {reason}")]
    MatchFailed {
        /// Rule key.
        key: String,
        /// Engine message.
        reason: String,
    },
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Key of the rule in the `User-Agents` object.
    pub key: String,
    /// Compiled `regex` ([`DEFAULT_REGEX`] when missing).
    pub regex: Regex,
    /// `properties` in stored order: push-object key → Contact param / field name.
    pub properties: Vec<(String, String)>,
}

impl Rule {
    /// Value of property `name` (e.g. `"Token-ID"`), first occurrence.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The compiled `User-Agents` rules, in stored order.
#[derive(Debug, Clone, Default)]
pub struct UserAgentRules {
    rules: Vec<Rule>,
}

/// Outcome of [`UserAgentRules::first_match`].
#[derive(Debug)]
pub struct MatchResult<'a> {
    /// First rule whose regex matched, if any.
    pub rule: Option<&'a Rule>,
    /// Rules that could not be evaluated (and were skipped) before the answer.
    pub errors: Vec<RuleError>,
}

impl UserAgentRules {
    /// Compiles a `User-Agents` value, keeping every valid rule.
    ///
    /// `null` gives no rules and no error; another non-object gives no rules and an error.
    pub fn compile(v: &Value) -> (UserAgentRules, Vec<RuleError>) {
        let mut errors = Vec::new();
        let rules = match v {
            Value::Object(map) => map
                .iter()
                .filter_map(|(key, rule)| compile_rule(key, rule, &mut errors))
                .collect(),
            Value::Null => Vec::new(),
            other => {
                errors.push(RuleError::NotAnObject(json_kind(other)));
                Vec::new()
            }
        };
        (UserAgentRules { rules }, errors)
    }

    /// First rule (in stored order) whose regex is found anywhere in `user_agent`
    /// (its first [`MAX_USER_AGENT_BYTES`]).
    ///
    /// A rule whose match attempt fails is skipped and reported in `errors`.
    pub fn first_match(&self, user_agent: &str) -> MatchResult<'_> {
        let user_agent = bounded_prefix(user_agent, MAX_USER_AGENT_BYTES);
        let mut errors = Vec::new();
        for rule in &self.rules {
            match rule.regex.is_match(user_agent) {
                Ok(true) => {
                    return MatchResult {
                        rule: Some(rule),
                        errors,
                    };
                }
                Ok(false) => {}
                Err(e) => errors.push(RuleError::MatchFailed {
                    key: rule.key.clone(),
                    reason: e.to_string(),
                }),
            }
        }
        MatchResult { rule: None, errors }
    }

    /// Number of compiled rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether no rule compiled.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The compiled rules in stored order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn bounded_prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn compile_rule(key: &str, rule: &Value, errors: &mut Vec<RuleError>) -> Option<Rule> {
    let key_owned = || key.to_string();
    let Value::Object(rule) = rule else {
        errors.push(RuleError::RuleNotObject {
            key: key_owned(),
            kind: json_kind(rule),
        });
        return None;
    };
    let pattern = match rule.get("regex") {
        None | Some(Value::Null) => DEFAULT_REGEX,
        Some(Value::String(p)) => p.as_str(),
        Some(other) => {
            errors.push(RuleError::RegexNotString {
                key: key_owned(),
                kind: json_kind(other),
            });
            return None;
        }
    };
    let chars = pattern.chars().count();
    if chars > MAX_PATTERN_CHARS {
        errors.push(RuleError::RegexTooLong {
            key: key_owned(),
            chars,
        });
        return None;
    }
    let regex = match RegexBuilder::new(pattern)
        .backtrack_limit(BACKTRACK_LIMIT)
        .build()
    {
        Ok(regex) => regex,
        Err(e) => {
            errors.push(RuleError::InvalidRegex {
                key: key_owned(),
                reason: e.to_string(),
            });
            return None;
        }
    };
    let properties = match rule.get("properties") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(props)) => props
            .iter()
            .filter_map(|(name, v)| match v {
                Value::String(s) => Some((name.clone(), s.clone())),
                other => {
                    errors.push(RuleError::PropertyNotString {
                        key: key_owned(),
                        name: name.clone(),
                        kind: json_kind(other),
                    });
                    None
                }
            })
            .collect(),
        Some(other) => {
            errors.push(RuleError::PropertiesNotObject {
                key: key_owned(),
                kind: json_kind(other),
            });
            Vec::new()
        }
    };
    Some(Rule {
        key: key_owned(),
        regex,
        properties,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::{Duration, Instant};

    /// Regression (hostile corpus, case `ua-long-200k-a`): a look-around rule costs
    /// O(n²) on a long User-Agent without hitting the backtrack limit; 200 kB took
    /// minutes. Only the first `MAX_USER_AGENT_BYTES` are matched now.
    #[test]
    fn long_user_agent_cannot_stall_a_quadratic_rule() {
        let (rules, errors) = UserAgentRules::compile(&json!({
            "slow": {"regex": "(?=(a*)*$)\\1b"},
            "lookbehind": {"regex": "(?<=a+)b"},
            "tail": {"regex": "TAIL$"}
        }));
        assert!(errors.is_empty(), "{errors:?}");
        let ua = "a".repeat(200_000) + "TAIL";
        let started = Instant::now();
        let found = rules.first_match(&ua);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        assert!(found.rule.is_none(), "the tail beyond the cap is not seen");
        assert!(rules.first_match("aaaTAIL").rule.is_some());
    }

    #[test]
    fn user_agent_is_cut_on_a_char_boundary() {
        let (rules, _) = UserAgentRules::compile(&json!({"e": {"regex": "^é+$"}}));
        // 1024 is inside the 513th 'é' (2 bytes each, after one ASCII byte).
        let ua = format!("x{}", "é".repeat(600));
        assert!(rules.first_match(&ua).rule.is_none());
        let ua = "é".repeat(600);
        assert_eq!(bounded_prefix(&ua, MAX_USER_AGENT_BYTES).len(), 1024);
        assert!(rules.first_match(&ua).rule.is_some());
    }

    fn my_app() -> Value {
        json!({"MyApp": {
            "regex": "^MyApp",
            "properties": {"Token-App": "app-id", "Token-Type": "pn-type", "Token-ID": "pn-tok"}
        }})
    }

    fn matched_key<'a>(rules: &'a UserAgentRules, ua: &str) -> Option<&'a str> {
        let m = rules.first_match(ua);
        assert!(m.errors.is_empty(), "{:?}", m.errors);
        m.rule.map(|r| r.key.as_str())
    }

    #[test]
    fn compiles_the_documented_rule() {
        let (rules, errors) = UserAgentRules::compile(&my_app());
        assert!(errors.is_empty());
        assert_eq!(rules.len(), 1);
        assert!(!rules.is_empty());
        let rule = &rules.rules()[0];
        assert_eq!(rule.key, "MyApp");
        assert_eq!(
            rule.properties,
            [
                ("Token-App".to_string(), "app-id".to_string()),
                ("Token-Type".to_string(), "pn-type".to_string()),
                ("Token-ID".to_string(), "pn-tok".to_string()),
            ]
        );
        assert_eq!(rule.property("Token-ID"), Some("pn-tok"));
        assert_eq!(rule.property("Token-Proxy"), None);
        assert_eq!(matched_key(&rules, "MyApp/1.0"), Some("MyApp"));
        assert_eq!(matched_key(&rules, "NotMyApp/1.0"), None);
    }

    #[test]
    fn stored_order_wins() {
        let v: Value =
            serde_json::from_str(r#"{"Zeta": {"regex": "Linphone"}, "Alpha": {"regex": "^Lin"}}"#)
                .unwrap();
        let (rules, errors) = UserAgentRules::compile(&v);
        assert!(errors.is_empty());
        assert_eq!(matched_key(&rules, "Linphone/5"), Some("Zeta"));

        let v: Value =
            serde_json::from_str(r#"{"Alpha": {"regex": "^Lin"}, "Zeta": {"regex": "Linphone"}}"#)
                .unwrap();
        let (rules, _) = UserAgentRules::compile(&v);
        assert_eq!(matched_key(&rules, "Linphone/5"), Some("Alpha"));
    }

    #[test]
    fn unanchored_search() {
        let (rules, _) = UserAgentRules::compile(&json!({"K": {"regex": "PushKit"}}));
        assert_eq!(
            matched_key(
                &rules,
                "Linphone-Harness/5.2.0 (iPhone) iOS/17.2 PushKit \"quoted\""
            ),
            Some("K")
        );
    }

    #[test]
    fn invalid_rules_are_skipped_with_named_errors() {
        let v = json!({
            "Broken": {"regex": "(unclosed"},
            "NotObj": "^x",
            "NumRegex": {"regex": 5},
            "Long": {"regex": "a".repeat(MAX_PATTERN_CHARS + 1)},
            "Good": {"regex": "^Good"}
        });
        let (rules, errors) = UserAgentRules::compile(&v);
        assert_eq!(rules.len(), 1);
        assert_eq!(rules.rules()[0].key, "Good");
        assert_eq!(errors.len(), 4);
        let msgs: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            msgs[0].starts_with("User-Agents.Broken: invalid regex: "),
            "{}",
            msgs[0]
        );
        assert_eq!(
            msgs[1],
            "User-Agents.NotObj: rule is not an object but a string"
        );
        assert_eq!(
            msgs[2],
            "User-Agents.NumRegex: regex is not a string but a number"
        );
        assert_eq!(
            errors[3],
            RuleError::RegexTooLong {
                key: "Long".into(),
                chars: MAX_PATTERN_CHARS + 1
            }
        );
    }

    #[test]
    fn pattern_at_the_length_limit_compiles() {
        let (rules, errors) =
            UserAgentRules::compile(&json!({"Max": {"regex": "a".repeat(MAX_PATTERN_CHARS)}}));
        assert!(errors.is_empty());
        assert_eq!(rules.len(), 1);
    }

    #[test]
    fn missing_regex_matches_only_empty_ua() {
        let (rules, errors) =
            UserAgentRules::compile(&json!({"Empty": {"properties": {"Token-ID": "t"}}}));
        assert!(errors.is_empty());
        assert_eq!(rules.rules()[0].regex.as_str(), DEFAULT_REGEX);
        assert_eq!(matched_key(&rules, ""), Some("Empty"));
        assert_eq!(matched_key(&rules, "x"), None);
    }

    #[test]
    fn bad_properties() {
        let v = json!({
            "A": {"regex": "a", "properties": {"Token-ID": "tok", "Token-App": 3, "Token-Type": "t"}},
            "B": {"regex": "b", "properties": ["x"]}
        });
        let (rules, errors) = UserAgentRules::compile(&v);
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules.rules()[0].properties,
            [
                ("Token-ID".to_string(), "tok".to_string()),
                ("Token-Type".to_string(), "t".to_string())
            ]
        );
        assert!(rules.rules()[1].properties.is_empty());
        assert_eq!(
            errors[0].to_string(),
            "User-Agents.A: property Token-App is not a string but a number; skipped"
        );
        assert_eq!(
            errors[1],
            RuleError::PropertiesNotObject {
                key: "B".into(),
                kind: "an array"
            }
        );
    }

    #[test]
    fn non_object_config() {
        let (rules, errors) = UserAgentRules::compile(&Value::Null);
        assert!(rules.is_empty() && errors.is_empty());
        let (rules, errors) = UserAgentRules::compile(&json!("nope"));
        assert!(rules.is_empty());
        assert_eq!(errors, [RuleError::NotAnObject("a string")]);
        assert_eq!(
            errors[0].to_string(),
            "User-Agents: expected an object, got a string"
        );
        let (rules, _) = UserAgentRules::compile(&json!({}));
        assert!(rules.first_match("anything").rule.is_none());
    }

    #[test]
    fn lookaround_and_backrefs_work() {
        let v = json!({
            "NotBeta": {"regex": "^MyApp/(?!.*beta)"},
            "Rep": {"regex": "(ab)\\1"}
        });
        let (rules, errors) = UserAgentRules::compile(&v);
        assert!(errors.is_empty());
        assert_eq!(matched_key(&rules, "MyApp/2.0"), Some("NotBeta"));
        assert_eq!(matched_key(&rules, "MyApp/2.0-beta"), None);
        assert_eq!(matched_key(&rules, "x abab y"), Some("Rep"));
    }

    #[test]
    fn catastrophic_patterns_do_not_hang() {
        let subject = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!";
        // Plain `(a+)+$` has no fancy feature, so fancy-regex hands it to the linear-time
        // `regex` engine: no backtracking, just a quick "no match".
        let start = Instant::now();
        let (rules, errors) = UserAgentRules::compile(&json!({"Evil": {"regex": "(a+)+$"}}));
        assert!(errors.is_empty());
        let m = rules.first_match(subject);
        assert!(m.rule.is_none() && m.errors.is_empty());

        // A look-ahead inside the repetition forces fancy-regex's backtracking VM to run
        // the nested quantifier; the backtrack limit stops it.
        let v = json!({"Evil": {"regex": "(a+(?!b))+$"}, "Fallback": {"regex": "!$"}});
        let (rules, errors) = UserAgentRules::compile(&v);
        assert!(errors.is_empty());
        let m = rules.first_match(subject);
        assert_eq!(m.rule.map(|r| r.key.as_str()), Some("Fallback"));
        assert_eq!(m.errors.len(), 1);
        assert!(
            matches!(&m.errors[0], RuleError::MatchFailed { key, .. } if key == "Evil"),
            "{:?}",
            m.errors
        );
        assert!(
            m.errors[0]
                .to_string()
                .starts_with("User-Agents.Evil: matching failed: ")
        );
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}
