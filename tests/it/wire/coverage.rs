//! The suite's coverage, from the sources: every `rpc` of every service in
//! `proto/netward/v1` against the calls of `tests/it/wire/*.rs` —
//! `.ok("netward.v1.S/M"` / `.stream_ok(…` (a valid request) and
//! `.err("netward.v1.S/M", "Code"` / `.stream_err(…` (a refused one, with
//! the code). Prints the table; fails when an RPC lacks either and is not
//! in `PENDING`, or when a `PENDING` one has both (so the list only shrinks).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// RPCs without both kinds of call yet: each a debt, named here on purpose.
const PENDING: &[&str] = &[];

#[derive(Debug, Default)]
struct Calls {
    valid: usize,
    refused: BTreeSet<String>,
}

/// `Service/Method` of every rpc in the protos.
pub(crate) fn rpcs(root: &Path) -> Vec<String> {
    let mut rpcs = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(root.join("proto/netward/v1"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "proto"))
        .collect();
    files.sort();
    for file in files {
        let mut service = String::new();
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.trim_end_matches('{').trim().to_string();
            } else if let Some(rest) = line.strip_prefix("rpc ") {
                let method = rest.split('(').next().unwrap().trim();
                rpcs.push(format!("{service}/{method}"));
            }
        }
    }
    rpcs
}

/// The string literal at the start of `text` (after blanks), and the rest.
fn literal(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start().strip_prefix('"')?;
    let end = text.find('"')?;
    Some((&text[..end], &text[end + 1..]))
}

/// The calls the suite's sources make, by `Service/Method`.
fn calls(sources: &[String]) -> BTreeMap<String, Calls> {
    let mut calls: BTreeMap<String, Calls> = BTreeMap::new();
    for source in sources {
        for (marker, refused) in [
            (".ok(", false),
            (".stream_ok(", false),
            (".err(", true),
            (".stream_err(", true),
        ] {
            for (at, _) in source.match_indices(marker) {
                let Some((method, rest)) = literal(&source[at + marker.len()..]) else {
                    continue;
                };
                let Some(method) = method.strip_prefix("netward.v1.") else {
                    continue;
                };
                let entry = calls.entry(method.to_string()).or_default();
                if refused {
                    let code = rest
                        .trim_start()
                        .strip_prefix(',')
                        .and_then(literal)
                        .map_or("?", |(code, _)| code);
                    entry.refused.insert(code.to_string());
                } else {
                    entry.valid += 1;
                }
            }
        }
    }
    calls
}

#[test]
fn every_rpc_is_called_over_the_wire_valid_and_refused() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/it/wire");
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("coverage.rs") {
            sources.push(std::fs::read_to_string(path).unwrap());
        }
    }
    let calls = calls(&sources);
    let rpcs = rpcs(root);
    let mut table = String::from("| RPC | valid calls | refused with |\n|---|---|---|\n");
    let mut missing = Vec::new();
    let mut paid = Vec::new();
    let mut covered = 0;
    for rpc in &rpcs {
        let entry = calls.get(rpc);
        let valid = entry.map_or(0, |c| c.valid);
        let refused: Vec<&str> = entry
            .map(|c| c.refused.iter().map(String::as_str).collect())
            .unwrap_or_default();
        table.push_str(&format!("| {rpc} | {valid} | {} |\n", refused.join(", ")));
        let complete = valid > 0 && !refused.is_empty();
        covered += usize::from(complete);
        match (complete, PENDING.contains(&rpc.as_str())) {
            (false, false) => missing.push(rpc.as_str()),
            (true, true) => paid.push(rpc.as_str()),
            _ => {}
        }
    }
    let unknown: Vec<&String> = calls.keys().filter(|k| !rpcs.contains(k)).collect();
    println!(
        "{table}\n{covered} of {} RPCs called over the wire with a valid and a refused request",
        rpcs.len()
    );
    assert!(
        missing.is_empty(),
        "RPCs without a valid and a refused call: {missing:?}"
    );
    assert!(
        paid.is_empty(),
        "covered now, take them out of PENDING: {paid:?}"
    );
    assert!(
        unknown.is_empty(),
        "calls of RPCs the protos do not have: {unknown:?}"
    );
}

#[test]
fn calls_are_read_from_the_sources_as_written() {
    let source = r#"
        inventory.ok("netward.v1.InventoryService/GetSite", "{}").await;
        inventory
            .err(
                "netward.v1.InventoryService/GetSite",
                "NotFound",
                r"{}",
            )
            .await;
    "#;
    let calls = calls(&[source.to_string()]);
    let site = &calls["InventoryService/GetSite"];
    assert_eq!(site.valid, 1);
    assert_eq!(site.refused.iter().collect::<Vec<_>>(), ["NotFound"]);
}
