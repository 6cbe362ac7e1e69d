//! TLS everywhere (issue 16): certificates made here with rcgen (a CA, a
//! certificate for the services on 127.0.0.1/localhost, one for an executor,
//! and an untrusted self-signed one); every target serving TLS to grpcurl and
//! refusing plaintext; the core loop over `https://` with the planner
//! demanding client certificates; the CLI over https; the safe listen
//! default; and the other transports accepting their TLS URLs.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use netward_shared::client::{ClientOptions, connect};
use netward_shared::proto::v1;
use netward_shared::proto::v1::planner_service_client::PlannerServiceClient;
use netward_shared::testkit::{TestDatabase, eventually};
use netward_shared::tls::TlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::process::Command;

use crate::support::{NETWARD, Netward};

/// PEM files of a throwaway PKI in a temporary directory.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn create() -> Pki {
        let dir = std::env::temp_dir().join(format!("netward-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();

        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "netward test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        // Every process serves with its certificate and presents it when it
        // dials: both uses are in it.
        let leaf = |name: &str, issuer: Option<&Issuer<'_, KeyPair>>| {
            let key = KeyPair::generate().unwrap();
            let mut params =
                CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                    .unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = match issuer {
                Some(issuer) => params.signed_by(&key, issuer).unwrap(),
                None => params.self_signed(&key).unwrap(),
            };
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
        };
        leaf("server", Some(&issuer));
        leaf("executor", Some(&issuer));
        leaf("untrusted", None);
        Pki { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    fn ca(&self) -> String {
        self.path("ca.pem")
    }

    /// `--tls-cert … --tls-key … --tls-ca …` for the identity `name`.
    fn flags(&self, name: &str) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.path(&format!("{name}.pem")),
            "--tls-key".into(),
            self.path(&format!("{name}-key.pem")),
            "--tls-ca".into(),
            self.ca(),
        ]
    }

    /// A client's settings: the CA, and `name`'s certificate if given.
    fn client(&self, name: Option<&str>) -> ClientOptions {
        ClientOptions {
            token: None,
            tls: TlsConfig {
                cert: name.map(|n| self.dir.join(format!("{n}.pem"))),
                key: name.map(|n| self.dir.join(format!("{n}-key.pem"))),
                ca: Some(self.dir.join("ca.pem")),
                require_client_cert: false,
            },
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

async fn run(program: &str, args: &[&str]) -> Run {
    let output = Command::new(program)
        .args(args)
        .env_remove("NETWARD_TOKEN")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|error| panic!("run {program}: {error}"));
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// grpcurl over TLS verified against the test CA: `list`, and the health
/// check, succeed; the same in plaintext fails. `client` is the identity
/// grpcurl presents (the planner demands one).
async fn check_grpcurl(pki: &Pki, name: &str, process: &Netward, client: Option<&str>) {
    let addr = process.grpc_addr.to_string();
    let ca = pki.ca();
    let mut tls = vec!["-max-time", "10", "-cacert", &ca];
    let (cert, key) = client
        .map(|c| {
            (
                pki.path(&format!("{c}.pem")),
                pki.path(&format!("{c}-key.pem")),
            )
        })
        .unwrap_or_default();
    if client.is_some() {
        tls.extend(["-cert", &cert, "-key", &key]);
    }
    let list = run("grpcurl", &[&tls[..], &[&addr, "list"]].concat()).await;
    assert!(
        list.success,
        "{name}: grpcurl -cacert list: {}",
        list.stderr
    );
    assert!(
        list.stdout.contains("grpc.health.v1.Health"),
        "{name}: {}",
        list.stdout
    );
    let health = run(
        "grpcurl",
        &[&tls[..], &[&addr, "grpc.health.v1.Health/Check"]].concat(),
    )
    .await;
    assert!(
        health.success && health.stdout.contains("SERVING"),
        "{name}: health over TLS: {}{}",
        health.stdout,
        health.stderr
    );
    let plaintext = run("grpcurl", &["-max-time", "5", "-plaintext", &addr, "list"]).await;
    assert!(
        !plaintext.success,
        "{name}: plaintext grpcurl succeeded against a TLS server: {}",
        plaintext.stdout
    );
    // `netward health` (the container probe) over TLS too, with the
    // client certificate a server demanding one needs.
    let mut probe_args = vec!["health", "--addr", &addr, "--tls-ca", &ca];
    if client.is_some() {
        probe_args.extend(["--tls-cert", &cert, "--tls-key", &key]);
    }
    let probe = run(NETWARD, &probe_args).await;
    assert!(probe.success, "{name}: netward health: {}", probe.stderr);
}

/// The ids of the executors connected to the planner (asked with a client
/// certificate, which the planner demands).
async fn executors(
    planner: &mut PlannerServiceClient<netward_shared::client::PeerChannel>,
) -> Vec<String> {
    planner
        .list_executors(v1::ListExecutorsRequest::default())
        .await
        .map(|r| {
            r.into_inner()
                .executors
                .into_iter()
                .map(|e| e.executor_id)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn every_target_serves_tls_and_the_core_loop_runs_over_it() {
    let pki = Pki::create();
    let server = pki.flags("server");
    let server: Vec<&str> = server.iter().map(String::as_str).collect();
    let ca = pki.ca();

    let database = TestDatabase::create().await.unwrap();
    let db = database.url().to_string();
    let inventory = Netward::start(
        "inventory",
        &[&server[..], &["--database-url", &db]].concat(),
    )
    .await;
    let inventory_url = format!("https://{}", inventory.grpc_addr);
    let serving = inventory.log();
    assert!(serving.contains(r#""tls":true"#), "{serving}");

    // The CLI over https, verified with --tls-ca: one device, 127.0.0.1.
    let csv = pki.dir.join("devices.csv");
    std::fs::write(&csv, "name,ip,site\ntls-loopback,127.0.0.1,tls\n").unwrap();
    let import = run(
        NETWARD,
        &[
            "devices",
            "import",
            csv.to_str().unwrap(),
            "--inventory-url",
            &inventory_url,
            "--tls-ca",
            &ca,
        ],
    )
    .await;
    assert!(import.success, "import over https: {}", import.stderr);
    let listed = run(
        NETWARD,
        &[
            "devices",
            "list",
            "--inventory-url",
            &inventory_url,
            "--tls-ca",
            &ca,
        ],
    )
    .await;
    assert!(
        listed.stdout.contains("tls-loopback"),
        "{}{}",
        listed.stdout,
        listed.stderr
    );
    // Without the CA the inventory's certificate is not trusted.
    let untrusted = run(
        NETWARD,
        &["devices", "list", "--inventory-url", &inventory_url],
    )
    .await;
    assert!(!untrusted.success, "{}", untrusted.stdout);

    // The planner demands client certificates signed by the CA.
    let planner = Netward::start_with_env(
        "planner",
        &[&server[..], &["--inventory-url", &inventory_url]].concat(),
        &[
            ("NETWARD_PLANNER__PING_INTERVAL", "2s"),
            ("NETWARD_PLANNER__SNMP_INTERVAL", "5s"),
            ("NETWARD_TLS__REQUIRE_CLIENT_CERT", "true"),
        ],
    )
    .await;
    assert!(
        planner.log().contains(r#""client_certificates":true"#),
        "{}",
        planner.log()
    );
    let planner_url = format!("https://{}", planner.grpc_addr);
    let alerting = Netward::start(
        "alerting",
        &[
            &server[..],
            &[
                "--database-url",
                &db,
                "--inventory-url",
                &inventory_url,
                "--planner-url",
                &planner_url,
            ],
        ]
        .concat(),
    )
    .await;
    let alerting_url = format!("https://{}", alerting.grpc_addr);
    let peers = [
        "--planner-url",
        planner_url.as_str(),
        "--alerting-url",
        alerting_url.as_str(),
    ];
    let executor_flags = pki.flags("executor");
    let executor_flags: Vec<&str> = executor_flags.iter().map(String::as_str).collect();
    let executor = Netward::start_with_env(
        "ping-executor",
        &[&executor_flags[..], &peers].concat(),
        &[("NETWARD_PING_EXECUTOR__EXECUTOR_ID", "tls-exec")],
    )
    .await;
    let poller = Netward::start_with_env(
        "snmp-poller",
        &[&executor_flags[..], &peers].concat(),
        &[("NETWARD_SNMP_POLLER__EXECUTOR_ID", "tls-poller")],
    )
    .await;

    // Executors refused by the planner: one with no client certificate
    // (it trusts the CA, so it does try), one with a self-signed one.
    let no_cert = Netward::start_with_env(
        "ping-executor",
        &[&["--tls-ca", ca.as_str()][..], &peers].concat(),
        &[("NETWARD_PING_EXECUTOR__EXECUTOR_ID", "no-cert")],
    )
    .await;
    let untrusted_flags = pki.flags("untrusted");
    let untrusted_flags: Vec<&str> = untrusted_flags.iter().map(String::as_str).collect();
    let self_signed = Netward::start_with_env(
        "ping-executor",
        &[&untrusted_flags[..], &peers].concat(),
        &[("NETWARD_PING_EXECUTOR__EXECUTOR_ID", "self-signed")],
    )
    .await;

    for (name, process, client) in [
        ("inventory", &inventory, None),
        ("planner", &planner, Some("executor")),
        ("alerting", &alerting, None),
        ("ping-executor", &executor, None),
        ("snmp-poller", &poller, None),
    ] {
        check_grpcurl(&pki, name, process, client).await;
    }
    // The planner's handshake fails for a client without a certificate.
    let anonymous = run(
        "grpcurl",
        &[
            "-max-time",
            "5",
            "-cacert",
            &ca,
            &planner.grpc_addr.to_string(),
            "list",
        ],
    )
    .await;
    assert!(
        !anonymous.success,
        "planner answered a client without a certificate"
    );

    let mut planner_client =
        PlannerServiceClient::new(connect(&planner_url, &pki.client(Some("executor"))).unwrap());
    eventually(
        "both CA-signed executors registered over mTLS",
        Duration::from_secs(20),
        || {
            let mut client = planner_client.clone();
            async move {
                let ids = executors(&mut client).await;
                (ids.contains(&"tls-exec".to_string()) && ids.contains(&"tls-poller".to_string()))
                    .then_some(())
            }
        },
    )
    .await;

    if crate::executor::can_ping() {
        eventually(
            "a ping cycle probed the device over the TLS loop",
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
                        .find(|c| c.completed && c.succeeded == 1)
                        .map(|c| c.cycle_id)
                }
            },
        )
        .await;
        // Alerting stored the result and judged the device: `netward status`
        // over https shows it UP.
        let status = eventually(
            "alerting holds the device UP",
            Duration::from_secs(20),
            || {
                let (alerting_url, ca) = (alerting_url.clone(), ca.clone());
                async move {
                    let status = run(
                        NETWARD,
                        &[
                            "status",
                            "--json",
                            "--alerting-url",
                            &alerting_url,
                            "--tls-ca",
                            &ca,
                        ],
                    )
                    .await;
                    let json: serde_json::Value =
                        serde_json::from_str(status.stdout.trim()).ok()?;
                    (json["counts"]["up"] == 1).then_some(json)
                }
            },
        )
        .await;
        println!("status over https: {status}");
    }

    let ids = executors(&mut planner_client).await;
    assert!(
        !ids.iter().any(|id| id == "no-cert" || id == "self-signed"),
        "an executor without a CA-signed client certificate registered: {ids:?}"
    );
    // The CLI with a client certificate reaches the planner; without, not.
    let with_cert = run(
        NETWARD,
        &[
            "planner",
            "status",
            "--json",
            "--planner-url",
            &planner_url,
            "--tls-ca",
            &ca,
            "--tls-cert",
            &pki.path("executor.pem"),
            "--tls-key",
            &pki.path("executor-key.pem"),
        ],
    )
    .await;
    assert!(
        with_cert.success && with_cert.stdout.contains("tls-exec"),
        "{}",
        with_cert.stderr
    );
    let without = run(
        NETWARD,
        &[
            "planner",
            "status",
            "--planner-url",
            &planner_url,
            "--tls-ca",
            &ca,
        ],
    )
    .await;
    assert!(!without.success, "{}", without.stdout);

    for process in [
        self_signed,
        no_cert,
        poller,
        executor,
        alerting,
        planner,
        inventory,
    ] {
        let (status, log) = process.stop().await;
        assert!(status.success(), "{log}");
    }
}

/// `netward ping-executor` on `grpc_addr` with `args` and `env`, expected to
/// exit at once: its exit status and standard error.
async fn refused(grpc_addr: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(NETWARD);
    command
        .args([
            "ping-executor",
            "--grpc-addr",
            grpc_addr,
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("NETWARD_")) {
        command.env_remove(key);
    }
    let output = tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .expect("a refused start exits at once")
        .unwrap();
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test]
async fn a_listener_beyond_loopback_needs_tls_a_token_or_insecure() {
    let bare = refused("0.0.0.0:0", &[], &[]).await;
    assert!(!bare.success, "{}", bare.stdout);
    assert!(
        bare.stderr.contains("refusing to listen on 0.0.0.0:0")
            && bare.stderr.contains("--insecure"),
        "{}",
        bare.stderr
    );

    // The risk accepted: it serves, and says so in its log.
    let insecure = Netward::start_on("0.0.0.0:0", "ping-executor", &["--insecure"], &[]).await;
    let (_, log) = insecure.stop().await;
    assert!(
        log.contains("--insecure: listening beyond loopback"),
        "{log}"
    );
    let insecure_env = Netward::start_on(
        "0.0.0.0:0",
        "ping-executor",
        &[],
        &[("NETWARD_INSECURE", "true")],
    )
    .await;
    insecure_env.stop().await;

    // A token, or TLS, protects it.
    let token = Netward::start_on(
        "0.0.0.0:0",
        "ping-executor",
        &[],
        &[("NETWARD_TOKEN", "s3cret")],
    )
    .await;
    let (_, log) = token.stop().await;
    assert!(!log.contains("--insecure"), "{log}");
    let pki = Pki::create();
    let tls = pki.flags("server");
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    let with_tls = Netward::start_on("0.0.0.0:0", "ping-executor", &tls, &[]).await;
    with_tls.stop().await;

    // Half a TLS identity, or a missing file, stops the start with the reason.
    let half = refused("127.0.0.1:0", &["--tls-cert", &pki.path("server.pem")], &[]).await;
    assert!(
        !half.success && half.stderr.contains("tls.cert is set but tls.key is not"),
        "{}",
        half.stderr
    );
    let missing = refused(
        "127.0.0.1:0",
        &[
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ],
        &[],
    )
    .await;
    assert!(
        !missing.success && missing.stderr.contains("/nonexistent/cert.pem"),
        "{}",
        missing.stderr
    );
}

/// `url` with `sslmode=mode` added.
fn sslmode(url: &str, mode: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}sslmode={mode}")
}

#[tokio::test]
async fn postgres_sslmode_and_rediss_urls_are_understood() {
    use sqlx::Connection as _;

    let base = netward_shared::testkit::admin_url();
    let mut plain = sqlx::PgConnection::connect(&sslmode(&base, "disable"))
        .await
        .expect("sslmode=disable connects");
    let (server_ssl,): (String,) = sqlx::query_as("SHOW ssl")
        .fetch_one(&mut plain)
        .await
        .unwrap();
    if server_ssl == "on" {
        // The server speaks TLS (Debian's default, with its self-signed
        // "snakeoil" certificate): `require` encrypts, and a target runs on
        // such a URL with its connections encrypted; `verify-full` refuses
        // the certificate no root vouches for.
        let database = TestDatabase::create().await.unwrap();
        let url = sslmode(database.url(), "require");
        let inventory = Netward::start("inventory", &["--database-url", &url]).await;
        let encrypted: (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) \
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1",
        )
        .bind(database.name())
        .fetch_one(&mut plain)
        .await
        .unwrap();
        assert!(
            encrypted.1 > 0 && encrypted.0 == encrypted.1,
            "the inventory's connections with sslmode=require: {} of {} encrypted",
            encrypted.0,
            encrypted.1
        );
        let (status, log) = inventory.stop().await;
        assert!(status.success(), "{log}");
        let error = sqlx::PgConnection::connect(&sslmode(&base, "verify-full"))
            .await
            .expect_err("verify-full must not trust a self-signed server certificate")
            .to_string();
        assert!(error.to_lowercase().contains("certificate"), "{error}");
    } else {
        // No TLS on the server: `require` fails because the server refuses
        // TLS, not because this build lacks it.
        let error = sqlx::PgConnection::connect(&sslmode(&base, "require"))
            .await
            .expect_err("the server has no TLS")
            .to_string();
        assert!(error.contains("server does not support TLS"), "{error}");
    }

    // rediss:// is accepted; a TLS handshake with a plaintext Redis fails as
    // a TLS/IO error, not as "TLS not enabled".
    let redis_url = std::env::var("NETWARD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    let rediss = redis_url.replacen("redis://", "rediss://", 1);
    let client = redis::Client::open(rediss.as_str()).expect("rediss:// is accepted");
    let connecting = client.get_multiplexed_async_connection();
    match tokio::time::timeout(Duration::from_secs(5), connecting).await {
        Ok(Ok(_)) => panic!("a TLS handshake with a plaintext Redis succeeded"),
        Ok(Err(error)) => {
            let error = error.to_string();
            assert!(!error.contains("not enabled"), "{error}");
        }
        // The handshake hung: no answer, but not "unsupported" either.
        Err(_) => {}
    }
}

/// An OTLP/gRPC trace receiver over TLS that counts the spans it gets.
#[derive(Clone, Default)]
struct TlsCollector {
    spans: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for TlsCollector
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        let count: usize = request
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.spans
            .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tokio::test]
async fn spans_reach_an_https_otlp_collector() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
    use tonic::transport::{Identity, ServerTlsConfig};

    netward_shared::tls::install_crypto_provider();
    let pki = Pki::create();
    let identity = Identity::from_pem(
        std::fs::read(pki.path("server.pem")).unwrap(),
        std::fs::read(pki.path("server-key.pem")).unwrap(),
    );
    let collector = TlsCollector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("https://{}", listener.local_addr().unwrap());
    let server = tonic::transport::Server::builder()
        .tls_config(ServerTlsConfig::new().identity(identity))
        .unwrap()
        .add_service(TraceServiceServer::new(collector.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);

    let ca = pki.ca();
    let planner = Netward::start_with_env(
        "planner",
        &["--inventory-url", "http://127.0.0.1:1"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    // Every served call is a span.
    let sizing = run(
        NETWARD,
        &[
            "sizing",
            "1000",
            "--planner-url",
            &format!("http://{}", planner.grpc_addr),
        ],
    )
    .await;
    assert!(sizing.success, "{}", sizing.stderr);
    eventually(
        "spans exported over TLS",
        Duration::from_secs(20),
        || async { (collector.spans.load(std::sync::atomic::Ordering::Relaxed) > 0).then_some(()) },
    )
    .await;
    let (status, log) = planner.stop().await;
    assert!(status.success(), "{log}");
}
