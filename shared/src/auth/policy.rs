//! The class of every RPC, and which roles may call each class. One table,
//! read by the auth layer for every call: a method missing from it is
//! refused to everyone but admins (and a test checks none is missing).

use super::Role;

/// What an RPC does, as far as permissions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RpcClass {
    /// Health: open to everyone, without a token.
    Open,
    /// Server reflection: the schema, to any authenticated caller.
    Schema,
    /// Reads of state, inventory, alerts, history, cycles.
    Read,
    /// Everyday changes: acks, silences, rules, inventory and credential
    /// writes, probe-now.
    Operate,
    /// Changes of the whole system's behaviour: the planner's policy.
    Administer,
    /// An executor's streams: `Work` (planner) and `Ingest` (alerting).
    Execute,
    /// Service to service only: `ResolveCredential` returns secrets.
    Internal,
}

/// The class of `path` (`/netward.v1.AlertingService/AckAlert`); `None` for
/// a method this table does not know.
pub fn class_of(path: &str) -> Option<RpcClass> {
    let path = path.strip_prefix('/')?;
    let (service, method) = path.split_once('/')?;
    if service == "grpc.health.v1.Health" {
        return Some(RpcClass::Open);
    }
    if service.starts_with("grpc.reflection.") {
        return Some(RpcClass::Schema);
    }
    let service = service.strip_prefix("netward.v1.")?;
    use RpcClass::*;
    let class = match (service, method) {
        ("AlertingService", "Ingest") | ("PlannerService", "Work") => Execute,
        ("InventoryService", "ResolveCredential") => Internal,
        ("PlannerService", "SetPolicy") => Administer,
        // Probe-now sends traffic to a device: an everyday action, not a read.
        ("PlannerService", "ProbeDevice" | "PollDevice") => Operate,
        (
            "AlertingService",
            "AckAlert" | "CreateRule" | "UpdateRule" | "DeleteRule" | "CreateSilence"
            | "DeleteSilence",
        ) => Operate,
        (
            "InventoryService",
            "CreateSite"
            | "UpdateSite"
            | "DeleteSite"
            | "CreateDevice"
            | "UpdateDevice"
            | "DeleteDevice"
            | "ImportDevices"
            | "CreateCredential"
            | "UpdateCredential"
            | "DeleteCredential"
            | "SetInterfaceOverride"
            | "DeleteInterfaceOverride",
        ) => Operate,
        ("ExecutorService", "Probe" | "Poll") => Operate,
        ("AlertingService" | "InventoryService" | "PlannerService" | "ExecutorService", method)
            if ["Get", "List", "Watch", "Export"]
                .iter()
                .any(|verb| method.starts_with(verb)) =>
        {
            Read
        }
        _ => return None,
    };
    Some(class)
}

/// Whether `role` may call RPCs of `class`.
pub fn allowed(role: Role, class: RpcClass) -> bool {
    use RpcClass::*;
    match role {
        Role::Admin => true,
        Role::Operator => matches!(class, Open | Schema | Read | Operate),
        Role::Viewer => matches!(class, Open | Schema | Read),
        Role::Executor => matches!(class, Open | Schema | Execute),
        Role::Service => matches!(class, Open | Schema | Read | Internal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Every RPC of the compiled-in protos has a class.
    #[test]
    fn every_rpc_has_a_class() {
        let set = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set decodes");
        let mut seen = 0;
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                    assert!(class_of(&path).is_some(), "{path} has no class");
                    seen += 1;
                }
            }
        }
        assert!(seen > 50, "only {seen} methods found");
    }

    #[test]
    fn classes_of_representative_methods() {
        for (path, class) in [
            ("/grpc.health.v1.Health/Check", RpcClass::Open),
            (
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                RpcClass::Schema,
            ),
            ("/netward.v1.AlertingService/ListAlerts", RpcClass::Read),
            (
                "/netward.v1.AlertingService/GetAvailabilityReport",
                RpcClass::Read,
            ),
            (
                "/netward.v1.AlertingService/GetStatusSummary",
                RpcClass::Read,
            ),
            ("/netward.v1.AlertingService/AckAlert", RpcClass::Operate),
            ("/netward.v1.AlertingService/Ingest", RpcClass::Execute),
            ("/netward.v1.PlannerService/Work", RpcClass::Execute),
            ("/netward.v1.PlannerService/SetPolicy", RpcClass::Administer),
            ("/netward.v1.PlannerService/ProbeDevice", RpcClass::Operate),
            ("/netward.v1.PlannerService/PollDevice", RpcClass::Operate),
            (
                "/netward.v1.InventoryService/ResolveCredential",
                RpcClass::Internal,
            ),
            ("/netward.v1.InventoryService/ExportDevices", RpcClass::Read),
            (
                "/netward.v1.InventoryService/CreateCredential",
                RpcClass::Operate,
            ),
        ] {
            assert_eq!(class_of(path), Some(class), "{path}");
        }
        assert_eq!(class_of("/netward.v1.AlertingService/Nope"), None);
        assert_eq!(class_of("/other.Service/GetThing"), None);
    }

    #[test]
    fn executors_only_work_and_ingest() {
        assert!(allowed(Role::Executor, RpcClass::Execute));
        assert!(!allowed(Role::Executor, RpcClass::Internal));
        assert!(!allowed(Role::Executor, RpcClass::Read));
        assert!(!allowed(Role::Viewer, RpcClass::Operate));
        assert!(allowed(Role::Operator, RpcClass::Operate));
        assert!(!allowed(Role::Operator, RpcClass::Administer));
        assert!(allowed(Role::Service, RpcClass::Internal));
        assert!(!allowed(Role::Service, RpcClass::Execute));
    }
}
