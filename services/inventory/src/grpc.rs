//! The gRPC adapter: `InventoryService` messages in, domain calls, messages
//! and statuses out. Every domain error becomes a status in [`to_status`].

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use netward_shared::audit::AuditEvent;
use netward_shared::auth::Caller as AuthCaller;
use netward_shared::proto::v1;
use netward_shared::proto::v1::inventory_service_server::InventoryService;
use netward_shared::secret::Secret;
use netward_shared::status::invalid_argument;
use serde_json::json;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::access;
use crate::error::Error;
use crate::service::{Caller, CredentialInput, Inventory, page_token, parse_uuid};
use crate::store::{Key, SiteFilter};

/// Rows one import may carry: bounds the memory an import can take.
const MAX_IMPORT_ROWS: usize = 1_000_000;

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub struct InventoryGrpc {
    inventory: Arc<Inventory>,
    /// Ends long-lived streams (WatchDevices) when the server shuts down.
    shutdown: CancellationToken,
}

impl InventoryGrpc {
    pub fn new(inventory: Arc<Inventory>, shutdown: CancellationToken) -> Self {
        Self {
            inventory,
            shutdown,
        }
    }

    /// Records a change `caller` made (after it succeeded).
    async fn audit(
        &self,
        caller: &AuthCaller,
        action: &str,
        object_kind: &str,
        object_id: impl Into<String>,
        detail: serde_json::Value,
    ) {
        let event = AuditEvent::new(caller, "inventory", action, object_kind, object_id, detail);
        self.inventory.record(event).await;
    }
}

/// The one mapping from domain errors to gRPC statuses.
pub fn to_status(error: Error) -> Status {
    match error {
        Error::InvalidArgument(violations) => invalid_argument(&violations),
        Error::NotFound { .. } => Status::not_found(error.to_string()),
        Error::AlreadyExists { .. } => Status::already_exists(error.to_string()),
        Error::FailedPrecondition(message) => Status::failed_precondition(message),
        Error::Aborted(message) => Status::aborted(message),
        Error::PermissionDenied(message) => Status::permission_denied(message),
        Error::Unavailable(message) => {
            tracing::warn!(%message, "storage unavailable");
            Status::unavailable("storage unavailable, retry later")
        }
        Error::Internal(message) => {
            tracing::error!(%message, "internal error");
            Status::internal("internal error")
        }
    }
}

fn traceparent() -> String {
    netward_shared::trace_context::current().traceparent
}

fn required<T>(field: &str, value: Option<T>) -> Result<T, Status> {
    value.ok_or_else(|| to_status(Error::invalid(field, "", "required")))
}

fn site_key(key: Option<v1::get_site_request::Key>) -> Result<Key, Status> {
    match key {
        Some(v1::get_site_request::Key::Id(id)) => {
            Ok(Key::Id(parse_uuid("id", &id).map_err(to_status)?))
        }
        Some(v1::get_site_request::Key::Name(name)) if !name.is_empty() => Ok(Key::Name(name)),
        _ => Err(to_status(Error::invalid("key", "", "give id or name"))),
    }
}

fn id_or_name(id: Option<String>, name: Option<String>) -> Result<Key, Status> {
    match (id, name) {
        (Some(id), _) => Ok(Key::Id(parse_uuid("id", &id).map_err(to_status)?)),
        (None, Some(name)) if !name.is_empty() => Ok(Key::Name(name)),
        _ => Err(to_status(Error::invalid("key", "", "give id or name"))),
    }
}

/// An interface override's audit object id: `<device id>/<ifIndex or ifName>`.
fn override_id(device_id: &str, if_index: u32, if_name: &str) -> String {
    if if_index > 0 {
        format!("{device_id}/{if_index}")
    } else {
        format!("{device_id}/{if_name}")
    }
}

fn secret(value: Option<String>) -> Option<Secret<String>> {
    value.map(Secret::new)
}

/// A watch event as a scoped watcher sees it; `None` to leave it out.
fn scoped_watch_event(
    scope: &netward_shared::auth::Scope,
    mut event: v1::WatchDevicesResponse,
) -> Option<v1::WatchDevicesResponse> {
    use v1::watch_devices_response::Event;
    match &mut event.event {
        Some(Event::SnapshotChunk(chunk)) => {
            chunk
                .devices
                .retain(|device| access::device_allowed(scope, device));
        }
        Some(Event::Change(change)) => {
            let allowed = change
                .device
                .as_ref()
                .is_some_and(|device| access::device_allowed(scope, device));
            if !allowed {
                return None;
            }
        }
        _ => {}
    }
    Some(event)
}

#[tonic::async_trait]
impl InventoryService for InventoryGrpc {
    async fn create_site(
        &self,
        request: Request<v1::CreateSiteRequest>,
    ) -> Result<Response<v1::CreateSiteResponse>, Status> {
        let caller = AuthCaller::of(&request);
        let site = required("site", request.into_inner().site)?;
        let site = self
            .inventory
            .create_site(site, &caller.scope)
            .await
            .map_err(to_status)?;
        let detail = json!({ "name": site.name, "code": site.code, "region": site.region });
        self.audit(&caller, "CreateSite", "site", &site.id, detail)
            .await;
        Ok(Response::new(v1::CreateSiteResponse { site: Some(site) }))
    }

    async fn get_site(
        &self,
        request: Request<v1::GetSiteRequest>,
    ) -> Result<Response<v1::GetSiteResponse>, Status> {
        let scope = AuthCaller::of(&request).scope;
        let key = site_key(request.into_inner().key)?;
        let site = self
            .inventory
            .get_site(key, &scope)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::GetSiteResponse { site: Some(site) }))
    }

    async fn update_site(
        &self,
        request: Request<v1::UpdateSiteRequest>,
    ) -> Result<Response<v1::UpdateSiteResponse>, Status> {
        let caller = AuthCaller::of(&request);
        let scope = caller.scope.clone();
        let request = request.into_inner();
        let site = required("site", request.site)?;
        let mask = request.update_mask.map(|m| m.paths).unwrap_or_default();
        let site = self
            .inventory
            .update_site(site, &mask, &traceparent(), &scope)
            .await
            .map_err(to_status)?;
        let detail = json!({ "name": site.name, "fields": mask });
        self.audit(&caller, "UpdateSite", "site", &site.id, detail)
            .await;
        Ok(Response::new(v1::UpdateSiteResponse { site: Some(site) }))
    }

    async fn delete_site(
        &self,
        request: Request<v1::DeleteSiteRequest>,
    ) -> Result<Response<v1::DeleteSiteResponse>, Status> {
        let caller = AuthCaller::of(&request);
        let id = request.into_inner().id;
        self.inventory
            .delete_site(&id, &caller.scope)
            .await
            .map_err(to_status)?;
        self.audit(&caller, "DeleteSite", "site", id, json!({}))
            .await;
        Ok(Response::new(v1::DeleteSiteResponse {}))
    }

    async fn list_sites(
        &self,
        request: Request<v1::ListSitesRequest>,
    ) -> Result<Response<v1::ListSitesResponse>, Status> {
        let scope = AuthCaller::of(&request).scope;
        let request = request.into_inner();
        let filter = SiteFilter {
            region: (!request.region.is_empty()).then_some(request.region),
            active: request.active,
            query: (!request.query.is_empty()).then_some(request.query),
            names: None,
        };
        let page = self
            .inventory
            .list_sites(filter, request.page_size, &request.page_token, &scope)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::ListSitesResponse {
            sites: page.items,
            next_page_token: page_token(page.next_after.as_deref()),
            total_count: page.total,
        }))
    }

    async fn list_regions(
        &self,
        request: Request<v1::ListRegionsRequest>,
    ) -> Result<Response<v1::ListRegionsResponse>, Status> {
        let scope = AuthCaller::of(&request).scope;
        let regions = self
            .inventory
            .list_regions(&scope)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::ListRegionsResponse { regions }))
    }

    async fn create_device(
        &self,
        request: Request<v1::CreateDeviceRequest>,
    ) -> Result<Response<v1::CreateDeviceResponse>, Status> {
        let caller = AuthCaller::of(&request);
        let scope = caller.scope.clone();
        let device = required("device", request.into_inner().device)?;
        let device = self
            .inventory
            .create_device(device, &traceparent(), &scope)
            .await
            .map_err(to_status)?;
        let detail = json!({
            "name": device.name,
            "ip_address": device.ip_address,
            "site_id": device.site_id,
        });
        self.audit(&caller, "CreateDevice", "device", &device.id, detail)
            .await;
        Ok(Response::new(v1::CreateDeviceResponse {
            device: Some(device),
        }))
    }

    async fn get_device(
        &self,
        request: Request<v1::GetDeviceRequest>,
    ) -> Result<Response<v1::GetDeviceResponse>, Status> {
        let scope = AuthCaller::of(&request).scope;
        let key = match request.into_inner().key {
            Some(v1::get_device_request::Key::Id(id)) => id_or_name(Some(id), None)?,
            Some(v1::get_device_request::Key::Name(name)) => id_or_name(None, Some(name))?,
            None => id_or_name(None, None)?,
        };
        let device = self
            .inventory
            .get_device(key, &scope)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::GetDeviceResponse {
            device: Some(device),
        }))
    }

    async fn update_device(
        &self,
        request: Request<v1::UpdateDeviceRequest>,
    ) -> Result<Response<v1::UpdateDeviceResponse>, Status> {
        let caller = AuthCaller::of(&request);
        let scope = caller.scope.clone();
        let request = request.into_inner();
        let device = required("device", request.device)?;
        let mask = request.update_mask.map(|m| m.paths).unwrap_or_default();
        let device = self
            .inventory
            .update_device(
                device,
                &mask,
                request.expected_revision,
                &traceparent(),
                &scope,
            )
            .await
            .map_err(to_status)?;
        let detail = json!({
            "name": device.name,
            "fields": mask,
            "revision": device.revision,
        });
        self.audit(&caller, "UpdateDevice", "device", &device.id, detail)
            .await;
        Ok(Response::new(v1::UpdateDeviceResponse {
            device: Some(device),
        }))
    }

    async fn delete_device(
        &self,
        request: Request<v1::DeleteDeviceRequest>,
    ) -> Result<Response<v1::DeleteDeviceResponse>, Status> {
        let caller = AuthCaller::of(&request);
        let id = request.into_inner().id;
        self.inventory
            .delete_device(&id, &traceparent(), &caller.scope)
            .await
            .map_err(to_status)?;
        self.audit(&caller, "DeleteDevice", "device", id, json!({}))
            .await;
        Ok(Response::new(v1::DeleteDeviceResponse {}))
    }

    async fn list_devices(
        &self,
        request: Request<v1::ListDevicesRequest>,
    ) -> Result<Response<v1::ListDevicesResponse>, Status> {
        let scope = AuthCaller::of(&request).scope;
        let request = request.into_inner();
        let page = self
            .inventory
            .list_devices(
                request.filter,
                request.page_size,
                &request.page_token,
                &scope,
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::ListDevicesResponse {
            devices: page.items,
            next_page_token: page_token(page.next_after.as_deref()),
            total_count: page.total,
        }))
    }

    async fn import_devices(
        &self,
        request: Request<Streaming<v1::ImportDevicesRequest>>,
    ) -> Result<Response<v1::ImportDevicesResponse>, Status> {
        use v1::import_devices_request::Item;
        let caller = AuthCaller::of(&request);
        let scope = caller.scope.clone();
        let mut stream = request.into_inner();
        let options = match stream.message().await? {
            Some(v1::ImportDevicesRequest {
                item: Some(Item::Options(options)),
            }) => options,
            _ => {
                return Err(to_status(Error::invalid(
                    "item",
                    "rows",
                    "the first message must carry options",
                )));
            }
        };
        let mut rows = Vec::new();
        while let Some(message) = stream.message().await? {
            match message.item {
                Some(Item::Rows(chunk)) => rows.extend(chunk.rows),
                _ => {
                    return Err(to_status(Error::invalid(
                        "item",
                        "options",
                        "only the first message may carry options",
                    )));
                }
            }
            if rows.len() > MAX_IMPORT_ROWS {
                return Err(to_status(Error::invalid(
                    "rows",
                    rows.len(),
                    format!("at most {MAX_IMPORT_ROWS} rows per import"),
                )));
            }
        }
        tracing::info!(source = %options.source_name, rows = rows.len(), "import received");
        let outcome = self
            .inventory
            .import_devices(
                &rows,
                options.dry_run,
                options.atomic,
                &traceparent(),
                &scope,
            )
            .await
            .map_err(to_status)?;
        let plan = outcome.plan;
        if outcome.applied {
            // One event per import, with its counts (not one per row).
            let detail = json!({
                "source": options.source_name,
                "total_rows": outcome.total_rows,
                "created": plan.created,
                "updated": plan.updated,
                "unchanged": plan.unchanged,
                "failed": plan.failed,
                "sites_created": plan.new_sites.len(),
                "atomic": options.atomic,
                "revision": outcome.revision,
            });
            self.audit(&caller, "ImportDevices", "import", "", detail)
                .await;
        }
        Ok(Response::new(v1::ImportDevicesResponse {
            total_rows: outcome.total_rows,
            created: plan.created,
            updated: plan.updated,
            unchanged: plan.unchanged,
            failed: plan.failed,
            sites_created: plan.new_sites.len() as u64,
            errors: plan.errors,
            errors_truncated: plan.errors_truncated,
            dry_run: options.dry_run,
            atomic: options.atomic,
            applied: outcome.applied,
            revision: outcome.revision,
        }))
    }

    type ExportDevicesStream = ResponseStream<v1::ExportDevicesResponse>;

    async fn export_devices(
        &self,
        request: Request<v1::ExportDevicesRequest>,
    ) -> Result<Response<Self::ExportDevicesStream>, Status> {
        let scope = AuthCaller::of(&request).scope;
        let request = request.into_inner();
        let filter = self
            .inventory
            .device_filter(request.filter.unwrap_or_default(), &scope)
            .await
            .map_err(to_status)?;
        let revision = self.inventory.current_revision().await.map_err(to_status)?;
        let inventory = self.inventory.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::spawn(async move {
            let mut after = None;
            loop {
                let page = match inventory
                    .export_page(&filter, request.chunk_size, after)
                    .await
                {
                    Ok(page) => page,
                    Err(error) => {
                        let _ = tx.send(Err(to_status(error))).await;
                        return;
                    }
                };
                let chunk = v1::ExportDevicesResponse {
                    devices: page.items,
                    revision,
                    total_count: page.total,
                };
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
                match page.next_after {
                    Some(next) => after = Some(next),
                    None => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type WatchDevicesStream = ResponseStream<v1::WatchDevicesResponse>;

    async fn watch_devices(
        &self,
        request: Request<v1::WatchDevicesRequest>,
    ) -> Result<Response<Self::WatchDevicesStream>, Status> {
        let scope = AuthCaller::of(&request).scope;
        let request = request.into_inner();
        let events = self.inventory.watch(
            request.from_revision,
            request.chunk_size,
            self.shutdown.clone(),
        );
        // A scoped watcher sees the devices of its scope only: chunks are
        // filtered, changes of other devices left out.
        let stream = ReceiverStream::new(events)
            .filter_map(move |event| match event {
                Ok(event) if !scope.is_unlimited() => scoped_watch_event(&scope, event).map(Ok),
                other => Some(other),
            })
            .map(|event| event.map_err(to_status));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn create_credential(
        &self,
        request: Request<v1::CreateCredentialRequest>,
    ) -> Result<Response<v1::CreateCredentialResponse>, Status> {
        let caller = AuthCaller::of(&request);
        access::check_credential_write(&caller.scope).map_err(to_status)?;
        let r = request.into_inner();
        // Secrets appear in the audit trail only as whether they are set.
        let detail = json!({
            "name": r.name,
            "version": r.version,
            "username": r.username,
            "community_set": !r.community.is_empty(),
            "auth_key_set": !r.auth_key.is_empty(),
            "priv_key_set": !r.priv_key.is_empty(),
        });
        let input = CredentialInput {
            name: Some(r.name),
            version: Some(r.version),
            community: (!r.community.is_empty()).then(|| Secret::new(r.community)),
            username: Some(r.username),
            auth_protocol: Some(r.auth_protocol),
            auth_key: (!r.auth_key.is_empty()).then(|| Secret::new(r.auth_key)),
            priv_protocol: Some(r.priv_protocol),
            priv_key: (!r.priv_key.is_empty()).then(|| Secret::new(r.priv_key)),
            context_name: Some(r.context_name),
            description: Some(r.description),
        };
        let credential = self
            .inventory
            .create_credential(input)
            .await
            .map_err(to_status)?;
        self.audit(
            &caller,
            "CreateCredential",
            "credential",
            &credential.id,
            detail,
        )
        .await;
        Ok(Response::new(v1::CreateCredentialResponse {
            credential: Some(credential),
        }))
    }

    async fn get_credential(
        &self,
        request: Request<v1::GetCredentialRequest>,
    ) -> Result<Response<v1::GetCredentialResponse>, Status> {
        let key = match request.into_inner().key {
            Some(v1::get_credential_request::Key::Id(id)) => id_or_name(Some(id), None)?,
            Some(v1::get_credential_request::Key::Name(name)) => id_or_name(None, Some(name))?,
            None => id_or_name(None, None)?,
        };
        let credential = self
            .inventory
            .get_credential(key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::GetCredentialResponse {
            credential: Some(credential),
        }))
    }

    async fn update_credential(
        &self,
        request: Request<v1::UpdateCredentialRequest>,
    ) -> Result<Response<v1::UpdateCredentialResponse>, Status> {
        let caller = AuthCaller::of(&request);
        access::check_credential_write(&caller.scope).map_err(to_status)?;
        let r = request.into_inner();
        // Which fields changed; secrets only as changed, never their values.
        let fields: Vec<&str> = [
            ("name", r.name.is_some()),
            ("version", r.version.is_some()),
            ("community", r.community.is_some()),
            ("username", r.username.is_some()),
            ("auth_protocol", r.auth_protocol.is_some()),
            ("auth_key", r.auth_key.is_some()),
            ("priv_protocol", r.priv_protocol.is_some()),
            ("priv_key", r.priv_key.is_some()),
            ("context_name", r.context_name.is_some()),
            ("description", r.description.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, set)| set.then_some(field))
        .collect();
        let detail = json!({ "fields": fields });
        let input = CredentialInput {
            name: r.name,
            version: r.version,
            community: secret(r.community),
            username: r.username,
            auth_protocol: r.auth_protocol,
            auth_key: secret(r.auth_key),
            priv_protocol: r.priv_protocol,
            priv_key: secret(r.priv_key),
            context_name: r.context_name,
            description: r.description,
        };
        let credential = self
            .inventory
            .update_credential(&r.id, input, &traceparent())
            .await
            .map_err(to_status)?;
        let detail = json!({ "name": credential.name, "fields": detail["fields"] });
        self.audit(
            &caller,
            "UpdateCredential",
            "credential",
            &credential.id,
            detail,
        )
        .await;
        Ok(Response::new(v1::UpdateCredentialResponse {
            credential: Some(credential),
        }))
    }

    async fn delete_credential(
        &self,
        request: Request<v1::DeleteCredentialRequest>,
    ) -> Result<Response<v1::DeleteCredentialResponse>, Status> {
        let caller = AuthCaller::of(&request);
        let id = request.into_inner().id;
        access::check_credential_write(&caller.scope).map_err(to_status)?;
        self.inventory
            .delete_credential(&id)
            .await
            .map_err(to_status)?;
        self.audit(&caller, "DeleteCredential", "credential", id, json!({}))
            .await;
        Ok(Response::new(v1::DeleteCredentialResponse {}))
    }

    async fn list_credentials(
        &self,
        request: Request<v1::ListCredentialsRequest>,
    ) -> Result<Response<v1::ListCredentialsResponse>, Status> {
        let r = request.into_inner();
        let page = self
            .inventory
            .list_credentials(&r.query, r.page_size, &r.page_token)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::ListCredentialsResponse {
            credentials: page.items,
            next_page_token: page_token(page.next_after.as_deref()),
        }))
    }

    async fn resolve_credential(
        &self,
        request: Request<v1::ResolveCredentialRequest>,
    ) -> Result<Response<v1::ResolveCredentialResponse>, Status> {
        let caller = Caller {
            loopback: request
                .remote_addr()
                .is_some_and(|addr| addr.ip().is_loopback()),
        };
        let key = match request.into_inner().key {
            Some(v1::resolve_credential_request::Key::Id(id)) => id_or_name(Some(id), None)?,
            Some(v1::resolve_credential_request::Key::Name(name)) => id_or_name(None, Some(name))?,
            None => id_or_name(None, None)?,
        };
        let credential = self
            .inventory
            .resolve_credential(key, caller)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::ResolveCredentialResponse {
            credential: Some(credential),
        }))
    }

    async fn set_interface_override(
        &self,
        request: Request<v1::SetInterfaceOverrideRequest>,
    ) -> Result<Response<v1::SetInterfaceOverrideResponse>, Status> {
        let caller = AuthCaller::of(&request);
        let scope = caller.scope.clone();
        let value = required(
            "interface_override",
            request.into_inner().interface_override,
        )?;
        let value = self
            .inventory
            .set_interface_override(value, &traceparent(), &scope)
            .await
            .map_err(to_status)?;
        let detail = json!({
            "device_id": value.device_id,
            "if_index": value.if_index,
            "if_name": value.if_name,
            "role": value.role,
            "isp_name": value.isp_name,
            "monitored": value.monitored,
        });
        let id = override_id(&value.device_id, value.if_index, &value.if_name);
        self.audit(
            &caller,
            "SetInterfaceOverride",
            "interface_override",
            id,
            detail,
        )
        .await;
        Ok(Response::new(v1::SetInterfaceOverrideResponse {
            interface_override: Some(value),
        }))
    }

    async fn list_interface_overrides(
        &self,
        request: Request<v1::ListInterfaceOverridesRequest>,
    ) -> Result<Response<v1::ListInterfaceOverridesResponse>, Status> {
        let scope = AuthCaller::of(&request).scope;
        let r = request.into_inner();
        let page = self
            .inventory
            .list_interface_overrides(&r.device_id, r.page_size, &r.page_token, &scope)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::ListInterfaceOverridesResponse {
            interface_overrides: page.items,
            next_page_token: page_token(page.next_after.as_deref()),
        }))
    }

    async fn delete_interface_override(
        &self,
        request: Request<v1::DeleteInterfaceOverrideRequest>,
    ) -> Result<Response<v1::DeleteInterfaceOverrideResponse>, Status> {
        let caller = AuthCaller::of(&request);
        let scope = caller.scope.clone();
        let r = request.into_inner();
        self.inventory
            .delete_interface_override(&r.device_id, r.if_index, &r.if_name, &traceparent(), &scope)
            .await
            .map_err(to_status)?;
        let detail =
            json!({ "device_id": r.device_id, "if_index": r.if_index, "if_name": r.if_name });
        let id = override_id(&r.device_id, r.if_index, &r.if_name);
        self.audit(
            &caller,
            "DeleteInterfaceOverride",
            "interface_override",
            id,
            detail,
        )
        .await;
        Ok(Response::new(v1::DeleteInterfaceOverrideResponse {}))
    }

    async fn list_audit_events(
        &self,
        request: Request<v1::ListAuditEventsRequest>,
    ) -> Result<Response<v1::ListAuditEventsResponse>, Status> {
        let response = self
            .inventory
            .list_audit_events(request.get_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(response))
    }
}
