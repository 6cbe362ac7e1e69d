//! SNMPv3 against net-snmp, end to end: a real `snmpd` on 127.0.0.1 with an
//! authPriv user (SHA-256/AES-128), an inventory credential for it and a
//! device with the `auto` profile; inventory, planner (SNMP every 5 s), the
//! SNMP poller and alerting run as processes of the real binary. The poll
//! must resolve to the `net-snmp` profile and read the interface table
//! (`netward interfaces` lists `lo` under a clean header) and the
//! HOST-RESOURCES values, with outcome OK — the agent once answered every
//! such GETBULK genErr while the sample said OK with no interfaces.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use netward_shared::config::Target;
use netward_shared::proto::v1;
use netward_shared::testkit::cluster::Cluster;
use netward_shared::testkit::eventually;

use crate::support::NETWARD;

const USER: &str = "netward-v3";
const AUTH_KEY: &str = "auth-key-sha256";
const PRIV_KEY: &str = "priv-key-aes128";

/// net-snmp's snmpd on a free loopback port, in its own directory; killed
/// (by its own process id) and the directory removed on drop.
pub(crate) struct Snmpd {
    child: Child,
    pub(crate) port: u16,
    dir: PathBuf,
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn which(tool: &str) -> bool {
    Command::new("which")
        .arg(tool)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(crate) fn snmpd(dir: &Path) -> Snmpd {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.join("snmpd.conf");
    std::fs::write(
        &conf,
        format!(
            "agentAddress udp:127.0.0.1:{port}\n\
             sysName netward-v3-agent\n\
             createUser {USER} SHA-256 \"{AUTH_KEY}\" AES \"{PRIV_KEY}\"\n\
             rouser {USER} priv\n"
        ),
    )
    .unwrap();
    // -f foreground, -Lo log to stdout, -C only this config, -r no
    // root-only files; the persistent dir (engine boots, users) is ours.
    let child = Command::new("snmpd")
        .args(["-f", "-Lo", "-C", "-r", "-c"])
        .arg(&conf)
        .env("SNMP_PERSISTENT_DIR", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start snmpd");
    let agent = Snmpd {
        child,
        port,
        dir: dir.to_path_buf(),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answered = Command::new("snmpget")
            .args(["-v3", "-l", "authPriv", "-u", USER, "-a", "SHA-256"])
            .args(["-A", AUTH_KEY, "-x", "AES", "-X", PRIV_KEY])
            .args(["-t", "0.3", "-r", "0", "-On"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("1.3.6.1.2.1.1.3.0")
            .output()
            .is_ok_and(|o| o.status.success());
        if answered {
            return agent;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "snmpd on port {port} never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The SNMP tests' cluster, as processes of the real binary: inventory
/// (with a key for credentials' secrets), planner (SNMP every 5 s),
/// alerting (rates judged for 5 s polls) and one SNMP poller, `poller_id`.
/// Devices come after their credential ([`Cluster::import_devices`]).
pub(crate) async fn snmp_cluster(poller_id: &str) -> Cluster {
    crate::support::cluster()
        .planner()
        .alerting()
        .snmp_pollers(1)
        .executor_ids(Target::SnmpPoller, &[poller_id])
        .set_for(Target::Inventory, "NETWARD_SECRET_KEY", &"3c".repeat(32))
        .set_for(Target::Planner, "NETWARD_PLANNER__SNMP_INTERVAL", "5s")
        // Polls every 5 s: rates must not take a static sysUpTime for a reboot.
        .config(
            Target::Alerting,
            "[alerting.rates]\npoll_interval = \"5s\"\nuptime_slack = \"1h\"\n",
        )
        .start()
        .await
}

/// Whether snmpd and snmpget are here (in CI they must be); says so if not.
pub(crate) fn snmp_tools() -> bool {
    if !which("snmpd") || !which("snmpget") {
        assert!(
            std::env::var_os("CI").is_none(),
            "snmpd/snmpget are not installed (scripts/setup.sh installs them)"
        );
        println!("skipped: snmpd or snmpget not installed (apt-get install snmpd snmp)");
        return false;
    }
    true
}

/// `linux-srv-01`, the [`snmpd`] on `port` polled with SNMPv3 through the
/// credential `servers-v3` and the `auto` profile.
pub(crate) fn server_row(port: u16) -> v1::ImportRow {
    v1::ImportRow {
        line: 2,
        name: "linux-srv-01".into(),
        ip: "127.0.0.1".into(),
        site: "dc-01".into(),
        snmp_version: "3".into(),
        snmp_credential: "servers-v3".into(),
        snmp_port: port.to_string(),
        snmp_profile: "auto".into(),
        ..Default::default()
    }
}

/// The inventory credential of [`snmpd`]'s user, named `name`.
pub(crate) fn credential(name: &str) -> v1::CreateCredentialRequest {
    v1::CreateCredentialRequest {
        name: name.into(),
        version: v1::SnmpVersion::V3 as i32,
        username: USER.into(),
        auth_protocol: v1::SnmpAuthProtocol::Sha256 as i32,
        auth_key: AUTH_KEY.into(),
        priv_protocol: v1::SnmpPrivProtocol::Aes128 as i32,
        priv_key: PRIV_KEY.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn v3_auth_priv_auto_profile_polls_net_snmp_end_to_end() {
    if !snmp_tools() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("netward-snmpv3-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let agent = snmpd(&dir);

    let mut cluster = snmp_cluster("v3-test-poller").await;
    cluster
        .inventory_client()
        .create_credential(credential("servers-v3"))
        .await
        .unwrap();
    let imported = cluster.import_devices(vec![server_row(agent.port)]).await;
    assert_eq!(imported.created, 1, "{imported:?}");
    let device_id = cluster.id("linux-srv-01").to_string();
    let poller = &cluster.snmp_pollers[0];
    let (inventory_url, alerting_url) = (cluster.inventory_url(), cluster.alerting_url());
    let client = cluster.alerting_client();

    // Two polls with lo in them: the second one has rates (and the hints
    // of the first: resolved profile, engine id, max-repetitions).
    let listed = eventually(
        "lo is polled twice over SNMPv3",
        Duration::from_secs(60),
        || {
            let mut client = client.clone();
            let device_id = device_id.clone();
            async move {
                let listed = client
                    .list_interfaces(v1::ListInterfacesRequest {
                        device_id,
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner();
                let lo = listed.interfaces.iter().find(|i| i.if_name == "lo")?;
                lo.in_bps.is_some().then_some(listed)
            }
        },
    )
    .await;
    let tail = |log: String| {
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    };
    assert_eq!(
        listed.last_snmp_outcome,
        v1::SnmpOutcome::Ok as i32,
        "{}\npoller log:\n{}",
        listed.last_snmp_error,
        tail(poller.log())
    );
    assert_eq!(listed.last_snmp_error, "");

    let status = client
        .clone()
        .get_device_status(v1::GetDeviceStatusRequest {
            device_id: device_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.last_snmp_outcome, v1::SnmpOutcome::Ok as i32);
    assert!(status.sys_uptime_ticks.is_some());

    // The CLI, by device name: a clean header and lo's row.
    let output = Command::new(NETWARD)
        .args(["interfaces", "linux-srv-01"])
        .args(["--alerting-url", &alerting_url])
        .args(["--inventory-url", &inventory_url])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "netward interfaces failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8(output.stdout).unwrap();
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.starts_with(&format!("linux-srv-01 ({device_id}): "))
            && header.contains(" interface")
            && header.contains("polled ")
            && !header.contains("last poll"),
        "{table}"
    );
    assert!(
        !header.contains(": 0 interfaces"),
        "an empty table: {table}"
    );
    assert!(
        table
            .lines()
            .skip(1)
            .any(|line| line.split_whitespace().nth(1) == Some("lo")),
        "no lo row:\n{table}"
    );
    drop(agent);
}
