//! Interface classification: the role an SNMP interface plays — ISP uplink
//! (with its provider), trunk, access port, server link — read from its
//! ifAlias (ifName and ifDescr as fallbacks) by configurable patterns, unless
//! an operator's override in inventory says otherwise. Pure: no I/O.
//!
//! The settings live under `[alerting.interfaces]`:
//!
//! ```toml
//! [alerting.interfaces]
//! builtin_patterns = true        # the built-ins follow the patterns below
//!
//! [[alerting.interfaces.patterns]]
//! name = "isp-geocell"
//! regex = '(?i)\bgeocell\b'
//! role = "isp_uplink"            # isp_uplink, trunk, access, server_link, other
//! isp_name = "Geocell"           # literal text; $name or ${1} insert a capture group
//! confidence = 0.9               # 0..=1, default 0.9
//! sources = ["alias"]            # alias, name, descr; default ["alias"]
//! ```

use std::collections::HashSet;
use std::fmt;

use netward_shared::proto::v1;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// The `[alerting.interfaces]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InterfacesConfig {
    /// The operator's patterns, tried before the built-in ones. A separate
    /// list, so that adding one pattern does not drop the built-ins.
    pub patterns: Vec<PatternConfig>,
    /// Whether [`builtin_patterns`] follow the operator's patterns.
    pub builtin_patterns: bool,
}

impl Default for InterfacesConfig {
    fn default() -> Self {
        Self {
            patterns: Vec::new(),
            builtin_patterns: true,
        }
    }
}

impl InterfacesConfig {
    /// Every pattern in the order they are tried.
    pub fn effective_patterns(&self) -> Vec<PatternConfig> {
        let mut patterns = self.patterns.clone();
        if self.builtin_patterns {
            patterns.extend(builtin_patterns());
        }
        patterns
    }

    pub fn validate(&self) -> Result<(), InvalidInterfacesConfig> {
        Classifier::new(self).map(drop)
    }
}

/// One classification pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    /// Unique name; a classification says `pattern:<name>`.
    pub name: String,
    /// A regular expression (the `regex` crate's syntax; `(?i)` for any case).
    pub regex: String,
    pub role: Role,
    /// The provider of an ISP uplink: literal text, in which `$name` or
    /// `${1}` insert a capture group (`$$` is a dollar sign).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isp_name: Option<String>,
    /// How sure a match is, 0..=1.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// The labels the pattern is tried on.
    #[serde(default = "default_sources")]
    pub sources: Vec<Source>,
}

fn default_confidence() -> f64 {
    0.9
}

fn default_sources() -> Vec<Source> {
    vec![Source::Alias]
}

/// A role a pattern gives (the proto's `InterfaceRole`, as config text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    IspUplink,
    Trunk,
    Access,
    ServerLink,
    Other,
}

impl From<Role> for v1::InterfaceRole {
    fn from(role: Role) -> Self {
        match role {
            Role::IspUplink => Self::IspUplink,
            Role::Trunk => Self::Trunk,
            Role::Access => Self::Access,
            Role::ServerLink => Self::ServerLink,
            Role::Other => Self::Other,
        }
    }
}

/// An interface label a pattern reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// ifAlias, the operator's description: tried first.
    Alias,
    /// ifName ("Gi0/1", "Po1").
    Name,
    /// ifDescr ("GigabitEthernet0/1").
    Descr,
}

impl Source {
    /// The order labels are read in: the operator's description first.
    const ORDER: [Source; 3] = [Source::Alias, Source::Name, Source::Descr];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alias => "alias",
            Self::Name => "name",
            Self::Descr => "descr",
        }
    }
}

/// The built-in patterns, most specific first. The seed's branch routers
/// have two providers, Magti and Silknet, named in ifAlias ("ISP1 Magti
/// 100M"); a bare "uplink" is more often an ISP than not, unless it says
/// it goes to a switch.
pub fn builtin_patterns() -> Vec<PatternConfig> {
    let pattern =
        |name: &str, regex: &str, role, isp_name: Option<&str>, confidence, sources: &[Source]| {
            PatternConfig {
                name: name.into(),
                regex: regex.into(),
                role,
                isp_name: isp_name.map(Into::into),
                confidence,
                sources: sources.to_vec(),
            }
        };
    use Role::*;
    use Source::*;
    vec![
        pattern(
            "isp-magti",
            r"(?i)\bmagti\b",
            IspUplink,
            Some("Magti"),
            0.95,
            &[Alias],
        ),
        pattern(
            "isp-silknet",
            r"(?i)\bsilknet\b",
            IspUplink,
            Some("Silknet"),
            0.95,
            &[Alias],
        ),
        pattern(
            "trunk-uplink-to-switch",
            r"(?i)\buplink\s+to\s+(?:sw|switch|core|dist|agg|access)",
            Trunk,
            None,
            0.85,
            &[Alias],
        ),
        pattern(
            "isp",
            r"(?i)\b(?:isp|wan|internet)\d*\b",
            IspUplink,
            None,
            0.8,
            &[Alias],
        ),
        pattern(
            "isp-uplink",
            r"(?i)\buplink\b",
            IspUplink,
            None,
            0.5,
            &[Alias],
        ),
        pattern(
            "trunk",
            r"(?i)\btrunk\b|\bpo\d*\b|\bport-?channel|\blag\d*\b",
            Trunk,
            None,
            0.8,
            &[Alias],
        ),
        pattern(
            "server",
            r"(?i)\b(?:srv|server)s?\d*\b",
            ServerLink,
            None,
            0.7,
            &[Alias],
        ),
        pattern(
            "access",
            r"(?i)\b(?:access|users?)\b",
            Access,
            None,
            0.7,
            &[Alias],
        ),
        // Aggregates by their interface name, when the alias says nothing.
        pattern(
            "trunk-aggregate-name",
            r"(?i)^(?:po|port-channel|ae|bond|lag|trk|bridge-aggregation)\s*\d",
            Trunk,
            None,
            0.6,
            &[Name, Descr],
        ),
    ]
}

/// A configuration that cannot be used; names the pattern.
#[derive(Debug, thiserror::Error)]
pub enum InvalidInterfacesConfig {
    #[error("interface pattern {name:?}: invalid regex: {source}")]
    Regex {
        name: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error("interface pattern {name:?}: {reason}")]
    Pattern { name: String, reason: String },
}

fn invalid(name: &str, reason: impl Into<String>) -> InvalidInterfacesConfig {
    InvalidInterfacesConfig::Pattern {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// The labels of one interface, as last read (the poller refreshes them
/// less often than counters: pass the stored ones when a sample has none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Labels<'a> {
    pub if_index: u32,
    pub if_name: &'a str,
    pub if_alias: &'a str,
    pub if_descr: &'a str,
}

impl<'a> Labels<'a> {
    pub fn of(sample: &'a v1::InterfaceSample) -> Self {
        Self {
            if_index: sample.if_index,
            if_name: &sample.if_name,
            if_alias: &sample.if_alias,
            if_descr: &sample.if_descr,
        }
    }

    fn text(&self, source: Source) -> &'a str {
        match source {
            Source::Alias => self.if_alias,
            Source::Name => self.if_name,
            Source::Descr => self.if_descr,
        }
    }
}

/// What decided a classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecidedBy {
    /// An operator's override of the role, from inventory.
    Override,
    /// A pattern matched the label `source`.
    Pattern { name: String, source: Source },
    /// Nothing matched.
    None,
}

impl fmt::Display for DecidedBy {
    /// `override`, `pattern:<name>` or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Override => f.write_str("override"),
            Self::Pattern { name, .. } => write!(f, "pattern:{name}"),
            Self::None => f.write_str("none"),
        }
    }
}

/// The role of one interface.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// `Unspecified` when nothing matched.
    pub role: v1::InterfaceRole,
    /// The provider, for an ISP uplink only.
    pub isp_name: Option<String>,
    /// 0..=1; 1 for an override, 0 when nothing matched.
    pub confidence: f64,
    pub decided_by: DecidedBy,
    /// Whether rules are evaluated on the interface: the override's say,
    /// else whether it is classified at all.
    pub monitored: bool,
}

impl Classification {
    fn unclassified() -> Self {
        Self {
            role: v1::InterfaceRole::Unspecified,
            isp_name: None,
            confidence: 0.0,
            decided_by: DecidedBy::None,
            monitored: false,
        }
    }
}

#[derive(Debug)]
struct Pattern {
    name: String,
    regex: Regex,
    role: Role,
    isp_name: Option<String>,
    confidence: f64,
    sources: Vec<Source>,
}

/// Compiled patterns, built once from the settings.
#[derive(Debug)]
pub struct Classifier {
    patterns: Vec<Pattern>,
}

impl Classifier {
    /// Compiles and checks every pattern; the error names the first bad one.
    pub fn new(config: &InterfacesConfig) -> Result<Self, InvalidInterfacesConfig> {
        let mut names = HashSet::new();
        let patterns = config
            .effective_patterns()
            .into_iter()
            .map(|pattern| {
                if !names.insert(pattern.name.clone()) {
                    return Err(invalid(&pattern.name, "the name is used twice"));
                }
                compile(pattern)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    /// The role of one interface of a device, given the device's overrides
    /// (`Device.interface_overrides`; their `device_id` is not checked).
    pub fn classify(
        &self,
        labels: Labels<'_>,
        overrides: &[v1::InterfaceOverride],
    ) -> Classification {
        let classified = self.by_patterns(labels);
        match find_override(labels, overrides) {
            Some(found) => apply_override(classified, found),
            None => classified,
        }
    }

    /// The first pattern that matches, reading ifAlias with every pattern
    /// before ifName, and ifName before ifDescr.
    fn by_patterns(&self, labels: Labels<'_>) -> Classification {
        for source in Source::ORDER {
            let text = labels.text(source).trim();
            if text.is_empty() {
                continue;
            }
            for pattern in self.patterns.iter().filter(|p| p.sources.contains(&source)) {
                let Some(captures) = pattern.regex.captures(text) else {
                    continue;
                };
                let isp_name = pattern.isp_name.as_ref().and_then(|template| {
                    let mut name = String::new();
                    captures.expand(template, &mut name);
                    let name = name.trim();
                    (!name.is_empty()).then(|| name.to_string())
                });
                return Classification {
                    role: pattern.role.into(),
                    isp_name,
                    confidence: pattern.confidence,
                    decided_by: DecidedBy::Pattern {
                        name: pattern.name.clone(),
                        source,
                    },
                    monitored: true,
                };
            }
        }
        Classification::unclassified()
    }
}

fn compile(config: PatternConfig) -> Result<Pattern, InvalidInterfacesConfig> {
    let name = config.name.as_str();
    if name.trim().is_empty() {
        return Err(invalid(name, "a pattern needs a name"));
    }
    let regex = Regex::new(&config.regex).map_err(|source| InvalidInterfacesConfig::Regex {
        name: name.to_string(),
        source: Box::new(source),
    })?;
    if !(0.0..=1.0).contains(&config.confidence) {
        return Err(invalid(
            name,
            format!("confidence {} is not within 0..=1", config.confidence),
        ));
    }
    if config.sources.is_empty() {
        return Err(invalid(
            name,
            "sources is empty: the pattern would read no label",
        ));
    }
    if let Some(template) = &config.isp_name {
        if config.role != Role::IspUplink {
            return Err(invalid(name, "isp_name is only for role isp_uplink"));
        }
        for group in template_groups(template) {
            let known = match group.parse::<usize>() {
                Ok(index) => index < regex.captures_len(),
                Err(_) => regex.capture_names().flatten().any(|n| n == group),
            };
            if !known {
                return Err(invalid(
                    name,
                    format!("isp_name uses capture group {group:?}, which the regex does not have"),
                ));
            }
        }
    }
    Ok(Pattern {
        regex,
        name: config.name,
        role: config.role,
        isp_name: config.isp_name,
        confidence: config.confidence,
        sources: config.sources,
    })
}

/// The capture groups a `Captures::expand` template refers to: `${group}`,
/// or `$group` with the longest run of letters, digits and `_`; `$$` is a
/// literal dollar. (An unknown group would expand to nothing, silently.)
fn template_groups(template: &str) -> Vec<&str> {
    let mut groups = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            rest = after;
        } else if let Some(braced) = rest.strip_prefix('{') {
            let Some(end) = braced.find('}') else {
                // No closing brace: expand() keeps the text as it is.
                break;
            };
            groups.push(&braced[..end]);
            rest = &braced[end + 1..];
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end > 0 {
                groups.push(&rest[..end]);
            }
            rest = &rest[end..];
        }
    }
    groups
}

/// The override of this interface: by ifIndex, else by ifName (an
/// override by name has `if_index` 0). The ifIndex one wins when both exist:
/// it names the interface exactly as the agent numbers it now.
pub fn find_override<'o>(
    labels: Labels<'_>,
    overrides: &'o [v1::InterfaceOverride],
) -> Option<&'o v1::InterfaceOverride> {
    let by_index = overrides
        .iter()
        .find(|o| o.if_index != 0 && o.if_index == labels.if_index);
    by_index.or_else(|| {
        overrides
            .iter()
            .find(|o| o.if_index == 0 && !labels.if_name.is_empty() && o.if_name == labels.if_name)
    })
}

/// Applies an override as the proto defines it: a role other than
/// UNSPECIFIED replaces the patterns' with confidence 1; a provider name
/// renames the provider of an ISP uplink (it does not make one); `monitored`
/// replaces the default.
fn apply_override(mut classified: Classification, found: &v1::InterfaceOverride) -> Classification {
    let role = found.role();
    if role != v1::InterfaceRole::Unspecified {
        if role != classified.role {
            classified.isp_name = None;
        }
        classified.role = role;
        classified.confidence = 1.0;
        classified.decided_by = DecidedBy::Override;
    }
    let isp_name = found.isp_name.trim();
    if !isp_name.is_empty() && classified.role == v1::InterfaceRole::IspUplink {
        classified.isp_name = Some(isp_name.to_string());
    }
    classified.monitored = found
        .monitored
        .unwrap_or(classified.role != v1::InterfaceRole::Unspecified);
    classified
}

#[cfg(test)]
mod tests {
    use super::*;

    use v1::InterfaceRole as R;

    fn builtin() -> Classifier {
        Classifier::new(&InterfacesConfig::default()).unwrap()
    }

    fn alias(text: &str) -> Labels<'_> {
        Labels {
            if_index: 1,
            if_alias: text,
            ..Default::default()
        }
    }

    #[test]
    fn builtin_patterns_classify_by_alias() {
        let classifier = builtin();
        let cases: &[(&str, R, Option<&str>, f64, &str)] = &[
            // The seed's two-provider branch router.
            (
                "ISP1 Magti 100M",
                R::IspUplink,
                Some("Magti"),
                0.95,
                "pattern:isp-magti",
            ),
            (
                "ISP2 Silknet backup",
                R::IspUplink,
                Some("Silknet"),
                0.95,
                "pattern:isp-silknet",
            ),
            (
                "isp2 SILKNET backup",
                R::IspUplink,
                Some("Silknet"),
                0.95,
                "pattern:isp-silknet",
            ),
            (
                "ISP-Magti",
                R::IspUplink,
                Some("Magti"),
                0.95,
                "pattern:isp-magti",
            ),
            ("WAN2", R::IspUplink, None, 0.8, "pattern:isp"),
            ("Internet uplink", R::IspUplink, None, 0.8, "pattern:isp"),
            ("uplink", R::IspUplink, None, 0.5, "pattern:isp-uplink"),
            (
                "Uplink to SW-CORE-01",
                R::Trunk,
                None,
                0.85,
                "pattern:trunk-uplink-to-switch",
            ),
            ("trunk to floor 3", R::Trunk, None, 0.8, "pattern:trunk"),
            ("Po1 to core", R::Trunk, None, 0.8, "pattern:trunk"),
            ("users 2nd floor", R::Access, None, 0.7, "pattern:access"),
            ("access vlan 10", R::Access, None, 0.7, "pattern:access"),
            ("srv-db01", R::ServerLink, None, 0.7, "pattern:server"),
            ("Server rack A", R::ServerLink, None, 0.7, "pattern:server"),
            // Word boundaries: no role from a word that merely contains one.
            ("PoE camera", R::Unspecified, None, 0.0, "none"),
            ("Wanda's desk", R::Unspecified, None, 0.0, "none"),
            ("printer", R::Unspecified, None, 0.0, "none"),
            ("", R::Unspecified, None, 0.0, "none"),
        ];
        for (text, role, isp, confidence, decided) in cases {
            let got = classifier.classify(alias(text), &[]);
            assert_eq!(got.role, *role, "{text:?}");
            assert_eq!(got.isp_name.as_deref(), *isp, "{text:?}");
            assert_eq!(got.confidence, *confidence, "{text:?}");
            assert_eq!(got.decided_by.to_string(), *decided, "{text:?}");
            assert_eq!(got.monitored, *role != R::Unspecified, "{text:?}");
        }
    }

    #[test]
    fn name_and_descr_are_fallbacks() {
        let classifier = builtin();
        let labels = |name: &'static str, alias: &'static str, descr: &'static str| Labels {
            if_index: 7,
            if_name: name,
            if_alias: alias,
            if_descr: descr,
        };
        let cases: &[(Labels<'_>, R, &str, Option<Source>)] = &[
            (
                labels("Po1", "", "Port-channel1"),
                R::Trunk,
                "pattern:trunk-aggregate-name",
                Some(Source::Name),
            ),
            (
                labels("", "", "Port-channel1"),
                R::Trunk,
                "pattern:trunk-aggregate-name",
                Some(Source::Descr),
            ),
            (
                labels("ae0", "  ", ""),
                R::Trunk,
                "pattern:trunk-aggregate-name",
                Some(Source::Name),
            ),
            // The alias wins over the name.
            (
                labels("Po1", "ISP1 Magti", ""),
                R::IspUplink,
                "pattern:isp-magti",
                Some(Source::Alias),
            ),
            (
                labels("Gi0/1", "", "GigabitEthernet0/1"),
                R::Unspecified,
                "none",
                None,
            ),
            // Alias-only patterns do not read names.
            (labels("wan", "", ""), R::Unspecified, "none", None),
        ];
        for (labels, role, decided, source) in cases {
            let got = classifier.classify(*labels, &[]);
            assert_eq!(got.role, *role, "{labels:?}");
            assert_eq!(got.decided_by.to_string(), *decided, "{labels:?}");
            let got_source = match got.decided_by {
                DecidedBy::Pattern { source, .. } => Some(source),
                _ => None,
            };
            assert_eq!(got_source, *source, "{labels:?}");
        }
    }

    fn by_index(
        if_index: u32,
        role: R,
        isp: &str,
        monitored: Option<bool>,
    ) -> v1::InterfaceOverride {
        v1::InterfaceOverride {
            device_id: "d".into(),
            if_index,
            role: role as i32,
            isp_name: isp.into(),
            monitored,
            ..Default::default()
        }
    }

    fn by_name(if_name: &str, role: R) -> v1::InterfaceOverride {
        v1::InterfaceOverride {
            device_id: "d".into(),
            if_name: if_name.into(),
            role: role as i32,
            ..Default::default()
        }
    }

    #[test]
    fn an_override_wins() {
        let classifier = builtin();
        let magti = Labels {
            if_index: 2,
            if_name: "Gi0/0/2",
            if_alias: "ISP1 Magti 100M",
            if_descr: "",
        };
        let printer = Labels {
            if_index: 9,
            if_name: "Gi0/9",
            if_alias: "printer",
            if_descr: "",
        };
        struct Case {
            name: &'static str,
            labels: Labels<'static>,
            overrides: Vec<v1::InterfaceOverride>,
            role: R,
            isp: Option<&'static str>,
            confidence: f64,
            decided: &'static str,
            monitored: bool,
        }
        let cases = [
            Case {
                name: "role by ifIndex",
                labels: printer,
                overrides: vec![by_index(9, R::IspUplink, "Silknet", None)],
                role: R::IspUplink,
                isp: Some("Silknet"),
                confidence: 1.0,
                decided: "override",
                monitored: true,
            },
            Case {
                name: "role by ifName",
                labels: printer,
                overrides: vec![by_name("Gi0/9", R::ServerLink)],
                role: R::ServerLink,
                isp: None,
                confidence: 1.0,
                decided: "override",
                monitored: true,
            },
            Case {
                name: "ifIndex beats ifName",
                labels: printer,
                overrides: vec![
                    by_name("Gi0/9", R::ServerLink),
                    by_index(9, R::Access, "", None),
                ],
                role: R::Access,
                isp: None,
                confidence: 1.0,
                decided: "override",
                monitored: true,
            },
            Case {
                name: "another interface's override does not apply",
                labels: printer,
                overrides: vec![by_index(2, R::Trunk, "", None), by_name("Gi0/1", R::Trunk)],
                role: R::Unspecified,
                isp: None,
                confidence: 0.0,
                decided: "none",
                monitored: false,
            },
            Case {
                name: "a provider name alone renames the provider, keeps the pattern's role",
                labels: magti,
                overrides: vec![by_index(2, R::Unspecified, "Magti Business", None)],
                role: R::IspUplink,
                isp: Some("Magti Business"),
                confidence: 0.95,
                decided: "pattern:isp-magti",
                monitored: true,
            },
            Case {
                name: "a provider name alone does not make an ISP uplink",
                labels: printer,
                overrides: vec![by_index(9, R::Unspecified, "Magti", None)],
                role: R::Unspecified,
                isp: None,
                confidence: 0.0,
                decided: "none",
                monitored: false,
            },
            Case {
                name: "an ISP overridden to a trunk loses its provider",
                labels: magti,
                overrides: vec![by_index(2, R::Trunk, "", None)],
                role: R::Trunk,
                isp: None,
                confidence: 1.0,
                decided: "override",
                monitored: true,
            },
            Case {
                name: "the same role keeps the pattern's provider",
                labels: magti,
                overrides: vec![by_index(2, R::IspUplink, "", None)],
                role: R::IspUplink,
                isp: Some("Magti"),
                confidence: 1.0,
                decided: "override",
                monitored: true,
            },
            Case {
                name: "monitored only",
                labels: magti,
                overrides: vec![by_index(2, R::Unspecified, "", Some(false))],
                role: R::IspUplink,
                isp: Some("Magti"),
                confidence: 0.95,
                decided: "pattern:isp-magti",
                monitored: false,
            },
        ];
        for case in cases {
            let got = classifier.classify(case.labels, &case.overrides);
            assert_eq!(got.role, case.role, "{}", case.name);
            assert_eq!(got.isp_name.as_deref(), case.isp, "{}", case.name);
            assert_eq!(got.confidence, case.confidence, "{}", case.name);
            assert_eq!(got.decided_by.to_string(), case.decided, "{}", case.name);
            assert_eq!(got.monitored, case.monitored, "{}", case.name);
        }
    }

    fn custom(regex: &str, isp_name: Option<&str>) -> PatternConfig {
        PatternConfig {
            name: "custom".into(),
            regex: regex.into(),
            role: Role::IspUplink,
            isp_name: isp_name.map(Into::into),
            confidence: 0.9,
            sources: vec![Source::Alias],
        }
    }

    #[test]
    fn operator_patterns_come_first_and_capture_the_provider() {
        let config = InterfacesConfig {
            patterns: vec![custom(r"(?i)\bisp\d*\s+(?P<isp>[a-z]+)", Some("$isp"))],
            builtin_patterns: true,
        };
        let classifier = Classifier::new(&config).unwrap();
        let got = classifier.classify(alias("ISP3 Beeline 50M"), &[]);
        assert_eq!(got.isp_name.as_deref(), Some("Beeline"));
        assert_eq!(got.decided_by.to_string(), "pattern:custom");
        // Before the built-in Magti pattern, too: the operator's list wins.
        let got = classifier.classify(alias("ISP1 Magti"), &[]);
        assert_eq!(got.isp_name.as_deref(), Some("Magti"));
        assert_eq!(got.decided_by.to_string(), "pattern:custom");
        // The built-ins still follow.
        let got = classifier.classify(alias("trunk"), &[]);
        assert_eq!(got.decided_by.to_string(), "pattern:trunk");

        let only = InterfacesConfig {
            patterns: vec![custom(r"(?i)\bisp\b", Some("${0}"))],
            builtin_patterns: false,
        };
        let classifier = Classifier::new(&only).unwrap();
        assert_eq!(
            classifier.classify(alias("trunk"), &[]).role,
            R::Unspecified
        );
        assert_eq!(
            classifier
                .classify(alias("isp uplink"), &[])
                .isp_name
                .as_deref(),
            Some("isp")
        );
    }

    #[test]
    fn invalid_patterns_are_named() {
        let pattern = |edit: fn(&mut PatternConfig)| {
            let mut pattern = custom(r"(?i)\bisp\b", None);
            edit(&mut pattern);
            InterfacesConfig {
                patterns: vec![pattern],
                builtin_patterns: true,
            }
        };
        let cases: &[(InterfacesConfig, &str)] = &[
            (pattern(|p| p.regex = "(?i)isp(".into()), "invalid regex"),
            (pattern(|p| p.confidence = 1.5), "confidence 1.5"),
            (pattern(|p| p.confidence = f64::NAN), "confidence NaN"),
            (pattern(|p| p.sources.clear()), "sources is empty"),
            (pattern(|p| p.name = " ".into()), "needs a name"),
            (
                pattern(|p| p.isp_name = Some("$provider".into())),
                "\"provider\"",
            ),
            (pattern(|p| p.isp_name = Some("${2}".into())), "\"2\""),
            (
                pattern(|p| {
                    p.role = Role::Trunk;
                    p.isp_name = Some("X".into());
                }),
                "only for role isp_uplink",
            ),
            (pattern(|p| p.name = "isp-magti".into()), "used twice"),
        ];
        for (config, reason) in cases {
            let error = config.validate().unwrap_err().to_string();
            let name = &config.patterns[0].name;
            assert!(error.contains(&format!("{name:?}")), "{error}");
            assert!(error.contains(reason), "{error} lacks {reason}");
        }
        assert!(InterfacesConfig::default().validate().is_ok());
    }

    #[test]
    fn template_groups_follow_expand_syntax() {
        let cases: &[(&str, &[&str])] = &[
            ("Magti", &[]),
            ("$isp", &["isp"]),
            ("${isp}-${1}", &["isp", "1"]),
            ("$1 $$ $name_2!", &["1", "name_2"]),
            ("costs $$5", &[]),
            ("${open", &[]),
            ("$", &[]),
        ];
        for (template, groups) in cases {
            assert_eq!(template_groups(template), *groups, "{template}");
        }
    }

    #[test]
    fn settings_deserialize_from_toml() {
        let path =
            std::env::temp_dir().join(format!("netward-interfaces-{}.toml", std::process::id()));
        let toml = r#"
[alerting.interfaces]
builtin_patterns = false

[[alerting.interfaces.patterns]]
name = "isp-geocell"
regex = '(?i)\bgeocell\b'
role = "isp_uplink"
isp_name = "Geocell"

[[alerting.interfaces.patterns]]
name = "lag"
regex = '^ae\d'
role = "trunk"
confidence = 0.6
sources = ["name", "descr"]
"#;
        std::fs::write(&path, toml).unwrap();
        let loaded =
            netward_shared::config::ConfigLoader::new(netward_shared::config::Target::Alerting)
                .file(&path)
                .load();
        std::fs::remove_file(&path).unwrap();
        let config: InterfacesConfig = loaded
            .unwrap()
            .value("alerting.interfaces")
            .unwrap()
            .unwrap();
        assert!(!config.builtin_patterns);
        assert_eq!(config.patterns.len(), 2);
        assert_eq!(config.patterns[0].confidence, 0.9);
        assert_eq!(config.patterns[0].sources, vec![Source::Alias]);
        assert_eq!(
            config.patterns[1].sources,
            vec![Source::Name, Source::Descr]
        );
        let classifier = Classifier::new(&config).unwrap();
        let got = classifier.classify(alias("GEOCELL fibre"), &[]);
        assert_eq!(
            (got.role, got.isp_name.as_deref()),
            (R::IspUplink, Some("Geocell"))
        );
    }
}
