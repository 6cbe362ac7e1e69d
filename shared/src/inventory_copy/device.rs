//! A device as the inventory copy keeps it: what the planner and alerting
//! read of `v1::Device`, at about a third of its memory.
//!
//! A decoded `v1::Device` costs ~1.4 KiB (a dozen `String`s, two hash maps
//! for a handful of tags, output-only fields nobody follows). Here names
//! and addresses are boxed strings, values many devices share (site,
//! region, vendor, model, tag keys and values) are interned `Arc<str>`s,
//! tags and selectors are sorted slices, and rarely set settings are boxed.
//! The description and creation time are not kept; `to_proto` gives them
//! back empty.

use std::collections::HashSet;
use std::sync::Arc;

use crate::proto::v1;

/// Interned strings: one allocation per distinct value.
#[derive(Debug, Default)]
pub struct Interner(HashSet<Arc<str>>);

impl Interner {
    pub fn intern(&mut self, value: &str) -> Arc<str> {
        if let Some(known) = self.0.get(value) {
            return known.clone();
        }
        let value: Arc<str> = Arc::from(value);
        self.0.insert(value.clone());
        value
    }

    /// Forgets values no device holds any more.
    pub fn sweep(&mut self) {
        self.0.retain(|value| Arc::strong_count(value) > 1);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Key-value labels (`tags`, `executor_selector`), sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(Box<[(Arc<str>, Arc<str>)]>);

impl Labels {
    fn of<'a>(
        pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
        interner: &mut Interner,
    ) -> Self {
        let mut pairs: Vec<(Arc<str>, Arc<str>)> = pairs
            .into_iter()
            .map(|(k, v)| (interner.intern(k), interner.intern(v)))
            .collect();
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Self(pairs.into_boxed_slice())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| self.0[i].1.as_ref())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    fn to_map(&self) -> std::collections::HashMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// A device in the inventory copy (field names as in `v1::Device`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CopiedDevice {
    pub id: Box<str>,
    pub name: Box<str>,
    pub ip_address: Box<str>,
    pub site_id: Arc<str>,
    pub site_name: Arc<str>,
    pub site_code: Arc<str>,
    pub region: Arc<str>,
    pub device_type: i32,
    pub vendor: Arc<str>,
    pub model: Arc<str>,
    pub tags: Labels,
    /// `v1::Device.enabled`, unset read as true.
    pub enabled: bool,
    pub parent_device_id: Box<str>,
    pub parent_device_name: Box<str>,
    pub snmp: Option<Box<v1::SnmpSettings>>,
    pub probe_overrides: Option<Box<v1::ProbeOverrides>>,
    pub executor_selector: Labels,
    pub interface_overrides: Box<[v1::InterfaceOverride]>,
    pub updated_at: Option<prost_types::Timestamp>,
    pub revision: u64,
}

impl CopiedDevice {
    /// The copy's form of `device`, shared values interned in `interner`.
    pub fn of(device: v1::Device, interner: &mut Interner) -> Self {
        Self {
            id: device.id.into_boxed_str(),
            name: device.name.into_boxed_str(),
            ip_address: device.ip_address.into_boxed_str(),
            site_id: interner.intern(&device.site_id),
            site_name: interner.intern(&device.site_name),
            site_code: interner.intern(&device.site_code),
            region: interner.intern(&device.region),
            device_type: device.device_type,
            vendor: interner.intern(&device.vendor),
            model: interner.intern(&device.model),
            tags: Labels::of(&device.tags, interner),
            enabled: device.enabled.unwrap_or(true),
            parent_device_id: device.parent_device_id.into_boxed_str(),
            parent_device_name: device.parent_device_name.into_boxed_str(),
            snmp: device.snmp.map(Box::new),
            probe_overrides: device.probe_overrides.map(Box::new),
            executor_selector: Labels::of(&device.executor_selector, interner),
            interface_overrides: device.interface_overrides.into_boxed_slice(),
            updated_at: device.updated_at,
            revision: device.revision,
        }
    }

    /// The device as a message (description and creation time empty).
    pub fn to_proto(&self) -> v1::Device {
        v1::Device {
            id: self.id.to_string(),
            name: self.name.to_string(),
            ip_address: self.ip_address.to_string(),
            site_id: self.site_id.to_string(),
            site_name: self.site_name.to_string(),
            site_code: self.site_code.to_string(),
            region: self.region.to_string(),
            device_type: self.device_type,
            vendor: self.vendor.to_string(),
            model: self.model.to_string(),
            tags: self.tags.to_map(),
            enabled: Some(self.enabled),
            parent_device_id: self.parent_device_id.to_string(),
            parent_device_name: self.parent_device_name.to_string(),
            snmp: self.snmp.as_deref().cloned(),
            probe_overrides: self.probe_overrides.as_deref().cloned(),
            executor_selector: self.executor_selector.to_map(),
            description: String::new(),
            interface_overrides: self.interface_overrides.to_vec(),
            created_at: None,
            updated_at: self.updated_at,
            revision: self.revision,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> v1::Device {
        v1::Device {
            id: "0b6f3c1e-8f0a-4e7e-9d55-1b2c3d4e5f60".into(),
            name: "tbilisi-01-rtr".into(),
            ip_address: "127.0.0.10".into(),
            site_id: "5f0d8a52-3c43-4a43-b0f4-0c7b2a1d9e01".into(),
            site_name: "Tbilisi 01".into(),
            site_code: "TB01".into(),
            region: "east".into(),
            device_type: v1::DeviceType::Router as i32,
            vendor: "Cisco".into(),
            model: "ISR4331".into(),
            tags: [("role", "core-router"), ("env", "lab")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            enabled: Some(true),
            parent_device_id: String::new(),
            parent_device_name: String::new(),
            snmp: Some(v1::SnmpSettings {
                enabled: true,
                ..Default::default()
            }),
            probe_overrides: None,
            executor_selector: [("site".to_string(), "tb01".to_string())].into(),
            description: "the branch router".into(),
            interface_overrides: vec![],
            created_at: Some(prost_types::Timestamp {
                seconds: 1,
                nanos: 0,
            }),
            updated_at: Some(prost_types::Timestamp {
                seconds: 2,
                nanos: 0,
            }),
            revision: 7,
        }
    }

    #[test]
    fn a_copied_device_gives_back_every_field_it_keeps() {
        let mut interner = Interner::default();
        let original = device();
        let copied = CopiedDevice::of(original.clone(), &mut interner);
        let expected = v1::Device {
            description: String::new(),
            created_at: None,
            ..original
        };
        assert_eq!(copied.to_proto(), expected);
        assert_eq!(copied.tags.get("role"), Some("core-router"));
        assert_eq!(copied.tags.get("missing"), None);
        assert_eq!(copied.executor_selector.get("site"), Some("tb01"));
    }

    #[test]
    fn unset_enabled_reads_as_enabled() {
        let mut interner = Interner::default();
        let copied = CopiedDevice::of(
            v1::Device {
                enabled: None,
                ..device()
            },
            &mut interner,
        );
        assert!(copied.enabled);
    }

    #[test]
    fn shared_values_are_one_allocation_and_swept_when_unused() {
        let mut interner = Interner::default();
        let a = CopiedDevice::of(device(), &mut interner);
        let b = CopiedDevice::of(device(), &mut interner);
        assert!(Arc::ptr_eq(&a.site_name, &b.site_name));
        let distinct = interner.len();
        drop((a, b));
        interner.sweep();
        assert!(interner.is_empty(), "{distinct} values kept");
    }
}
