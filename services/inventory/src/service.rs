//! The inventory domain: validation, reference resolution, secrets, and the
//! change feed, over an [`InventoryStore`]. No gRPC here (`grpc.rs` adapts);
//! the API's v1 messages serve as the model, because the inventory's API is
//! its model, and a parallel set of structs would only be copied back and forth.

use std::sync::Arc;
use std::time::Duration;

use netward_shared::audit::{self, AuditEvent, AuditQuery};
use netward_shared::auth::Scope;
use netward_shared::proto::v1;
use netward_shared::secret::Secret;
use tokio::sync::watch;
use uuid::Uuid;

use crate::access;
use crate::crypto::SecretBox;
use crate::error::{Error, Result, from_store};
use crate::store::{
    DeviceFilter, DeviceWrite, InventoryStore, Key, Page, PageRequest, SiteFilter, StoredCredential,
};
use crate::validate::{self, Violations, normalize_ip};

/// Page sizes: default and maximum, as the proto documents.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
/// How far up a parent chain a cycle check walks before it gives up.
const MAX_PARENT_DEPTH: usize = 1000;

/// The inventory service.
pub struct Inventory {
    pub(crate) store: Arc<dyn InventoryStore>,
    secrets: Option<SecretBox>,
    /// The newest revision this process committed; watchers wake on it
    /// instead of waiting for their next poll.
    pub(crate) revision_tx: watch::Sender<u64>,
    /// Whether calls must carry the bearer token (then every caller that got
    /// through is trusted with `ResolveCredential`).
    token_configured: bool,
}

/// Who is asking for a credential's secrets.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// The call came from a loopback address.
    pub loopback: bool,
}

impl Inventory {
    /// Refuses to start when secrets are stored but no key is configured:
    /// running on would fail every SNMP assignment later, far from the cause.
    pub async fn new(
        store: Arc<dyn InventoryStore>,
        secret_key: Option<&Secret<String>>,
        token_configured: bool,
    ) -> Result<Self> {
        let secrets = secret_key
            .filter(|k| !k.expose().is_empty())
            .map(SecretBox::from_hex)
            .transpose()
            .map_err(|e| Error::FailedPrecondition(e.to_string()))?;
        if secrets.is_none() {
            let stored = store
                .credentials_with_secrets()
                .await
                .map_err(|e| from_store(e, ""))?;
            if stored > 0 {
                return Err(Error::FailedPrecondition(format!(
                    "{stored} stored SNMP credentials hold secrets but NETWARD_SECRET_KEY is not set; \
                     set it to the key they were written with"
                )));
            }
        }
        let (revision_tx, _) = watch::channel(0);
        Ok(Self {
            store,
            secrets,
            revision_tx,
            token_configured,
        })
    }

    fn committed(&self, revision: u64) {
        self.revision_tx.send_if_modified(|current| {
            let newer = revision > *current;
            if newer {
                *current = revision;
            }
            newer
        });
    }

    // ---- sites ----------------------------------------------------------

    pub async fn create_site(&self, mut site: v1::Site, scope: &Scope) -> Result<v1::Site> {
        site.id = Uuid::new_v4().to_string();
        if !access::site_allowed(scope, &site) {
            return Err(access::outside(
                scope,
                &format!("site {}", site.name),
                &site.region,
            ));
        }
        site.active = Some(site.active.unwrap_or(true));
        let mut v = Violations::default();
        validate::site(&mut v, &site);
        if !v.is_empty() {
            return Err(Error::InvalidArgument(v.0));
        }
        self.store
            .create_site(&site)
            .await
            .map_err(|e| from_store(e, &site.name))
    }

    /// NOT_FOUND for a site outside `scope`, as for one that does not exist.
    pub async fn get_site(&self, key: Key, scope: &Scope) -> Result<v1::Site> {
        self.store
            .get_site(&key)
            .await
            .map_err(|e| from_store(e, ""))?
            .filter(|site| access::site_allowed(scope, site))
            .ok_or_else(|| Error::not_found("site", key_text(&key)))
    }

    /// A site to change: PERMISSION_DENIED outside `scope`.
    async fn site_to_change(&self, id: Uuid, scope: &Scope) -> Result<v1::Site> {
        let site = self.get_site(Key::Id(id), &Scope::default()).await?;
        if !access::site_allowed(scope, &site) {
            return Err(access::outside(
                scope,
                &format!("site {}", site.name),
                &site.region,
            ));
        }
        Ok(site)
    }

    pub async fn update_site(
        &self,
        input: v1::Site,
        mask: &[String],
        traceparent: &str,
        scope: &Scope,
    ) -> Result<v1::Site> {
        let id = parse_uuid("site.id", &input.id)?;
        let mut site = self.site_to_change(id, scope).await?;
        let paths = mask_paths(
            mask,
            &[
                "name",
                "code",
                "region",
                "address",
                "latitude",
                "longitude",
                "active",
            ],
            "update_mask",
        )?;
        for path in paths {
            match path.as_str() {
                "name" => site.name = input.name.clone(),
                "code" => site.code = input.code.clone(),
                "region" => site.region = input.region.clone(),
                "address" => site.address = input.address.clone(),
                "latitude" => site.latitude = input.latitude,
                "longitude" => site.longitude = input.longitude,
                "active" => site.active = Some(input.active.unwrap_or(true)),
                _ => unreachable!("mask_paths only returns allowed paths"),
            }
        }
        if !access::site_allowed(scope, &site) {
            return Err(access::outside(
                scope,
                &format!("site {} as changed", site.name),
                &site.region,
            ));
        }
        let mut v = Violations::default();
        validate::site(&mut v, &site);
        if !v.is_empty() {
            return Err(Error::InvalidArgument(v.0));
        }
        let site = self
            .store
            .update_site(&site, traceparent)
            .await
            .map_err(|e| from_store(e, &site.name))?;
        self.refresh_revision().await;
        Ok(site)
    }

    pub async fn delete_site(&self, id: &str, scope: &Scope) -> Result<()> {
        let id = parse_uuid("id", id)?;
        if !scope.is_unlimited() {
            self.site_to_change(id, scope).await?;
        }
        match self.store.delete_site(id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::not_found("site", id)),
            Err(e) => Err(from_store(e, &id.to_string())),
        }
    }

    pub async fn list_sites(
        &self,
        mut filter: SiteFilter,
        page_size: u32,
        page_token: &str,
        scope: &Scope,
    ) -> Result<Page<v1::Site>> {
        let page = page_request(page_size, page_token)?;
        filter.names = self.site_names_in(scope).await?;
        self.store
            .list_sites(&filter, &page)
            .await
            .map_err(|e| from_store(e, ""))
    }

    /// The names of the sites in `scope`; `None` (no limit) when unlimited.
    async fn site_names_in(&self, scope: &Scope) -> Result<Option<Vec<String>>> {
        if scope.is_unlimited() {
            return Ok(None);
        }
        let sites = self
            .store
            .all_sites()
            .await
            .map_err(|e| from_store(e, ""))?;
        Ok(Some(
            sites
                .into_iter()
                .filter(|site| access::site_allowed(scope, site))
                .map(|site| site.name)
                .collect(),
        ))
    }

    /// Regions with a site in `scope`.
    pub async fn list_regions(&self, scope: &Scope) -> Result<Vec<v1::RegionSummary>> {
        let mut regions = self
            .store
            .list_regions()
            .await
            .map_err(|e| from_store(e, ""))?;
        if !scope.is_unlimited() {
            let sites = self
                .store
                .all_sites()
                .await
                .map_err(|e| from_store(e, ""))?;
            let visible: std::collections::HashSet<String> = sites
                .into_iter()
                .filter(|site| access::site_allowed(scope, site))
                .map(|site| site.region)
                .collect();
            regions.retain(|r| visible.contains(&r.name));
        }
        Ok(regions)
    }

    // ---- devices --------------------------------------------------------

    pub async fn create_device(
        &self,
        mut device: v1::Device,
        traceparent: &str,
        scope: &Scope,
    ) -> Result<v1::Device> {
        device.id = Uuid::new_v4().to_string();
        device.enabled = Some(device.enabled.unwrap_or(true));
        clear_output_only(&mut device);
        self.check_device(&mut device).await?;
        self.check_placement(&device, scope).await?;
        self.write_one(
            DeviceWrite::Create(device.clone()),
            None,
            &device,
            traceparent,
        )
        .await
    }

    /// NOT_FOUND for a device outside `scope`, as for one that does not exist.
    pub async fn get_device(&self, key: Key, scope: &Scope) -> Result<v1::Device> {
        self.store
            .get_device(&key)
            .await
            .map_err(|e| from_store(e, ""))?
            .filter(|device| access::device_allowed(scope, device))
            .ok_or_else(|| Error::not_found("device", key_text(&key)))
    }

    /// A device to change: PERMISSION_DENIED outside `scope`.
    pub async fn device_to_change(&self, id: Uuid, scope: &Scope) -> Result<v1::Device> {
        let device = self.get_device(Key::Id(id), &Scope::default()).await?;
        if !access::device_allowed(scope, &device) {
            return Err(access::outside(
                scope,
                &format!("device {}", device.name),
                &device.region,
            ));
        }
        Ok(device)
    }

    /// A checked device (site resolved to its id) may be written only to a
    /// site in `scope`.
    async fn check_placement(&self, device: &v1::Device, scope: &Scope) -> Result<()> {
        if scope.is_unlimited() {
            return Ok(());
        }
        let site_id = parse_uuid("device.site_id", &device.site_id)?;
        let site = self.get_site(Key::Id(site_id), &Scope::default()).await?;
        if access::site_allowed(scope, &site) {
            Ok(())
        } else {
            Err(access::outside(
                scope,
                &format!("site {} of device {}", site.name, device.name),
                &site.region,
            ))
        }
    }

    pub async fn update_device(
        &self,
        input: v1::Device,
        mask: &[String],
        expected_revision: u64,
        traceparent: &str,
        scope: &Scope,
    ) -> Result<v1::Device> {
        let id = parse_uuid("device.id", &input.id)?;
        let mut device = self.device_to_change(id, scope).await?;
        apply_device_mask(&mut device, &input, mask)?;
        clear_output_only(&mut device);
        self.check_device(&mut device).await?;
        self.check_placement(&device, scope).await?;
        let expected = (expected_revision > 0).then_some((id, expected_revision));
        self.write_one(
            DeviceWrite::Update(device.clone()),
            expected,
            &device,
            traceparent,
        )
        .await
    }

    pub async fn delete_device(&self, id: &str, traceparent: &str, scope: &Scope) -> Result<()> {
        let id = parse_uuid("id", id)?;
        let device = self.device_to_change(id, scope).await?;
        self.write_one(DeviceWrite::Delete(id), None, &device, traceparent)
            .await
            .map(|_| ())
    }

    async fn write_one(
        &self,
        write: DeviceWrite,
        expected: Option<(Uuid, u64)>,
        device: &v1::Device,
        traceparent: &str,
    ) -> Result<v1::Device> {
        let outcome = self
            .store
            .write_devices(&[], std::slice::from_ref(&write), expected, traceparent)
            .await
            .map_err(|e| match from_store(e, &device.name) {
                Error::AlreadyExists {
                    field: "device.ip_address",
                    ..
                } => Error::AlreadyExists {
                    field: "device.ip_address",
                    value: device.ip_address.clone(),
                },
                other => other,
            })?;
        let Some((mut devices, revision)) = outcome else {
            return Err(Error::Aborted(format!(
                "device {} changed since revision {}; read it again and retry",
                device.id,
                expected.map(|(_, r)| r).unwrap_or_default()
            )));
        };
        self.committed(revision);
        devices
            .pop()
            .ok_or_else(|| Error::Internal("the store returned no device".into()))
    }

    pub async fn list_devices(
        &self,
        filter: Option<v1::DeviceFilter>,
        page_size: u32,
        page_token: &str,
        scope: &Scope,
    ) -> Result<Page<v1::Device>> {
        let filter = self
            .device_filter(filter.unwrap_or_default(), scope)
            .await?;
        let page = page_request(page_size, page_token)?;
        self.store
            .list_devices(&filter, &page)
            .await
            .map_err(|e| from_store(e, ""))
    }

    /// Pages of `chunk_size` devices by name, for ExportDevices.
    pub async fn export_page(
        &self,
        filter: &DeviceFilter,
        chunk_size: u32,
        after: Option<String>,
    ) -> Result<Page<v1::Device>> {
        let size = match chunk_size {
            0 => 500,
            n => n.min(5000),
        };
        self.store
            .list_devices(filter, &PageRequest { size, after })
            .await
            .map_err(|e| from_store(e, ""))
    }

    /// The store's filter of `filter`, limited to the sites in `scope`.
    pub async fn device_filter(
        &self,
        filter: v1::DeviceFilter,
        scope: &Scope,
    ) -> Result<DeviceFilter> {
        let mut v = Violations::default();
        let site_id = if !filter.site_id.is_empty() {
            match Uuid::parse_str(&filter.site_id) {
                Ok(id) => Some(id),
                Err(_) => {
                    v.add("filter.site_id", &filter.site_id, "not a UUID");
                    None
                }
            }
        } else if !filter.site_name.is_empty() {
            match self
                .store
                .get_site(&Key::Name(filter.site_name.clone()))
                .await
            {
                Ok(Some(site)) => Uuid::parse_str(&site.id).ok(),
                Ok(None) => return Err(Error::not_found("site", &filter.site_name)),
                Err(e) => return Err(from_store(e, "")),
            }
        } else {
            None
        };
        let parent_id = if filter.parent_device_id.is_empty() {
            None
        } else {
            match Uuid::parse_str(&filter.parent_device_id) {
                Ok(id) => Some(id),
                Err(_) => {
                    v.add(
                        "filter.parent_device_id",
                        &filter.parent_device_id,
                        "not a UUID",
                    );
                    None
                }
            }
        };
        if filter.device_type != 0 {
            v.enum_value::<v1::DeviceType>("filter.device_type", filter.device_type);
        }
        if !v.is_empty() {
            return Err(Error::InvalidArgument(v.0));
        }
        let mut tags: Vec<(String, String)> = filter.tags.into_iter().collect();
        tags.sort();
        Ok(DeviceFilter {
            site_id,
            region: non_empty(filter.region),
            device_type: (filter.device_type != 0).then_some(filter.device_type),
            tags,
            enabled: filter.enabled,
            snmp_enabled: filter.snmp_enabled,
            query: non_empty(filter.query),
            parent_id,
            site_names: self.site_names_in(scope).await?,
        })
    }

    /// Validates a device and resolves its references in place: site,
    /// parent and credential names become ids (and ids are checked to exist).
    async fn check_device(&self, device: &mut v1::Device) -> Result<()> {
        let mut v = Violations::default();
        validate::device(&mut v, device);
        if let Some(ip) = normalize_ip(&device.ip_address) {
            device.ip_address = ip;
        }
        if device.device_type == 0 {
            device.device_type = v1::DeviceType::Other as i32;
        }

        // Site.
        let site_key = reference(&mut v, "device.site", &device.site_id, &device.site_name);
        if device.site_id.is_empty() && device.site_name.is_empty() {
            v.add("device.site_id", "", "required (give site_id or site_name)");
        }
        if let Some(key) = site_key {
            match self
                .store
                .get_site(&key)
                .await
                .map_err(|e| from_store(e, ""))?
            {
                Some(site) => {
                    device.site_id = site.id;
                    device.site_name = site.name;
                }
                None => v.add(
                    key_field("device.site", &key),
                    key_text(&key),
                    "unknown site",
                ),
            }
        }

        // Parent: must exist, must not be the device itself or below it.
        let parent_key = reference(
            &mut v,
            "device.parent_device",
            &device.parent_device_id,
            &device.parent_device_name,
        );
        let mut parent_id = None;
        if let Some(key) = parent_key {
            match self
                .store
                .get_device(&key)
                .await
                .map_err(|e| from_store(e, ""))?
            {
                Some(parent) if parent.id == device.id => {
                    v.add(
                        key_field("device.parent_device", &key),
                        key_text(&key),
                        "a device cannot be its own parent",
                    );
                }
                Some(parent) => {
                    device.parent_device_id = parent.id.clone();
                    device.parent_device_name = parent.name.clone();
                    parent_id = Uuid::parse_str(&parent.id).ok();
                }
                None => v.add(
                    key_field("device.parent_device", &key),
                    key_text(&key),
                    "unknown parent device",
                ),
            }
        } else {
            device.parent_device_id.clear();
            device.parent_device_name.clear();
        }

        // SNMP credential: required when SNMP is enabled; versions must agree.
        if let Some(snmp) = device.snmp.as_mut() {
            let credential_key = reference(
                &mut v,
                "device.snmp.credential",
                &snmp.credential_id,
                &snmp.credential_name,
            );
            if snmp.enabled && snmp.credential_id.is_empty() && snmp.credential_name.is_empty() {
                v.add(
                    "device.snmp.credential_id",
                    "",
                    "required when SNMP is enabled",
                );
            }
            if let Some(key) = credential_key {
                match self
                    .store
                    .get_credential(&key)
                    .await
                    .map_err(|e| from_store(e, ""))?
                {
                    Some(stored) => {
                        let credential = stored.credential;
                        if snmp.version == 0 {
                            snmp.version = credential.version;
                        } else if snmp.version != credential.version {
                            v.add(
                                "device.snmp.version",
                                version_name(snmp.version),
                                format!(
                                    "credential {:?} is for {}",
                                    credential.name,
                                    version_name(credential.version)
                                ),
                            );
                        }
                        snmp.credential_id = credential.id;
                        snmp.credential_name = credential.name;
                    }
                    None => v.add(
                        key_field("device.snmp.credential", &key),
                        key_text(&key),
                        "unknown credential",
                    ),
                }
            }
            if snmp.profile.is_empty() {
                snmp.profile = "auto".into();
            }
        }
        if !v.is_empty() {
            return Err(Error::InvalidArgument(v.0));
        }

        if let (Some(parent_id), Ok(own_id)) = (parent_id, Uuid::parse_str(&device.id)) {
            self.check_no_cycle(own_id, parent_id).await?;
        }
        Ok(())
    }

    /// Walks up from `parent_id`; meeting `device_id` means a cycle.
    async fn check_no_cycle(&self, device_id: Uuid, parent_id: Uuid) -> Result<()> {
        let mut chain = Vec::new();
        let mut next = Some(parent_id);
        while let Some(id) = next {
            if id == device_id {
                chain.push(device_id.to_string());
                return Err(Error::FailedPrecondition(format!(
                    "parent cycle: the new parent is below this device ({})",
                    chain.join(" -> ")
                )));
            }
            if chain.len() >= MAX_PARENT_DEPTH {
                return Err(Error::FailedPrecondition(
                    "parent chain is deeper than 1000 devices".into(),
                ));
            }
            let Some(device) = self
                .store
                .get_device(&Key::Id(id))
                .await
                .map_err(|e| from_store(e, ""))?
            else {
                break;
            };
            chain.push(device.name.clone());
            next = Uuid::parse_str(&device.parent_device_id).ok();
        }
        Ok(())
    }

    // ---- credentials ----------------------------------------------------

    fn sealer(&self) -> Result<&SecretBox> {
        self.secrets.as_ref().ok_or_else(|| {
            Error::FailedPrecondition(
                "cannot store SNMP secrets: NETWARD_SECRET_KEY is not set on the inventory".into(),
            )
        })
    }

    pub async fn create_credential(&self, input: CredentialInput) -> Result<v1::SnmpCredential> {
        let id = Uuid::new_v4();
        let mut stored = StoredCredential {
            credential: v1::SnmpCredential {
                id: id.to_string(),
                name: input.name.unwrap_or_default(),
                version: input.version.unwrap_or_default(),
                username: input.username.unwrap_or_default(),
                auth_protocol: input.auth_protocol.unwrap_or_default(),
                priv_protocol: input.priv_protocol.unwrap_or_default(),
                context_name: input.context_name.unwrap_or_default(),
                description: input.description.unwrap_or_default(),
                ..Default::default()
            },
            ..Default::default()
        };
        normalize_protocols(&mut stored.credential);
        let secrets = SecretsInput {
            community: input.community,
            auth_key: input.auth_key,
            priv_key: input.priv_key,
        };
        self.check_credential(&stored, &secrets, true)?;
        self.seal_secrets(id, &mut stored, secrets)?;
        self.store
            .create_credential(&stored)
            .await
            .map(|s| s.credential)
            .map_err(|e| from_store(e, &stored.credential.name))
    }

    pub async fn get_credential(&self, key: Key) -> Result<v1::SnmpCredential> {
        Ok(self.stored_credential(&key).await?.credential)
    }

    async fn stored_credential(&self, key: &Key) -> Result<StoredCredential> {
        self.store
            .get_credential(key)
            .await
            .map_err(|e| from_store(e, ""))?
            .ok_or_else(|| Error::not_found("credential", key_text(key)))
    }

    pub async fn update_credential(
        &self,
        id: &str,
        input: CredentialInput,
        traceparent: &str,
    ) -> Result<v1::SnmpCredential> {
        let id = parse_uuid("id", id)?;
        let mut stored = self.stored_credential(&Key::Id(id)).await?;
        let c = &mut stored.credential;
        let version_changed = input.version.is_some_and(|v| v != c.version);
        if let Some(name) = input.name {
            c.name = name;
        }
        if let Some(version) = input.version {
            c.version = version;
        }
        if let Some(username) = input.username {
            c.username = username;
        }
        if let Some(auth) = input.auth_protocol {
            c.auth_protocol = auth;
        }
        if let Some(privacy) = input.priv_protocol {
            c.priv_protocol = privacy;
        }
        if let Some(context) = input.context_name {
            c.context_name = context;
        }
        if let Some(description) = input.description {
            c.description = description;
        }
        normalize_protocols(c);
        // Secrets that no longer fit the version or protocols are dropped.
        let v3 = c.version == v1::SnmpVersion::V3 as i32;
        if v3 {
            stored.community = None;
        } else {
            stored.auth_key = None;
            stored.priv_key = None;
        }
        if stored.credential.auth_protocol == v1::SnmpAuthProtocol::None as i32 {
            stored.auth_key = None;
        }
        if stored.credential.priv_protocol == v1::SnmpPrivProtocol::None as i32 {
            stored.priv_key = None;
        }
        let secrets = SecretsInput {
            community: input.community,
            auth_key: input.auth_key,
            priv_key: input.priv_key,
        };
        self.check_credential(&stored, &secrets, version_changed)?;
        self.seal_secrets(id, &mut stored, secrets)?;
        let updated = self
            .store
            .update_credential(&stored, traceparent)
            .await
            .map_err(|e| from_store(e, &stored.credential.name))?;
        self.refresh_revision().await;
        Ok(updated.credential)
    }

    pub async fn delete_credential(&self, id: &str) -> Result<()> {
        let id = parse_uuid("id", id)?;
        match self.store.delete_credential(id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::not_found("credential", id)),
            Err(e) => Err(from_store(e, &id.to_string())),
        }
    }

    pub async fn list_credentials(
        &self,
        query: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<v1::SnmpCredential>> {
        let page = page_request(page_size, page_token)?;
        let listed = self
            .store
            .list_credentials((!query.is_empty()).then_some(query), &page)
            .await
            .map_err(|e| from_store(e, ""))?;
        Ok(Page {
            items: listed.items.into_iter().map(|s| s.credential).collect(),
            next_after: listed.next_after,
            total: listed.total,
        })
    }

    /// The credential with its secrets, for the planner building SNMP
    /// assignments. Only for callers that proved the token, or, when no token
    /// is configured, callers on the same host.
    pub async fn resolve_credential(
        &self,
        key: Key,
        caller: Caller,
    ) -> Result<v1::ResolvedCredential> {
        if !self.token_configured && !caller.loopback {
            return Err(Error::PermissionDenied(
                "ResolveCredential needs a configured token (NETWARD_TOKEN) unless called from this host".into(),
            ));
        }
        let stored = self.stored_credential(&key).await?;
        let id = parse_uuid("id", &stored.credential.id)?;
        let open = |field: &str, sealed: &Option<Vec<u8>>| -> Result<String> {
            match sealed {
                None => Ok(String::new()),
                Some(sealed) => {
                    let sealer = self.sealer()?;
                    sealer
                        .open(id, field, sealed)
                        .map(|s| s.expose().clone())
                        .map_err(|e| Error::FailedPrecondition(e.to_string()))
                }
            }
        };
        let c = &stored.credential;
        Ok(v1::ResolvedCredential {
            id: c.id.clone(),
            name: c.name.clone(),
            version: c.version,
            community: open("community", &stored.community)?,
            username: c.username.clone(),
            auth_protocol: c.auth_protocol,
            auth_key: open("auth_key", &stored.auth_key)?,
            priv_protocol: c.priv_protocol,
            priv_key: open("priv_key", &stored.priv_key)?,
            context_name: c.context_name.clone(),
            updated_at: c.updated_at,
        })
    }

    /// Checks a credential after an edit. `secrets` are the new plaintexts;
    /// what is already stored counts as set.
    fn check_credential(
        &self,
        stored: &StoredCredential,
        secrets: &SecretsInput,
        fresh: bool,
    ) -> Result<()> {
        let c = &stored.credential;
        let mut v = Violations::default();
        v.name("name", &c.name, 128);
        v.text("description", &c.description, 1024);
        v.text("context_name", &c.context_name, 64);
        let version = v1::SnmpVersion::try_from(c.version).ok();
        let has = |new: &Option<Secret<String>>, old: &Option<Vec<u8>>| {
            new.as_ref()
                .map(|s| !s.expose().is_empty())
                .unwrap_or(old.is_some())
        };
        match version {
            Some(v1::SnmpVersion::V1 | v1::SnmpVersion::V2c) => {
                if !has(&secrets.community, &stored.community)
                    && (fresh || secrets.community.is_some())
                {
                    v.add("community", "[redacted]", "required for SNMP v1/v2c");
                }
                if let Some(community) = &secrets.community
                    && community.expose().chars().count() > 256
                {
                    v.add("community", "[redacted]", "at most 256 characters");
                }
                if !c.username.is_empty()
                    || secrets.auth_key.is_some()
                    || secrets.priv_key.is_some()
                {
                    v.add(
                        "username",
                        &c.username,
                        "v1/v2c credentials have no user or keys",
                    );
                }
            }
            Some(v1::SnmpVersion::V3) => {
                if c.username.is_empty() || c.username.chars().count() > 32 {
                    v.add(
                        "username",
                        &c.username,
                        "required for SNMP v3, 1-32 characters",
                    );
                }
                if secrets.community.is_some() {
                    v.add(
                        "community",
                        "[redacted]",
                        "v3 credentials have no community",
                    );
                }
                v.enum_value::<v1::SnmpAuthProtocol>("auth_protocol", c.auth_protocol);
                v.enum_value::<v1::SnmpPrivProtocol>("priv_protocol", c.priv_protocol);
                let auth = c.auth_protocol != v1::SnmpAuthProtocol::None as i32;
                let privacy = c.priv_protocol != v1::SnmpPrivProtocol::None as i32;
                if privacy && !auth {
                    v.add(
                        "priv_protocol",
                        c.priv_protocol,
                        "privacy requires an authentication protocol",
                    );
                }
                for (field, wanted, new, old) in [
                    ("auth_key", auth, &secrets.auth_key, &stored.auth_key),
                    ("priv_key", privacy, &secrets.priv_key, &stored.priv_key),
                ] {
                    if wanted && !has(new, old) {
                        v.add(field, "[redacted]", "required by the chosen protocol");
                    }
                    if !wanted && new.as_ref().is_some_and(|s| !s.expose().is_empty()) {
                        v.add(field, "[redacted]", "set, but its protocol is NONE");
                    }
                    if let Some(key) = new
                        && !key.expose().is_empty()
                        && !(8..=256).contains(&key.expose().chars().count())
                    {
                        v.add(field, "[redacted]", "8-256 characters (RFC 3414)");
                    }
                }
            }
            _ => v.add(
                "version",
                c.version,
                "required: SNMP_VERSION_V1, _V2C or _V3",
            ),
        }
        if v.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(v.0))
        }
    }

    fn seal_secrets(
        &self,
        id: Uuid,
        stored: &mut StoredCredential,
        secrets: SecretsInput,
    ) -> Result<()> {
        for (field, new, slot) in [
            ("community", secrets.community, &mut stored.community),
            ("auth_key", secrets.auth_key, &mut stored.auth_key),
            ("priv_key", secrets.priv_key, &mut stored.priv_key),
        ] {
            if let Some(value) = new {
                *slot = if value.expose().is_empty() {
                    None
                } else {
                    Some(self.sealer()?.seal(id, field, value.expose()))
                };
            }
        }
        Ok(())
    }

    // ---- interface overrides -------------------------------------------

    pub async fn set_interface_override(
        &self,
        mut value: v1::InterfaceOverride,
        traceparent: &str,
        scope: &Scope,
    ) -> Result<v1::InterfaceOverride> {
        let device_id = parse_uuid("interface_override.device_id", &value.device_id)?;
        let mut v = Violations::default();
        if value.if_index == 0 && value.if_name.is_empty() {
            v.add(
                "interface_override.if_index",
                0,
                "give if_index, or if_name with if_index 0",
            );
        }
        if value.if_index != 0 && !value.if_name.is_empty() {
            v.add(
                "interface_override.if_name",
                &value.if_name,
                "give if_index or if_name, not both",
            );
        }
        v.text("interface_override.if_name", &value.if_name, 128);
        v.text("interface_override.isp_name", &value.isp_name, 64);
        v.text("interface_override.comment", &value.comment, 512);
        v.enum_value::<v1::InterfaceRole>("interface_override.role", value.role);
        if !v.is_empty() {
            return Err(Error::InvalidArgument(v.0));
        }
        self.device_to_change(device_id, scope).await?;
        value.device_id = device_id.to_string();
        let stored = self
            .store
            .set_interface_override(&value, traceparent)
            .await
            .map_err(|e| from_store(e, &value.device_id))?;
        self.refresh_revision().await;
        Ok(stored)
    }

    pub async fn list_interface_overrides(
        &self,
        device_id: &str,
        page_size: u32,
        page_token: &str,
        scope: &Scope,
    ) -> Result<Page<v1::InterfaceOverride>> {
        let device_id = if device_id.is_empty() {
            if !scope.is_unlimited() {
                return Err(Error::invalid(
                    "device_id",
                    "",
                    format!("required of a token limited to {scope}"),
                ));
            }
            None
        } else {
            let id = parse_uuid("device_id", device_id)?;
            if !scope.is_unlimited() {
                self.get_device(Key::Id(id), scope).await?;
            }
            Some(id)
        };
        let page = page_request(page_size, page_token)?;
        self.store
            .list_interface_overrides(device_id, &page)
            .await
            .map_err(|e| from_store(e, ""))
    }

    pub async fn delete_interface_override(
        &self,
        device_id: &str,
        if_index: u32,
        if_name: &str,
        traceparent: &str,
        scope: &Scope,
    ) -> Result<()> {
        let device_id = parse_uuid("device_id", device_id)?;
        if !scope.is_unlimited() {
            self.device_to_change(device_id, scope).await?;
        }
        match self
            .store
            .delete_interface_override(device_id, if_index, if_name, traceparent)
            .await
        {
            Ok(true) => {
                self.refresh_revision().await;
                Ok(())
            }
            Ok(false) => Err(Error::not_found(
                "interface override",
                format!("{device_id}/{if_index}/{if_name}"),
            )),
            Err(e) => Err(from_store(e, "")),
        }
    }

    /// The newest committed revision.
    pub async fn current_revision(&self) -> Result<u64> {
        let log = self
            .store
            .changes_since(u64::MAX >> 1, 0)
            .await
            .map_err(|e| from_store(e, ""))?;
        Ok(log.current)
    }

    /// Reads the committed revision after a write that did not return it.
    async fn refresh_revision(&self) {
        if let Ok(revision) = self.current_revision().await {
            self.committed(revision);
        }
    }

    /// Drops change-log entries older than `retention`, on a timer, until
    /// the token is cancelled.
    pub async fn prune_loop(
        self: Arc<Self>,
        retention: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let cutoff = chrono::Utc::now()
                - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(7));
            match self.store.prune_changes(cutoff).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "pruned old device changes"),
                Err(error) => tracing::warn!(%error, "pruning device changes failed"),
            }
        }
    }
}

/// Credential fields from a create or update request: `None` = not given.
#[derive(Default)]
pub struct CredentialInput {
    pub name: Option<String>,
    pub version: Option<i32>,
    pub community: Option<Secret<String>>,
    pub username: Option<String>,
    pub auth_protocol: Option<i32>,
    pub auth_key: Option<Secret<String>>,
    pub priv_protocol: Option<i32>,
    pub priv_key: Option<Secret<String>>,
    pub context_name: Option<String>,
    pub description: Option<String>,
}

struct SecretsInput {
    community: Option<Secret<String>>,
    auth_key: Option<Secret<String>>,
    priv_key: Option<Secret<String>>,
}

fn normalize_protocols(c: &mut v1::SnmpCredential) {
    if c.auth_protocol == 0 {
        c.auth_protocol = v1::SnmpAuthProtocol::None as i32;
    }
    if c.priv_protocol == 0 {
        c.priv_protocol = v1::SnmpPrivProtocol::None as i32;
    }
    if c.version != v1::SnmpVersion::V3 as i32 {
        c.auth_protocol = v1::SnmpAuthProtocol::None as i32;
        c.priv_protocol = v1::SnmpPrivProtocol::None as i32;
    }
}

fn version_name(version: i32) -> &'static str {
    v1::SnmpVersion::try_from(version)
        .map(|v| v.as_str_name())
        .unwrap_or("an unknown version")
}

pub fn parse_uuid(field: &str, text: &str) -> Result<Uuid> {
    if text.is_empty() {
        return Err(Error::invalid(field, text, "required"));
    }
    Uuid::parse_str(text).map_err(|_| Error::invalid(field, text, "not a UUID"))
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

fn key_text(key: &Key) -> String {
    match key {
        Key::Id(id) => id.to_string(),
        Key::Name(name) => name.clone(),
    }
}

/// A reference given by id or by name (the id wins): `{prefix}_id` must be
/// a UUID. `None` when neither is given, or the id is not a UUID (then a
/// violation is recorded).
fn reference(v: &mut Violations, prefix: &str, id: &str, name: &str) -> Option<Key> {
    if !id.is_empty() {
        match Uuid::parse_str(id) {
            Ok(id) => Some(Key::Id(id)),
            Err(_) => {
                v.add(format!("{prefix}_id"), id, "not a UUID");
                None
            }
        }
    } else if !name.is_empty() {
        Some(Key::Name(name.to_string()))
    } else {
        None
    }
}

fn key_field(prefix: &str, key: &Key) -> String {
    match key {
        Key::Id(_) => format!("{prefix}_id"),
        Key::Name(_) => format!("{prefix}_name"),
    }
}

fn page_request(page_size: u32, page_token: &str) -> Result<PageRequest> {
    let size = match page_size {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    let after = if page_token.is_empty() {
        None
    } else {
        let bytes = hex::decode(page_token).map_err(|_| {
            Error::invalid("page_token", page_token, "not a token from a previous page")
        })?;
        Some(String::from_utf8(bytes).map_err(|_| {
            Error::invalid("page_token", page_token, "not a token from a previous page")
        })?)
    };
    Ok(PageRequest { size, after })
}

/// The opaque token of the page after `after`.
pub fn page_token(after: Option<&str>) -> String {
    after.map(|a| hex::encode(a.as_bytes())).unwrap_or_default()
}

/// The paths of an update mask, checked against what may change; empty =
/// every allowed path.
fn mask_paths(mask: &[String], allowed: &[&str], field: &str) -> Result<Vec<String>> {
    if mask.is_empty() {
        return Ok(allowed.iter().map(|p| p.to_string()).collect());
    }
    let mut v = Violations::default();
    for path in mask {
        if !allowed.contains(&path.as_str()) {
            v.add(
                format!("{field}.paths"),
                path,
                format!("not a mutable field (one of: {})", allowed.join(", ")),
            );
        }
    }
    if v.is_empty() {
        Ok(mask.to_vec())
    } else {
        Err(Error::InvalidArgument(v.0))
    }
}

const DEVICE_PATHS: &[&str] = &[
    "name",
    "ip_address",
    "site_id",
    "site_name",
    "device_type",
    "vendor",
    "model",
    "tags",
    "enabled",
    "parent_device_id",
    "parent_device_name",
    "snmp",
    "snmp.enabled",
    "snmp.version",
    "snmp.port",
    "snmp.credential_id",
    "snmp.credential_name",
    "snmp.profile",
    "probe_overrides",
    "probe_overrides.count",
    "probe_overrides.timeout_ms",
    "probe_overrides.interval_ms",
    "probe_overrides.retries",
    "executor_selector",
    "description",
];

/// The paths an empty mask means: every mutable field, whole.
const DEVICE_FULL: &[&str] = &[
    "name",
    "ip_address",
    "site_id",
    "site_name",
    "device_type",
    "vendor",
    "model",
    "tags",
    "enabled",
    "parent_device_id",
    "parent_device_name",
    "snmp",
    "probe_overrides",
    "executor_selector",
    "description",
];

fn apply_device_mask(device: &mut v1::Device, input: &v1::Device, mask: &[String]) -> Result<()> {
    let paths = if mask.is_empty() {
        DEVICE_FULL.iter().map(|p| p.to_string()).collect()
    } else {
        mask_paths(mask, DEVICE_PATHS, "update_mask")?
    };
    // A name given for a reference replaces the stored id, and vice versa.
    let has = |p: &str| paths.iter().any(|x| x == p);
    let input_snmp = input.snmp.clone().unwrap_or_default();
    let input_probe = input.probe_overrides.unwrap_or_default();
    for path in &paths {
        match path.as_str() {
            "name" => device.name = input.name.clone(),
            "ip_address" => device.ip_address = input.ip_address.clone(),
            "site_id" => device.site_id = input.site_id.clone(),
            "site_name" => {
                device.site_name = input.site_name.clone();
                if !has("site_id") || input.site_id.is_empty() {
                    device.site_id = input.site_id.clone();
                }
            }
            "device_type" => device.device_type = input.device_type,
            "vendor" => device.vendor = input.vendor.clone(),
            "model" => device.model = input.model.clone(),
            "tags" => device.tags = input.tags.clone(),
            "enabled" => device.enabled = Some(input.enabled.unwrap_or(true)),
            "parent_device_id" => {
                device.parent_device_id = input.parent_device_id.clone();
                if !has("parent_device_name") {
                    device.parent_device_name.clear();
                }
            }
            "parent_device_name" => {
                device.parent_device_name = input.parent_device_name.clone();
                if !has("parent_device_id") || input.parent_device_id.is_empty() {
                    device.parent_device_id = input.parent_device_id.clone();
                }
            }
            "snmp" => device.snmp = input.snmp.clone(),
            "probe_overrides" => device.probe_overrides = input.probe_overrides,
            "executor_selector" => device.executor_selector = input.executor_selector.clone(),
            "description" => device.description = input.description.clone(),
            sub if sub.starts_with("snmp.") => {
                let snmp = device.snmp.get_or_insert_with(Default::default);
                match sub {
                    "snmp.enabled" => snmp.enabled = input_snmp.enabled,
                    "snmp.version" => snmp.version = input_snmp.version,
                    "snmp.port" => snmp.port = input_snmp.port,
                    "snmp.credential_id" => {
                        snmp.credential_id = input_snmp.credential_id.clone();
                        snmp.credential_name.clear();
                    }
                    "snmp.credential_name" => {
                        snmp.credential_name = input_snmp.credential_name.clone();
                        snmp.credential_id.clear();
                    }
                    _ => snmp.profile = input_snmp.profile.clone(),
                }
            }
            sub => {
                let probe = device.probe_overrides.get_or_insert_with(Default::default);
                match sub {
                    "probe_overrides.count" => probe.count = input_probe.count,
                    "probe_overrides.timeout_ms" => probe.timeout_ms = input_probe.timeout_ms,
                    "probe_overrides.interval_ms" => probe.interval_ms = input_probe.interval_ms,
                    _ => probe.retries = input_probe.retries,
                }
            }
        }
    }
    Ok(())
}

fn clear_output_only(device: &mut v1::Device) {
    device.site_code.clear();
    device.region.clear();
    device.interface_overrides.clear();
    device.created_at = None;
    device.updated_at = None;
    device.revision = 0;
}

/// What an import did (or, on a dry run, would do).
#[derive(Debug)]
pub struct ImportOutcome {
    pub total_rows: u64,
    pub plan: crate::import::ImportPlan,
    pub applied: bool,
    pub revision: u64,
}

impl Inventory {
    /// Imports rows (upsert by name). Atomic: any bad row means nothing is
    /// written. Otherwise the good rows are written in one transaction and
    /// each bad row is reported with its line.
    pub async fn import_devices(
        &self,
        rows: &[v1::ImportRow],
        dry_run: bool,
        atomic: bool,
        traceparent: &str,
        scope: &Scope,
    ) -> Result<ImportOutcome> {
        let (revision, devices) = self.store.snapshot().await.map_err(|e| from_store(e, ""))?;
        let sites = self
            .store
            .all_sites()
            .await
            .map_err(|e| from_store(e, ""))?;
        let (in_scope, refused) = if scope.is_unlimited() {
            (std::borrow::Cow::Borrowed(rows), Vec::new())
        } else {
            let (kept, refused) = crate::import::split_by_scope(rows, &sites, &devices, scope);
            (std::borrow::Cow::Owned(kept), refused)
        };
        let rows_total = rows.len() as u64;
        let rows = &*in_scope;
        let mut credentials = std::collections::HashMap::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_credentials(
                    None,
                    &PageRequest {
                        size: MAX_PAGE,
                        after,
                    },
                )
                .await
                .map_err(|e| from_store(e, ""))?;
            for stored in page.items {
                let c = stored.credential;
                credentials.insert(c.name, (c.id, c.version));
            }
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let context = crate::import::ImportContext {
            sites: sites.into_iter().map(|s| (s.name.clone(), s)).collect(),
            credentials,
            devices: devices.into_iter().map(|d| (d.name.clone(), d)).collect(),
        };
        let mut plan = crate::import::plan(rows, &context);
        plan.refuse(refused);
        let refused = atomic && plan.failed > 0;
        let nothing = plan.writes.is_empty() && plan.new_sites.is_empty();
        let write = !(dry_run || refused || nothing);
        let mut outcome = ImportOutcome {
            total_rows: rows_total,
            plan,
            applied: false,
            revision,
        };
        if write {
            let written = self
                .store
                .write_devices(
                    &outcome.plan.new_sites,
                    &outcome.plan.writes,
                    None,
                    traceparent,
                )
                .await
                .map_err(|e| from_store(e, ""))?;
            if let Some((_, revision)) = written {
                outcome.applied = true;
                outcome.revision = revision;
                self.committed(revision);
            }
        }
        metrics::counter!("netward_inventory_import_rows_total", "outcome" => "failed")
            .increment(outcome.plan.failed);
        metrics::counter!("netward_inventory_import_rows_total", "outcome" => "created")
            .increment(outcome.plan.created);
        metrics::counter!("netward_inventory_import_rows_total", "outcome" => "updated")
            .increment(outcome.plan.updated);
        tracing::info!(
            rows = outcome.total_rows,
            created = outcome.plan.created,
            updated = outcome.plan.updated,
            unchanged = outcome.plan.unchanged,
            failed = outcome.plan.failed,
            dry_run,
            atomic,
            applied = outcome.applied,
            "import finished"
        );
        Ok(outcome)
    }
}

/// The audit trail. An event is recorded right after the change it
/// describes succeeded, in a transaction of its own (the store's write
/// methods keep their signatures); a failed record is logged as an error and
/// does not undo or fail the change that already happened.
impl Inventory {
    pub async fn record(&self, event: AuditEvent) {
        if let Err(error) = self.store.record_audit(&event).await {
            tracing::error!(
                %error,
                actor = %event.actor,
                action = %event.action,
                object_id = %event.object_id,
                "audit event not recorded"
            );
        }
    }

    pub async fn list_audit_events(
        &self,
        request: &v1::ListAuditEventsRequest,
    ) -> Result<v1::ListAuditEventsResponse> {
        let query = AuditQuery::from_request(request).map_err(Error::InvalidArgument)?;
        let events = self
            .store
            .list_audit(&query)
            .await
            .map_err(|e| from_store(e, ""))?;
        Ok(audit::response(events, &query))
    }
}
