//! Test-side view of the network lab (deploy/lab/lab.sh): whether the tests
//! run inside it, and nft rules that a test adds for its own address range
//! and that go away when the test ends (so tests run in parallel).

use std::process::Command;

const SKIP: &str =
    "skipped: not in the network lab (run scripts/test.sh, or deploy/lab/lab.sh -- cargo test ...)";

/// True inside the lab (lab.sh exports `NETWARD_LAB=1`). Outside it, prints
/// why the calling test does nothing; the test should then return.
pub fn inside() -> bool {
    let inside = std::env::var("NETWARD_LAB").is_ok_and(|v| v == "1");
    if !inside {
        println!("{SKIP}");
    }
    inside
}

/// One nft rule in the lab's `inet netward_lab` table, removed on drop.
#[must_use = "the rule is removed when this is dropped"]
pub struct Rule {
    handle: u64,
}

impl Rule {
    /// Echo requests to `cidr` are dropped: its addresses are silent.
    pub fn down(cidr: &str) -> Self {
        Self::add(&format!("{} drop", requests(cidr)))
    }

    /// Echo requests to `cidr` are dropped at random, `percent` in 100.
    pub fn lossy(cidr: &str, percent: u32) -> Self {
        Self::add(&format!(
            "{} numgen random mod 100 < {percent} drop",
            requests(cidr)
        ))
    }

    /// Every `n`th echo request to `cidr` is dropped, starting with the first.
    pub fn drop_every(cidr: &str, n: u32) -> Self {
        Self::add(&format!("{} numgen inc mod {n} 0 drop", requests(cidr)))
    }

    /// Echo requests to `cidr` are answered with an ICMP host-unreachable.
    pub fn unreachable(cidr: &str) -> Self {
        let reject = if cidr.contains(':') {
            "reject with icmpv6 type addr-unreachable"
        } else {
            "reject with icmp type host-unreachable"
        };
        Self::add(&format!("{} {reject}", requests(cidr)))
    }

    fn add(rule: &str) -> Self {
        // lab.sh creates the table; a test may also run in a bare
        // namespace, so create it when missing (`add` is idempotent).
        nft(&["add", "table", "inet", "netward_lab"]);
        nft(&[
            "add",
            "chain",
            "inet",
            "netward_lab",
            "input",
            "{ type filter hook input priority 0; policy accept; }",
        ]);
        let out = nft(&[
            "--echo",
            "--handle",
            "add",
            "rule",
            "inet",
            "netward_lab",
            "input",
            rule,
        ]);
        let handle = out
            .lines()
            .find_map(|l| {
                l.rsplit_once("# handle ")
                    .and_then(|(_, h)| h.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("no rule handle in nft output: {out}"));
        Self { handle }
    }
}

impl Drop for Rule {
    fn drop(&mut self) {
        let handle = self.handle.to_string();
        nft(&[
            "delete",
            "rule",
            "inet",
            "netward_lab",
            "input",
            "handle",
            &handle,
        ]);
    }
}

/// The match for echo requests to `cidr`: one loopback range, or a set of
/// them (`{ 127.0.0.2, 127.0.0.3 }`) of one family.
fn requests(cidr: &str) -> String {
    let members: Vec<&str> = cidr
        .trim_matches(|c| c == '{' || c == '}' || c == ' ')
        .split(',')
        .map(str::trim)
        .collect();
    for member in &members {
        assert!(
            member.starts_with("127.") || member.starts_with("::1"),
            "the lab only shapes loopback: {member}"
        );
    }
    if members.iter().any(|m| m.contains(':')) {
        format!("ip6 daddr {cidr} icmpv6 type echo-request")
    } else {
        format!("ip daddr {cidr} icmp type echo-request")
    }
}

fn nft(args: &[&str]) -> String {
    let out = Command::new("nft")
        .args(args)
        .output()
        .expect("nft runs (apt-get install nftables)");
    assert!(
        out.status.success(),
        "nft {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
