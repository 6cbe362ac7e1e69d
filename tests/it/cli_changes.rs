//! The everyday changes through the CLI against the real services (a
//! cluster of inventory and alerting processes on PostgreSQL): `netward
//! credentials`, `netward rules` and `netward silences` round trips, checked
//! against what the services then hold over gRPC. Secrets never come from an
//! argument and never show in an output.

use std::process::Stdio;

use netward_shared::config::Target;
use netward_shared::proto::v1;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

use crate::support::NETWARD;

const COMMUNITY: &str = "br1-community-s3cret";
const AUTH_KEY: &str = "auth-passphrase-4711";
const PRIV_KEY: &str = "priv-passphrase-0815";

struct Cli {
    urls: Vec<(&'static str, String)>,
}

struct Outcome {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }
}

impl Cli {
    /// Runs `netward ARGS` with `env`, feeding `stdin` (closed when empty).
    async fn run(&self, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Outcome {
        let mut command = Command::new(NETWARD);
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("NETWARD_")) {
            command.env_remove(key);
        }
        command.envs(self.urls.iter().map(|(k, v)| (*k, v.as_str())));
        command.envs(env.iter().copied());
        let mut child = command.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        let output = child.wait_with_output().await.unwrap();
        let outcome = Outcome {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        for secret in [COMMUNITY, AUTH_KEY, PRIV_KEY] {
            assert!(
                !outcome.stdout.contains(secret) && !outcome.stderr.contains(secret),
                "a secret shows in the output of {args:?}:\n{}\n{}",
                outcome.stdout,
                outcome.stderr
            );
        }
        outcome
    }

    async fn ok(&self, args: &[&str]) -> Outcome {
        let outcome = self.run(args, &[], "").await;
        assert!(outcome.ok, "netward {args:?} failed: {}", outcome.stderr);
        outcome
    }

    async fn fails(&self, args: &[&str]) -> String {
        let outcome = self.run(args, &[], "").await;
        assert!(
            !outcome.ok,
            "netward {args:?} succeeded: {}",
            outcome.stdout
        );
        outcome.stderr
    }
}

#[tokio::test]
async fn credentials_rules_and_silences_round_trip_through_the_cli() {
    let cluster = crate::support::cluster()
        .alerting()
        .set_for(Target::Inventory, "NETWARD_SECRET_KEY", &"cd".repeat(32))
        .start()
        .await;
    let mut inv = cluster.inventory_client();
    let mut alert = cluster.alerting_client();
    let site = inv
        .create_site(v1::CreateSiteRequest {
            site: Some(v1::Site {
                name: "br1".into(),
                code: "BR1".into(),
                region: "Lab".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .site
        .unwrap();
    let atm = inv
        .create_device(v1::CreateDeviceRequest {
            device: Some(v1::Device {
                name: "br1-atm".into(),
                ip_address: "127.61.0.1".into(),
                site_id: site.id.clone(),
                device_type: v1::DeviceType::Atm as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .device
        .unwrap();
    let cli = Cli {
        urls: vec![
            ("NETWARD_INVENTORY_URL", cluster.inventory_url()),
            ("NETWARD_ALERTING_URL", cluster.alerting_url()),
        ],
    };

    // --- credentials -------------------------------------------------------
    // A secret as an argument is refused, with the ways that work, and nothing is stored.
    let refused = cli
        .fails(&[
            "credentials",
            "create",
            "leaky",
            "--snmp-version",
            "2c",
            "--community",
            "x",
        ])
        .await;
    assert!(
        refused.contains("never taken as arguments") && refused.contains("NETWARD_SNMP_COMMUNITY"),
        "{refused}"
    );
    // No secret at all: the error names the variable.
    let missing = cli
        .fails(&["credentials", "create", "empty", "--snmp-version", "2c"])
        .await;
    assert!(
        missing.contains("no community given") && missing.contains("NETWARD_SNMP_COMMUNITY"),
        "{missing}"
    );
    // From the variable (v2c), and from standard input (v3: the auth key, then the privacy key).
    let v2 = cli
        .run(
            &[
                "credentials",
                "create",
                "branch-v2",
                "--snmp-version",
                "2c",
                "--json",
            ],
            &[("NETWARD_SNMP_COMMUNITY", COMMUNITY)],
            "",
        )
        .await;
    assert!(v2.ok, "{}", v2.stderr);
    assert_eq!(v2.json_lines()[0]["community_set"], true);
    let v3 = cli
        .run(
            &[
                "credentials",
                "create",
                "branch-v3",
                "--snmp-version",
                "3",
                "--username",
                "noc",
                "--auth-protocol",
                "sha256",
                "--priv-protocol",
                "aes128",
                "--description",
                "branches",
            ],
            &[],
            &format!("{AUTH_KEY}\n{PRIV_KEY}\n"),
        )
        .await;
    assert!(v3.ok, "{}", v3.stderr);
    assert!(
        v3.stdout.starts_with("created credential branch-v3"),
        "{}",
        v3.stdout
    );
    // The inventory holds exactly what was typed.
    let resolve = |name: &str| v1::ResolveCredentialRequest {
        key: Some(v1::resolve_credential_request::Key::Name(name.into())),
    };
    let stored = inv
        .resolve_credential(resolve("branch-v2"))
        .await
        .unwrap()
        .into_inner()
        .credential
        .unwrap();
    assert_eq!(stored.community, COMMUNITY);
    let stored = inv
        .resolve_credential(resolve("branch-v3"))
        .await
        .unwrap()
        .into_inner()
        .credential
        .unwrap();
    assert_eq!(
        (stored.auth_key.as_str(), stored.priv_key.as_str()),
        (AUTH_KEY, PRIV_KEY)
    );
    assert_eq!(stored.auth_protocol(), v1::SnmpAuthProtocol::Sha256);
    assert_eq!(stored.priv_protocol(), v1::SnmpPrivProtocol::Aes128);
    // Listed, without secrets (Cli::run checks every output for them).
    let listed = cli
        .ok(&["credentials", "list", "--json"])
        .await
        .json_lines();
    let names: Vec<_> = listed.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["branch-v2", "branch-v3"]);
    assert_eq!(listed[1]["auth_protocol"], "sha256");
    assert_eq!(listed[1]["priv_key_set"], true);
    let table = cli.ok(&["credentials", "list"]).await.stdout;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("branch-v3") && l.contains("auth+priv keys")),
        "{table}"
    );
    // Deleted by name; an unknown one is NOT_FOUND by name.
    let deleted = cli.ok(&["credentials", "delete", "branch-v2"]).await.stdout;
    assert!(
        deleted.starts_with("deleted credential branch-v2"),
        "{deleted}"
    );
    let gone = cli.fails(&["credentials", "delete", "branch-v2"]).await;
    assert!(gone.contains("NOT_FOUND"), "{gone}");
    let listed = cli
        .ok(&["credentials", "list", "--json"])
        .await
        .json_lines();
    assert_eq!(listed.len(), 1);

    // --- rules -------------------------------------------------------------
    let created = cli
        .ok(&[
            "rules",
            "create",
            "--name",
            "br1 latency",
            "--kind",
            "high_latency",
            "--severity",
            "medium",
            "--threshold",
            "150",
            "--scope",
            "site:br1",
            "--for",
            "2m",
            "--json",
        ])
        .await
        .json_lines()
        .remove(0);
    assert_eq!(created["scope"], "site:br1");
    assert_eq!(created["for_seconds"], 120);
    assert_eq!(created["enabled"], true);
    let id = created["id"].as_str().unwrap().to_string();
    let rule = |id: &str| v1::GetRuleRequest { id: id.into() };
    let held = alert
        .get_rule(rule(&id))
        .await
        .unwrap()
        .into_inner()
        .rule
        .unwrap();
    assert_eq!(
        held.scope.as_ref().unwrap().value,
        site.id,
        "the site's name became its id"
    );
    assert_eq!(held.threshold, 150.0);
    // An unknown site is named; nothing is created.
    let unknown = cli
        .fails(&[
            "rules",
            "create",
            "--name",
            "x",
            "--kind",
            "packet_loss",
            "--severity",
            "low",
            "--scope",
            "site:atlantis",
        ])
        .await;
    assert!(
        unknown.contains("GetSite")
            && unknown.contains("NOT_FOUND")
            && unknown.contains("atlantis"),
        "{unknown}"
    );
    let bad_kind = cli.fails(&["rules", "list", "--kind", "loss"]).await;
    assert!(bad_kind.contains("packet_loss"), "{bad_kind}");
    // Update by name changes only the fields given.
    let updated = cli
        .ok(&[
            "rules",
            "update",
            "br1 latency",
            "--threshold",
            "200",
            "--json",
        ])
        .await
        .json_lines()
        .remove(0);
    assert_eq!(updated["threshold"], 200.0);
    assert_eq!(updated["scope"], "site:br1");
    assert_eq!(updated["for_seconds"], 120);
    assert_eq!(updated["severity"], "medium");
    let nothing = cli.fails(&["rules", "update", "br1 latency"]).await;
    assert!(nothing.contains("nothing to change"), "{nothing}");
    // Disabled by an id prefix, listed as such, enabled again.
    let out = cli.ok(&["rules", "disable", &id[..8]]).await.stdout;
    assert!(out.contains("disabled"), "{out}");
    assert!(
        !alert
            .get_rule(rule(&id))
            .await
            .unwrap()
            .into_inner()
            .rule
            .unwrap()
            .enabled
            .unwrap()
    );
    let disabled = cli
        .ok(&["rules", "list", "--disabled", "--json"])
        .await
        .json_lines();
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0]["id"], id.as_str());
    cli.ok(&["rules", "enable", "br1 latency"]).await;
    assert!(
        alert
            .get_rule(rule(&id))
            .await
            .unwrap()
            .into_inner()
            .rule
            .unwrap()
            .enabled
            .unwrap()
    );
    // The table lists it with the built-in rules, its scope in words.
    let table = cli.ok(&["rules", "list"]).await.stdout;
    let line = table.lines().find(|l| l.contains("br1 latency")).unwrap();
    assert!(
        line.contains("high_latency") && line.contains("200 ms") && line.contains("site:br1"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains("device_down") && l.ends_with("yes")),
        "{table}"
    );

    // --- silences ----------------------------------------------------------
    let window = cli
        .ok(&[
            "silences",
            "create",
            "--site",
            "br1",
            "--type",
            "atm",
            "--maintenance",
            "--for",
            "2h",
            "--comment",
            "ATM swap",
            "--created-by",
            "noc-alice",
            "--json",
        ])
        .await
        .json_lines()
        .remove(0);
    assert_eq!(
        window["matchers"],
        serde_json::json!(["site:br1", "type:atm"])
    );
    assert_eq!(window["maintenance"], true);
    assert_eq!(window["active"], true);
    assert_eq!(window["created_by"], "noc-alice");
    let weekly = cli
        .ok(&[
            "silences",
            "create",
            "--tag",
            "tier=gold",
            "--weekly",
            "sat,sun",
            "--at",
            "02:00",
            "--duration",
            "4h",
            "--tz",
            "Asia/Tbilisi",
            "--comment",
            "backups",
        ])
        .await
        .stdout;
    assert!(
        weekly.contains("weekly sat,sun 02:00 for 4h (Asia/Tbilisi)"),
        "{weekly}"
    );
    let held = alert
        .list_silences(v1::ListSilencesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .silences;
    assert_eq!(held.len(), 2);
    let table = cli.ok(&["silences", "list"]).await.stdout;
    assert!(
        table.lines().any(|l| l.contains("maintenance")
            && l.contains("active")
            && l.contains("site:br1 & type:atm")),
        "{table}"
    );
    // GetSilence answers what ListSilences lists; an unknown id is
    // NOT_FOUND, a malformed one INVALID_ARGUMENT.
    let one = alert
        .get_silence(v1::GetSilenceRequest {
            id: window["id"].as_str().unwrap().into(),
        })
        .await
        .unwrap()
        .into_inner()
        .silence
        .unwrap();
    assert_eq!(one.comment, "ATM swap");
    assert_eq!(one.matchers.len(), 2);
    let unknown = alert
        .get_silence(v1::GetSilenceRequest {
            id: "6f1c2f4e-9a43-4a8e-8a55-0f6d2a1b3c4d".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    let malformed = alert
        .get_silence(v1::GetSilenceRequest { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(
        malformed.code(),
        tonic::Code::InvalidArgument,
        "{malformed:?}"
    );
    // The device's silences: the window covers the ATM, the tag does not.
    let covering = cli
        .ok(&["silences", "list", "--device", "br1-atm", "--json"])
        .await
        .json_lines();
    assert_eq!(covering.len(), 1);
    assert_eq!(covering[0]["id"], window["id"]);
    let by_id = cli
        .ok(&["silences", "list", "--device", &atm.id, "--json"])
        .await
        .json_lines();
    assert_eq!(by_id.len(), 1);
    // One-off needs an end; a weekly one needs its time and length.
    let endless = cli
        .fails(&["silences", "create", "--site", "br1", "--comment", "x"])
        .await;
    assert!(endless.contains("--for or --until"), "{endless}");
    let no_at = cli
        .fails(&[
            "silences",
            "create",
            "--global",
            "--weekly",
            "sat",
            "--comment",
            "x",
        ])
        .await;
    assert!(no_at.contains("--at"), "{no_at}");
    // Deleted by prefix: it ends now, listed as expired only with --all.
    let prefix = &window["id"].as_str().unwrap()[..8];
    cli.ok(&["silences", "delete", prefix]).await;
    let current = cli.ok(&["silences", "list", "--json"]).await.json_lines();
    assert_eq!(current.len(), 1);
    let all = cli
        .ok(&["silences", "list", "--all", "--json"])
        .await
        .json_lines();
    let ended = all.iter().find(|s| s["id"] == window["id"]).unwrap();
    assert_eq!(ended["expired"], true);
}
