//! The operator's path: `netward devices import FILE.csv` (the real binary)
//! against a real inventory process on PostgreSQL, with a 1,000-row file of
//! which 100 rows are malformed in different ways.

use std::collections::BTreeSet;
use std::path::Path;

use tokio::process::Command;

use crate::support::NETWARD;

const HEADER: &str =
    "name,ip,site,region,type,vendor,model,parent,tags,enabled,snmp_version,snmp_credential";

/// Lines 2..=1001; returns the file and the lines that must be refused.
fn write_csv(path: &Path) -> BTreeSet<u64> {
    let mut text = format!("{HEADER}\n");
    let mut bad = BTreeSet::new();
    for i in 0..1000u32 {
        let line = u64::from(i) + 2;
        let site = format!("cli-site-{:02}", i / 100);
        let k = i % 100;
        let (name, ip, kind, parent) = if k == 0 {
            (
                format!("{site}-rtr"),
                format!("127.20.{}.1", i / 100),
                "router",
                String::new(),
            )
        } else {
            (
                format!("{site}-d{k:02}"),
                format!("127.20.{}.{}", i / 100, k + 1),
                "paybox",
                format!("{site}-rtr"),
            )
        };
        let mut cells = vec![
            name,
            ip,
            site,
            "Batumi".to_string(),
            kind.to_string(),
            "NCR".to_string(),
            "X1".to_string(),
            parent,
            "env=lab".to_string(),
            "true".to_string(),
            String::new(),
            String::new(),
        ];
        if k % 10 == 5 {
            match (i / 10) % 10 {
                0 => cells[1] = "999.1.1.1".into(),
                1 => cells[4] = "mainframe".into(),
                2 => cells[7] = "ghost-router".into(),
                3 => cells[9] = "perhaps".into(),
                4 => cells[8] = "no-equals-sign".into(),
                5 => cells[10] = "5".into(),
                6 => cells[2] = String::new(),
                7 => cells[1] = "127.20.0.1".into(),
                8 => cells.truncate(5), // not a CSV record of the header's width
                _ => cells[5] = "v".repeat(65),
            }
            bad.insert(line);
        }
        text.push_str(&cells.join(","));
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
    bad
}

async fn netward(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(NETWARD)
        .args(args)
        .env_remove("NETWARD_TOKEN")
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn reported_lines(report: &str) -> BTreeSet<u64> {
    report
        .lines()
        .filter_map(|l| l.strip_prefix("line ")?.split(':').next()?.parse().ok())
        .collect()
}

#[tokio::test]
async fn importing_a_csv_with_bad_rows_reports_each_line() {
    let cluster = crate::support::cluster().start().await;
    let url = cluster.inventory_url();
    let dir = std::env::temp_dir().join(format!("netward-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("fleet.csv");
    let bad = write_csv(&csv);
    let csv = csv.to_str().unwrap();

    // Atomic: refused as a whole, nothing written.
    let (ok, out, _) = netward(&[
        "devices",
        "import",
        csv,
        "--atomic",
        "--inventory-url",
        &url,
    ])
    .await;
    assert!(!ok);
    assert!(out.contains("applied: no"), "{out}");
    let (_, listed, _) = netward(&["devices", "list", "--json", "--inventory-url", &url]).await;
    assert_eq!(listed.lines().count(), 0, "{listed}");

    // Not atomic: the 900 good rows land; every bad line is named.
    let (ok, out, err) = netward(&["devices", "import", csv, "--inventory-url", &url]).await;
    assert!(!ok, "failed rows must fail the command");
    assert!(out.contains("created: 900"), "{out}\n{err}");
    assert!(out.contains("failed: 100"), "{out}");
    assert_eq!(reported_lines(&out), bad, "{out}");
    assert!(
        out.contains("ip = \"999.1.1.1\": not an IPv4 or IPv6 address"),
        "{out}"
    );
    assert!(
        out.contains("parent = \"ghost-router\": unknown parent device"),
        "{out}"
    );
    let (_, listed, _) = netward(&["devices", "list", "--json", "--inventory-url", &url]).await;
    assert_eq!(listed.lines().count(), 900);

    // Export → import: everything unchanged.
    let (ok, exported, err) = netward(&["devices", "export", "--inventory-url", &url]).await;
    assert!(ok, "{err}");
    let again = dir.join("export.csv");
    std::fs::write(&again, &exported).unwrap();
    let (ok, out, err) = netward(&[
        "devices",
        "import",
        again.to_str().unwrap(),
        "--inventory-url",
        &url,
    ])
    .await;
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("created: 0, updated: 0, unchanged: 900, failed: 0"),
        "{out}"
    );

    cluster.stop_all().await;
    std::fs::remove_dir_all(dir).unwrap();
}
