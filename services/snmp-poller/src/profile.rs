//! Profiles: what to poll, as data. One TOML file per profile (format in
//! PROFILES.md); the built-ins are compiled in from `profiles/`, and a
//! configured directory adds custom ones (a custom profile with a built-in's
//! name replaces it). `auto` picks a profile by sysObjectID prefix.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use crate::snmp::Oid;

/// The profile a target names when the poller should choose.
pub const AUTO: &str = "auto";
/// What `auto` uses when no profile claims the sysObjectID.
pub const FALLBACK: &str = "interfaces";
/// The profile whose scalars sysObjectID comes from under `auto`: read
/// first, or riding with the remembered profile's first walk.
pub const SYSTEM: &str = "system";

const BUILT_IN: [(&str, &str); 9] = [
    ("system.toml", include_str!("../profiles/system.toml")),
    (
        "interfaces.toml",
        include_str!("../profiles/interfaces.toml"),
    ),
    ("host.toml", include_str!("../profiles/host.toml")),
    ("net-snmp.toml", include_str!("../profiles/net-snmp.toml")),
    ("cisco.toml", include_str!("../profiles/cisco.toml")),
    ("juniper.toml", include_str!("../profiles/juniper.toml")),
    ("mikrotik.toml", include_str!("../profiles/mikrotik.toml")),
    ("fortinet.toml", include_str!("../profiles/fortinet.toml")),
    ("hp-aruba.toml", include_str!("../profiles/hp-aruba.toml")),
];

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("profile file {file}: {reason}")]
    Invalid { file: String, reason: String },
    #[error("profiles directory {dir}: {source}")]
    Dir { dir: String, source: std::io::Error },
}

/// A profile file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    match_sys_object_id: Vec<String>,
    #[serde(default)]
    interfaces: bool,
    #[serde(default)]
    scalar: Vec<MetricFile>,
    #[serde(default)]
    column: Vec<MetricFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricFile {
    name: String,
    oid: String,
}

/// One named object: a scalar instance (a non-repeater of the first GETBULK,
/// or read by GET) or a table column (walked by GETBULK, one value per row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub name: String,
    pub oid: Oid,
}

/// A profile with its includes folded in: everything one poll reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub scalars: Vec<Metric>,
    pub columns: Vec<Metric>,
    pub interfaces: bool,
}

/// Every known profile, resolved, and the `auto` matching table.
#[derive(Debug, Clone)]
pub struct Profiles {
    by_name: HashMap<String, Profile>,
    /// (sysObjectID prefix, profile), longest prefix first.
    matches: Vec<(Oid, String)>,
}

impl Profiles {
    /// The built-in profiles only.
    pub fn built_in() -> Result<Self, ProfileError> {
        Self::load(None)
    }

    /// The built-ins plus every `*.toml` in `dir` (when given).
    pub fn load(dir: Option<&Path>) -> Result<Self, ProfileError> {
        let mut files: Vec<(String, String)> = BUILT_IN
            .iter()
            .map(|(file, text)| (format!("built-in {file}"), (*text).to_string()))
            .collect();
        if let Some(dir) = dir {
            let dir_error = |source| ProfileError::Dir {
                dir: dir.display().to_string(),
                source,
            };
            let mut paths: Vec<_> = std::fs::read_dir(dir)
                .map_err(dir_error)?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
                .collect();
            paths.sort();
            for path in paths {
                let text = std::fs::read_to_string(&path).map_err(dir_error)?;
                files.push((path.display().to_string(), text));
            }
        }
        Self::from_files(&files)
    }

    fn from_files(files: &[(String, String)]) -> Result<Self, ProfileError> {
        let mut raw: HashMap<String, (String, ProfileFile)> = HashMap::new();
        for (file, text) in files {
            let invalid = |reason: String| ProfileError::Invalid {
                file: file.clone(),
                reason,
            };
            let parsed: ProfileFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
            if !valid_name(&parsed.name) || parsed.name == AUTO {
                return Err(invalid(format!(
                    "name {:?}: use 1-64 of [a-z0-9._-], not \"auto\"",
                    parsed.name
                )));
            }
            if let Some((earlier, _)) = raw.get(&parsed.name) {
                if !earlier.starts_with("built-in") {
                    return Err(invalid(format!(
                        "profile {:?} is also defined in {earlier}",
                        parsed.name
                    )));
                }
                tracing::info!(profile = %parsed.name, %file, "custom profile replaces the built-in one");
            }
            raw.insert(parsed.name.clone(), (file.clone(), parsed));
        }

        let mut by_name = HashMap::new();
        for name in raw.keys() {
            let mut seen = HashSet::new();
            let profile = resolve(name, &raw, &mut Vec::new(), &mut seen)?;
            by_name.insert(name.clone(), profile);
        }
        let mut matches = Vec::new();
        for (name, (file, parsed)) in &raw {
            for prefix in &parsed.match_sys_object_id {
                let oid = Oid::parse(prefix).map_err(|reason| ProfileError::Invalid {
                    file: file.clone(),
                    reason: format!("match_sys_object_id: {reason}"),
                })?;
                matches.push((oid, name.clone()));
            }
        }
        // Longest prefix first; ties broken by name so the choice is stable.
        matches.sort_by(|a, b| {
            b.0.arcs()
                .len()
                .cmp(&a.0.arcs().len())
                .then_with(|| a.1.cmp(&b.1))
        });
        if !by_name.contains_key(FALLBACK) || !by_name.contains_key(SYSTEM) {
            return Err(ProfileError::Invalid {
                file: "(all)".into(),
                reason: format!("the {SYSTEM:?} and {FALLBACK:?} profiles must exist"),
            });
        }
        Ok(Self { by_name, matches })
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.by_name.get(name)
    }

    /// Profile names, sorted (for error messages and docs).
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The profile `auto` picks for a sysObjectID: the longest matching
    /// prefix, else the fallback.
    pub fn pick(&self, sys_object_id: &Oid) -> &Profile {
        self.matches
            .iter()
            .find(|(prefix, _)| sys_object_id.starts_with(prefix))
            .and_then(|(_, name)| self.by_name.get(name))
            .or_else(|| self.by_name.get(FALLBACK))
            .unwrap_or_else(|| unreachable!("checked at load: the fallback profile exists"))
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Folds `name`'s includes in, depth first, refusing cycles. An object
/// (same OID) named twice keeps its first name.
fn resolve(
    name: &str,
    raw: &HashMap<String, (String, ProfileFile)>,
    stack: &mut Vec<String>,
    seen: &mut HashSet<Oid>,
) -> Result<Profile, ProfileError> {
    let Some((file, parsed)) = raw.get(name) else {
        // Callers check includes; a top-level name always exists.
        return Err(ProfileError::Invalid {
            file: "(all)".into(),
            reason: format!("unknown profile {name:?}"),
        });
    };
    let invalid = |reason: String| ProfileError::Invalid {
        file: file.clone(),
        reason,
    };
    if stack.iter().any(|n| n == name) {
        return Err(invalid(format!(
            "include cycle: {} -> {name}",
            stack.join(" -> ")
        )));
    }
    stack.push(name.to_string());
    let mut profile = Profile {
        name: name.to_string(),
        description: parsed.description.clone(),
        scalars: Vec::new(),
        columns: Vec::new(),
        interfaces: parsed.interfaces,
    };
    for included in &parsed.include {
        if !raw.contains_key(included) {
            return Err(invalid(format!("includes unknown profile {included:?}")));
        }
        let inner = resolve(included, raw, stack, seen)?;
        profile.scalars.extend(inner.scalars);
        profile.columns.extend(inner.columns);
        profile.interfaces |= inner.interfaces;
    }
    for (metrics, into) in [
        (&parsed.scalar, &mut profile.scalars),
        (&parsed.column, &mut profile.columns),
    ] {
        for metric in metrics {
            if metric.name.trim().is_empty() {
                return Err(invalid(format!("object {} has no name", metric.oid)));
            }
            let oid = Oid::parse(&metric.oid)
                .map_err(|reason| invalid(format!("{}: {reason}", metric.name)))?;
            if seen.insert(oid.clone()) {
                into.push(Metric {
                    name: metric.name.clone(),
                    oid,
                });
            }
        }
    }
    stack.pop();
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(text: &str) -> Oid {
        Oid::parse(text).unwrap_or_default()
    }

    #[test]
    fn built_ins_resolve_with_their_includes() {
        let profiles = Profiles::built_in().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            profiles.names(),
            [
                "cisco",
                "fortinet",
                "host",
                "hp-aruba",
                "interfaces",
                "juniper",
                "mikrotik",
                "net-snmp",
                "system"
            ]
        );
        let system = profiles.get("system").map(|p| p.scalars.len());
        assert_eq!(system, Some(4));
        let netsnmp = profiles
            .get("net-snmp")
            .cloned()
            .unwrap_or_else(|| panic!("net-snmp"));
        assert!(netsnmp.interfaces);
        assert_eq!(netsnmp.scalars.len(), 4, "system's scalars, once");
        assert!(netsnmp.columns.iter().any(|m| m.name == "hrProcessorLoad"));
        let cisco = profiles
            .get("cisco")
            .cloned()
            .unwrap_or_else(|| panic!("cisco"));
        assert!(cisco.interfaces && cisco.columns.len() == 6);
    }

    #[test]
    fn auto_picks_by_the_longest_enterprise_prefix() {
        let profiles = Profiles::built_in().unwrap_or_else(|e| panic!("{e}"));
        for (sys_object_id, expected) in [
            ("1.3.6.1.4.1.9.1.516", "cisco"),
            ("1.3.6.1.4.1.2636.1.1.1.2.29", "juniper"),
            ("1.3.6.1.4.1.14988.1", "mikrotik"),
            ("1.3.6.1.4.1.12356.101.1.3002", "fortinet"),
            ("1.3.6.1.4.1.11.2.3.7.11.63", "hp-aruba"),
            ("1.3.6.1.4.1.47196.4.1.1.1.5", "hp-aruba"),
            ("1.3.6.1.4.1.8072.3.2.10", "net-snmp"),
            // .90 is not .9: prefixes match whole arcs.
            ("1.3.6.1.4.1.90.1", "interfaces"),
            ("1.3.6.1.4.1.311.1.1.3.1.2", "interfaces"),
        ] {
            assert_eq!(
                profiles.pick(&oid(sys_object_id)).name,
                expected,
                "{sys_object_id}"
            );
        }
    }

    #[test]
    fn custom_profiles_replace_built_ins_and_bad_ones_are_refused() {
        let mut files: Vec<(String, String)> = BUILT_IN
            .iter()
            .map(|(f, t)| (format!("built-in {f}"), (*t).to_string()))
            .collect();
        files.push((
            "custom/acme.toml".into(),
            "name = \"cisco\"\ninclude = [\"system\"]\nmatch_sys_object_id = [\"1.3.6.1.4.1.9\"]\n[[scalar]]\nname = \"acme.cpu\"\noid = \"1.3.6.1.4.1.9.2.1.58.0\"\n".into(),
        ));
        let profiles = Profiles::from_files(&files).unwrap_or_else(|e| panic!("{e}"));
        let cisco = profiles
            .get("cisco")
            .cloned()
            .unwrap_or_else(|| panic!("cisco"));
        assert!(!cisco.interfaces);
        assert_eq!(
            cisco.scalars.last().map(|m| m.name.as_str()),
            Some("acme.cpu")
        );

        for (bad, why) in [
            ("name = \"Bad Name\"", "name"),
            ("name = \"x\"\ninclude = [\"nope\"]", "unknown profile"),
            (
                "name = \"x\"\n[[column]]\nname = \"c\"\noid = \"1.3.x\"",
                "dotted",
            ),
            ("name = \"x\"\ncolour = \"red\"", "unknown field"),
            ("name = \"a\"\ninclude = [\"b\"]", "unknown profile"),
        ] {
            let mut with_bad = files.clone();
            with_bad.push(("custom/bad.toml".into(), bad.into()));
            let error = Profiles::from_files(&with_bad).err().map(|e| e.to_string());
            assert!(
                error
                    .as_deref()
                    .is_some_and(|e| e.contains(why) && e.contains("custom/bad.toml")),
                "{bad:?}: {error:?}"
            );
        }
        let mut cyclic = files.clone();
        cyclic.push((
            "custom/a.toml".into(),
            "name = \"a\"\ninclude = [\"b\"]".into(),
        ));
        cyclic.push((
            "custom/b.toml".into(),
            "name = \"b\"\ninclude = [\"a\"]".into(),
        ));
        let error = Profiles::from_files(&cyclic).err().map(|e| e.to_string());
        assert!(
            error.as_deref().is_some_and(|e| e.contains("cycle")),
            "{error:?}"
        );
    }
}
