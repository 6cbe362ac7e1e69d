//! Test-side view of the network lab (deploy/lab/lab.sh): whether the tests
//! run inside it, and nft rules and routing changes that a test makes for its
//! own address range and that go away when the test ends (so tests run in
//! parallel).

use std::process::Command;
use std::sync::Once;

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
    chain: &'static str,
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

    /// Echo requests to `cidr` are dropped on *output*, by a local filter:
    /// the sender's `sendto()` fails with `EPERM`.
    pub fn drop_output(cidr: &str) -> Self {
        Self::add_to("output", &format!("{} drop", requests(cidr)))
    }

    fn add(rule: &str) -> Self {
        Self::add_to("input", rule)
    }

    fn add_to(chain: &'static str, rule: &str) -> Self {
        // lab.sh creates the table; a test may also run in a bare
        // namespace, so create it when missing (`add` is idempotent).
        nft(&["add", "table", "inet", "netward_lab"]);
        nft(&[
            "add",
            "chain",
            "inet",
            "netward_lab",
            chain,
            &format!("{{ type filter hook {chain} priority 0; policy accept; }}"),
        ]);
        let out = nft(&[
            "--echo",
            "--handle",
            "add",
            "rule",
            "inet",
            "netward_lab",
            chain,
            rule,
        ]);
        let handle = out
            .lines()
            .find_map(|l| {
                l.rsplit_once("# handle ")
                    .and_then(|(_, h)| h.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("no rule handle in nft output: {out}"));
        Self { chain, handle }
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
            self.chain,
            "handle",
            &handle,
        ]);
    }
}

/// A path taken away inside the lab: a policy-routing rule (and, for some
/// kinds, a route in a table of the lab's) for one loopback range, so the
/// kernel refuses to send there, as it does when a branch's route is
/// withdrawn. Undone on drop. Each kind gets its own errno from `sendto()`.
///
/// 127.0.0.0/8 is routed by the `local` table, whose rule has preference 0
/// and cannot be preceded; the first `Path` moves that rule to preference
/// 1000 (the same lookup, so nothing else changes) and leaves it there for
/// the namespace's life, so paths of tests running in parallel never race
/// on it. Only inside the lab: it rewires the namespace's routing.
#[must_use = "the path comes back when this is dropped"]
pub struct Path {
    rule: Vec<String>,
    route: Option<Vec<String>>,
}

/// The lab's routing table for [`Path`] routes.
const PATH_TABLE: &str = "2701";

impl Path {
    /// An `unreachable` policy rule: `ENETUNREACH` (a withdrawn route).
    pub fn withdrawn(cidr: &str) -> Self {
        Self::rule(cidr, "unreachable")
    }

    /// An `unreachable` route: `EHOSTUNREACH` (no route to host).
    pub fn unreachable(cidr: &str) -> Self {
        Self::route(cidr, "unreachable")
    }

    /// A `blackhole` route: `EINVAL`. (A blackhole in the `local` table does
    /// nothing for 127/8, whose `local` route wins; hence a table of ours.)
    pub fn blackhole(cidr: &str) -> Self {
        Self::route(cidr, "blackhole")
    }

    /// A `prohibit` route: `EACCES` (administratively prohibited).
    pub fn prohibited(cidr: &str) -> Self {
        Self::route(cidr, "prohibit")
    }

    fn rule(cidr: &str, action: &str) -> Self {
        prepare_policy_routing(cidr);
        let rule = strings(&["rule", "add", "to", cidr, "pref", "100", action]);
        ip(&rule);
        Self { rule, route: None }
    }

    fn route(cidr: &str, kind: &str) -> Self {
        prepare_policy_routing(cidr);
        let route = strings(&["route", "add", kind, cidr, "table", PATH_TABLE]);
        ip(&route);
        let rule = strings(&[
            "rule", "add", "to", cidr, "pref", "100", "lookup", PATH_TABLE,
        ]);
        ip(&rule);
        Self {
            rule,
            route: Some(route),
        }
    }
}

impl Drop for Path {
    fn drop(&mut self) {
        // The same words with `del` for `add` name exactly what was added.
        let undo = |added: &[String]| {
            let mut args = added.to_vec();
            args[1] = "del".to_owned();
            ip(&args);
        };
        undo(&self.rule);
        if let Some(route) = &self.route {
            undo(route);
        }
    }
}

/// Refuses to touch routing outside the lab, checks the range is loopback,
/// and moves the `local` rule once (see [`Path`]).
fn prepare_policy_routing(cidr: &str) {
    assert!(
        std::env::var("NETWARD_LAB").is_ok_and(|v| v == "1"),
        "lab::Path rewires routing: only inside the network lab (deploy/lab/lab.sh)"
    );
    assert!(
        cidr.starts_with("127.") && !cidr.contains(','),
        "the lab only reroutes one loopback range: {cidr}"
    );
    static LOCAL_RULE_MOVED: Once = Once::new();
    LOCAL_RULE_MOVED.call_once(|| {
        let rules = ip(&strings(&["rule", "show"]));
        if !rules.lines().any(|l| l.starts_with("1000:")) {
            ip(&strings(&[
                "rule", "add", "pref", "1000", "lookup", "local",
            ]));
        }
        if rules.lines().any(|l| l.starts_with("0:")) {
            ip(&strings(&["rule", "del", "pref", "0"]));
        }
    });
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

fn ip(args: &[String]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip runs (apt-get install iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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
