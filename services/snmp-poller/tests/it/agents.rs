//! Real agents for the tests: net-snmp's snmpd with a generated config, and
//! snmpsim serving recorded devices, each in a temp dir of its own and
//! killed (by their own process id) when dropped.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netward_shared::proto::v1;

/// True when every tool is on PATH. Otherwise prints what is missing and
/// returns false, or panics in CI (`CI` set), where the tools must exist
/// (scripts/setup.sh installs them).
pub fn tools(names: &[&str]) -> bool {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| {
            !Command::new("which")
                .arg(name)
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!(
        "skipped: {} not installed (apt-get install snmpd snmp snmpsim, or scripts/setup.sh)",
        missing.join(", ")
    );
    assert!(std::env::var_os("CI").is_none(), "{message}");
    println!("{message}");
    false
}

/// A UDP port free a moment ago on 127.0.0.1.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "netward-{what}-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed on drop.
pub struct Agent {
    child: Child,
    pub port: u16,
    // Kept for its Drop: the agent's files go with it.
    _dir: TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SNMPv3 users of the test snmpd: (user, auth protocol, auth key, priv protocol, priv key).
pub const SHA256_AES: (&str, &str, &str, &str, &str) = (
    "ops-sha256",
    "SHA-256",
    "auth-key-256",
    "AES",
    "priv-key-aes",
);
pub const SHA1_DES: (&str, &str, &str, &str, &str) =
    ("ops-sha1", "SHA", "auth-key-sha1", "DES", "priv-key-des");
pub const COMMUNITY: &str = "netward-ro";

/// net-snmp's snmpd on 127.0.0.1 with a v2c community and two v3 users.
pub fn snmpd() -> Agent {
    let dir = TempDir::new("snmpd");
    let port = free_udp_port();
    let mut conf = format!(
        "agentAddress udp:127.0.0.1:{port}\n\
         rocommunity {COMMUNITY} 127.0.0.1\n\
         sysName netward-test-agent\n\
         sysLocation lab\n"
    );
    for (user, auth, auth_key, privacy, priv_key) in [SHA256_AES, SHA1_DES] {
        conf.push_str(&format!(
            "createUser {user} {auth} \"{auth_key}\" {privacy} \"{priv_key}\"\nrouser {user} priv\n"
        ));
    }
    let conf_path = dir.0.join("snmpd.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new("snmpd")
        // -f foreground, -Lo log to stdout, -C only this config, -r no
        // root-only files; the persistent dir (engine boots, users) is ours.
        .args(["-f", "-Lo", "-C", "-r", "-c"])
        .arg(&conf_path)
        .env("SNMP_PERSISTENT_DIR", &dir.0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent = Agent {
        child,
        port,
        _dir: dir,
    };
    wait_until_answering(port, COMMUNITY, Duration::from_secs(10));
    agent
}

/// snmpsim serving recorded devices, one community per data file name.
pub fn snmpsim(records: &[(&str, &Path)]) -> Agent {
    let dir = TempDir::new("snmpsim");
    let data = dir.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for (community, source) in records {
        let text = read_record(source);
        std::fs::write(data.join(format!("{community}.snmprec")), text).unwrap();
    }
    // snmpsim refuses to run as root: it drops to nobody, who must read
    // the data and write the index cache.
    let _ = Command::new("chmod")
        .arg("-R")
        .arg("a+rwX")
        .arg(&dir.0)
        .status();
    let port = free_udp_port();
    let mut command = Command::new(snmpsim_binary());
    command
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--cache-dir={}", dir.0.join("cache").display()))
        .arg(format!("--agent-udpv4-endpoint=127.0.0.1:{port}"))
        .arg("--logging-method=null");
    if is_root() {
        command.args(["--process-user=nobody", "--process-group=nogroup"]);
    }
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent = Agent {
        child,
        port,
        _dir: dir,
    };
    // snmpsim indexes its data files before it answers.
    wait_until_answering(port, records[0].0, Duration::from_secs(60));
    agent
}

/// Debian names snmpsim's responder `snmpsimd`; newer releases
/// `snmpsim-command-responder`.
pub fn snmpsim_binary() -> &'static str {
    if tools_quiet("snmpsim-command-responder") {
        "snmpsim-command-responder"
    } else {
        "snmpsimd"
    }
}

pub fn snmpsim_tools() -> bool {
    let responder = if tools_quiet("snmpsim-command-responder") {
        "snmpsim-command-responder"
    } else {
        "snmpsimd"
    };
    tools(&[responder, "snmpbulkwalk", "snmpget"])
}

fn tools_quiet(name: &str) -> bool {
    Command::new("which")
        .arg(name)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A recording, uncompressed when it is `.gz`.
fn read_record(path: &Path) -> Vec<u8> {
    if path.extension().is_some_and(|e| e == "gz") {
        let out = Command::new("zcat").arg(path).output().unwrap();
        assert!(out.status.success(), "zcat {}", path.display());
        out.stdout
    } else {
        std::fs::read(path).unwrap()
    }
}

fn wait_until_answering(port: u16, community: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let answered = Command::new("snmpget")
            .args(["-v2c", "-c", community, "-t", "0.3", "-r", "0", "-On"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("1.3.6.1.2.1.1.3.0")
            .output()
            .is_ok_and(|o| o.status.success());
        if answered {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "agent on port {port} never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The examples of Debian's snmpsim package.
pub const SNMPSIM_DATA: &str = "/usr/share/doc/snmpsim/examples/data";

pub fn v2c(port: u16, community: &str, profile: &str) -> v1::SnmpTarget {
    v1::SnmpTarget {
        version: v1::SnmpVersion::V2c as i32,
        port: u32::from(port),
        credential: Some(v1::ResolvedCredential {
            version: v1::SnmpVersion::V2c as i32,
            community: community.into(),
            ..Default::default()
        }),
        profile: profile.into(),
        timeout_ms: 1000,
        retries: Some(1),
        refresh_labels: true,
        ..Default::default()
    }
}

pub fn v3(
    port: u16,
    user: &str,
    auth: v1::SnmpAuthProtocol,
    auth_key: &str,
    privacy: v1::SnmpPrivProtocol,
    priv_key: &str,
) -> v1::SnmpTarget {
    v1::SnmpTarget {
        version: v1::SnmpVersion::V3 as i32,
        port: u32::from(port),
        credential: Some(v1::ResolvedCredential {
            version: v1::SnmpVersion::V3 as i32,
            username: user.into(),
            auth_protocol: auth as i32,
            auth_key: auth_key.into(),
            priv_protocol: privacy as i32,
            priv_key: priv_key.into(),
            ..Default::default()
        }),
        profile: "system".into(),
        timeout_ms: 1000,
        retries: Some(1),
        ..Default::default()
    }
}
