//! One ping cycle as one trace (issue 15): planner, ping executor and
//! alerting run as a cluster of processes of the real binary and export
//! their spans with their real OTLP exporter to a receiver in this test,
//! which checks that the cycle's spans share a trace id and are parented
//! across processes as `docs/architecture.md` describes.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netward_shared::config::Target;
use netward_shared::proto::v1;
use netward_shared::testkit::eventually;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;

/// One exported span, as much of it as the test looks at.
#[derive(Clone, Debug)]
struct Exported {
    service: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    /// Empty for a root span.
    parent_span_id: Vec<u8>,
    name: String,
    cycle_id: Option<i64>,
}

/// An OTLP/gRPC trace receiver keeping every span it is sent.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Exported>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| string(&r.attributes, "service.name"))
                .unwrap_or_default();
            for span in resource_spans
                .scope_spans
                .into_iter()
                .flat_map(|scope| scope.spans)
            {
                spans.push(Exported {
                    service: service.clone(),
                    cycle_id: int(&span.attributes, "cycle_id"),
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id,
                    name: span.name,
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn string(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attribute(attributes, key)? {
        Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key)? {
        Value::IntValue(i) => Some(*i),
        Value::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

impl Receiver {
    /// Serves on a free port of 127.0.0.1; returns the endpoint URL.
    async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        endpoint
    }

    /// Every span of the trace whose `planner.cycle` span is `cycle_id`'s.
    fn cycle_trace(&self, cycle_id: u64) -> Vec<Exported> {
        let spans = self.spans.lock().unwrap();
        let Some(root) = spans
            .iter()
            .find(|s| s.name == "planner.cycle" && s.cycle_id == Some(cycle_id as i64))
        else {
            return Vec::new();
        };
        spans
            .iter()
            .filter(|s| s.trace_id == root.trace_id)
            .cloned()
            .collect()
    }
}

/// The trace as an indented tree (service and span name), for failures and
/// the test's output.
fn tree(spans: &[Exported]) -> String {
    fn children(spans: &[Exported], parent: &[u8], depth: usize, out: &mut String) {
        for span in spans.iter().filter(|s| s.parent_span_id == parent) {
            let _ = writeln!(
                out,
                "{}{} [{}]",
                "  ".repeat(depth),
                span.name,
                span.service
            );
            children(spans, &span.span_id, depth + 1, out);
        }
    }
    let mut out = String::new();
    children(spans, &[], 0, &mut out);
    // Spans whose parent is not in the trace (yet) would not show otherwise.
    for span in spans.iter().filter(|s| {
        !s.parent_span_id.is_empty() && !spans.iter().any(|p| p.span_id == s.parent_span_id)
    }) {
        let _ = writeln!(out, "(orphan) {} [{}]", span.name, span.service);
    }
    out
}

/// The chain the architecture documents, checked on `spans`: the cycle is
/// the root, an assignment its child, the executor's batch a child of the
/// assignment (across the work stream), alerting's ingest a child of the
/// batch (across the ingest stream) and its evaluation a child of the
/// ingest. `Err` names the first missing link.
fn check_chain(spans: &[Exported]) -> Result<(), String> {
    let find = |name: &str, service: &str, parent: Option<&Exported>| {
        spans
            .iter()
            .find(|s| {
                s.name == name
                    && s.service == service
                    && parent.is_none_or(|p| s.parent_span_id == p.span_id)
            })
            .ok_or_else(|| match parent {
                Some(p) => format!("no {name} of {service} under {}", p.name),
                None => format!("no {name} of {service}"),
            })
    };
    let cycle = find("planner.cycle", "netward-planner", None)?;
    if !cycle.parent_span_id.is_empty() {
        return Err("planner.cycle is not a root".into());
    }
    let assign = find("planner.assign", "netward-planner", Some(cycle))?;
    let batch = find(
        "executor.probe_batch",
        "netward-ping-executor",
        Some(assign),
    )?;
    let ingest = find("alerting.ingest", "netward-alerting", Some(batch))?;
    find("alerting.evaluate", "netward-alerting", Some(ingest))?;
    Ok(())
}

#[tokio::test]
async fn one_ping_cycle_is_one_trace_across_planner_executor_and_alerting() {
    if !crate::executor::can_ping() {
        return;
    }
    let receiver = Receiver::default();
    let endpoint = receiver.serve().await;
    let rows = (1..=3)
        .map(|k| v1::ImportRow {
            line: k + 1,
            name: format!("trace-{k}"),
            ip: format!("127.43.0.{k}"),
            site: "trace".into(),
            ..Default::default()
        })
        .collect();
    let mut builder = crate::support::cluster()
        .planner()
        .alerting()
        .ping_executors(1)
        .devices(rows)
        .ping_interval(Duration::from_secs(2))
        .executor_ids(Target::PingExecutor, &["trace-exec"]);
    for target in [Target::Planner, Target::Alerting, Target::PingExecutor] {
        // Spans are exported within 100 ms of ending, not the default 5 s.
        builder = builder
            .set_for(target, "OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .set_for(target, "OTEL_BSP_SCHEDULE_DELAY", "100");
    }
    let cluster = builder.start().await;
    assert_eq!(cluster.imported.as_ref().unwrap().created, 3);

    // The first ping cycle whose batches were all probed and reported.
    let planner_client = cluster.planner_client();
    let cycle = eventually(
        "a ping cycle probed every device",
        Duration::from_secs(30),
        || {
            let mut client = planner_client.clone();
            async move {
                let cycles = client
                    .list_cycles(v1::ListCyclesRequest {
                        kind: v1::ExecutorKind::Ping as i32,
                        page_size: 100,
                        page_token: String::new(),
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .cycles;
                cycles
                    .into_iter()
                    .filter(|c| {
                        c.completed
                            && c.batch_count > 0
                            && c.done_batches == c.batch_count
                            && c.succeeded == 3
                    })
                    .map(|c| c.cycle_id)
                    .min()
            }
        },
    )
    .await;

    // The cycle's spans arrive from three processes, each on its own
    // schedule: wait for the whole chain, then show the trace.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans = receiver.cycle_trace(cycle);
        match check_chain(&spans) {
            Ok(()) => break spans,
            Err(missing) if tokio::time::Instant::now() >= deadline => {
                panic!("cycle {cycle}: {missing}; its trace:\n{}", tree(&spans))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    println!("cycle {cycle}'s trace:\n{}", tree(&spans));

    cluster.stop_all().await;
}
