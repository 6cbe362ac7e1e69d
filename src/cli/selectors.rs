//! Which devices a rule or a silence covers, as operators write it
//! (`site:tbilisi-01`, `type:atm`, `tag:tier=gold`, `device:atm-17`,
//! `global`), turned into the proto's `Scope` with the inventory's ids, and
//! back into words for the tables.

use std::collections::HashMap;

use anyhow::Context as _;
use netward_shared::client::PeerChannel;
use netward_shared::proto::v1::inventory_service_client::InventoryServiceClient;
use netward_shared::proto::v1::{
    DeviceType, GetDeviceRequest, GetSiteRequest, Scope, ScopeKind, get_device_request,
    get_site_request,
};

use super::credentials::uuid_like;
use super::csv_format::device_type_text;
use super::services::{Service, ServicesArgs};
use super::words::parse_enum;

/// A selection as typed, before its names are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Global,
    Site(String),
    Type(DeviceType),
    Tag(String),
    Device(String),
}

/// `global`, `site:NAME`, `type:TYPE`, `tag:KEY=VALUE` or `device:NAME` (ids work for names).
pub fn parse_selector(text: &str) -> Result<Selector, String> {
    if text == "global" {
        return Ok(Selector::Global);
    }
    let Some((kind, value)) = text.split_once(':').filter(|(_, v)| !v.is_empty()) else {
        return Err(format!(
            "{text:?}: write global, site:NAME, type:TYPE, tag:KEY=VALUE or device:NAME"
        ));
    };
    match kind {
        "site" => Ok(Selector::Site(value.to_string())),
        "type" => parse_type(value).map(Selector::Type),
        "tag" => parse_tag(value).map(Selector::Tag),
        "device" => Ok(Selector::Device(value.to_string())),
        _ => Err(format!(
            "{text:?}: unknown kind {kind:?}: one of site, type, tag, device (or global)"
        )),
    }
}

/// `atm`, `router`, … as the import's type column spells them.
pub fn parse_type(text: &str) -> Result<DeviceType, String> {
    parse_enum(
        "device type",
        text,
        "DEVICE_TYPE_",
        DeviceType::from_str_name,
        DeviceType::as_str_name,
    )
}

/// `key=value`.
pub fn parse_tag(text: &str) -> Result<String, String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() && !value.is_empty() => Ok(text.to_string()),
        _ => Err(format!("tag {text:?}: write KEY=VALUE")),
    }
}

/// Looks names up in the inventory and remembers them, both ways.
pub struct Names<'a> {
    services: &'a ServicesArgs,
    inventory: InventoryServiceClient<PeerChannel>,
    sites: HashMap<String, String>,
    devices: HashMap<String, String>,
}

impl<'a> Names<'a> {
    pub fn new(services: &'a ServicesArgs) -> anyhow::Result<Self> {
        Ok(Self {
            inventory: services.inventory()?,
            services,
            sites: HashMap::new(),
            devices: HashMap::new(),
        })
    }

    /// The proto scope of a selector: site and device names become ids
    /// (an unknown one is an error naming it).
    pub async fn scope(&mut self, selector: &Selector) -> anyhow::Result<Scope> {
        let (kind, value) = match selector {
            Selector::Global => (ScopeKind::Global, String::new()),
            Selector::Site(name) => (ScopeKind::Site, self.site_id(name).await?),
            Selector::Type(device_type) => {
                (ScopeKind::DeviceType, device_type.as_str_name().to_string())
            }
            Selector::Tag(tag) => (ScopeKind::Tag, tag.clone()),
            Selector::Device(name) => (ScopeKind::Device, self.device_id(name).await?),
        };
        Ok(Scope {
            kind: kind as i32,
            value,
        })
    }

    async fn site_id(&mut self, name: &str) -> anyhow::Result<String> {
        let key = if uuid_like(name) {
            get_site_request::Key::Id(name.to_string())
        } else {
            get_site_request::Key::Name(name.to_string())
        };
        let site = self
            .inventory
            .get_site(GetSiteRequest { key: Some(key) })
            .await
            .map_err(|status| {
                self.services
                    .call_failed(Service::Inventory, "GetSite", &status)
            })?
            .into_inner()
            .site
            .context("GetSite answered without the site")?;
        self.sites.insert(site.id.clone(), site.name);
        Ok(site.id)
    }

    async fn device_id(&mut self, name: &str) -> anyhow::Result<String> {
        let key = if uuid_like(name) {
            get_device_request::Key::Id(name.to_string())
        } else {
            get_device_request::Key::Name(name.to_string())
        };
        let device = self
            .inventory
            .get_device(GetDeviceRequest { key: Some(key) })
            .await
            .map_err(|status| {
                self.services
                    .call_failed(Service::Inventory, "GetDevice", &status)
            })?
            .into_inner()
            .device
            .context("GetDevice answered without the device")?;
        self.devices.insert(device.id.clone(), device.name);
        Ok(device.id)
    }

    /// `site:tbilisi-01`, `type:atm`, … for a table; an id the inventory
    /// no longer knows is shown as it is.
    pub async fn describe(&mut self, scope: &Scope) -> String {
        let value = &scope.value;
        match ScopeKind::try_from(scope.kind).unwrap_or(ScopeKind::Unspecified) {
            ScopeKind::Global => "global".into(),
            ScopeKind::Site => {
                if !self.sites.contains_key(value) && self.site_id(value).await.is_err() {
                    return format!("site:{value}");
                }
                format!("site:{}", self.sites[value])
            }
            ScopeKind::Device => {
                if !self.devices.contains_key(value) && self.device_id(value).await.is_err() {
                    return format!("device:{value}");
                }
                format!("device:{}", self.devices[value])
            }
            ScopeKind::DeviceType => format!(
                "type:{}",
                device_type_text(DeviceType::from_str_name(value).unwrap_or_default())
            ),
            ScopeKind::Tag => format!("tag:{value}"),
            ScopeKind::Unspecified => "?".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_read_as_written() {
        assert_eq!(parse_selector("global"), Ok(Selector::Global));
        assert_eq!(
            parse_selector("site:tbilisi-01"),
            Ok(Selector::Site("tbilisi-01".into()))
        );
        assert_eq!(
            parse_selector("type:atm"),
            Ok(Selector::Type(DeviceType::Atm))
        );
        assert_eq!(
            parse_selector("tag:tier=gold"),
            Ok(Selector::Tag("tier=gold".into()))
        );
        assert!(
            parse_selector("tag:tier")
                .unwrap_err()
                .contains("KEY=VALUE")
        );
        assert!(
            parse_selector("region:x")
                .unwrap_err()
                .contains("unknown kind")
        );
        assert!(parse_selector("site:").is_err());
        assert!(parse_selector("type:toaster").unwrap_err().contains("atm"));
    }
}
