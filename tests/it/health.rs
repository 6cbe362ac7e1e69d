//! `netward health`, the check the compose stack's health checks run,
//! against a real planner: SERVING, a service it does not have, a port
//! nobody listens on, and a peer that accepts but never answers.

use std::process::Output;
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::support::NETWARD;

async fn health(args: &[&str]) -> Output {
    Command::new(NETWARD)
        .arg("health")
        .args(args)
        .output()
        .await
        .expect("run netward health")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn health_reports_serving_and_why_not() {
    // Without Redis the planner leads alone; the inventory it dials need not
    // exist for it to serve.
    let mut cluster = crate::support::cluster()
        .no_inventory()
        .planner()
        .start()
        .await;
    let planner = cluster.planner.take().unwrap();
    let addr = planner.grpc_addr.to_string();

    let out = health(&["--addr", &addr]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("SERVING"));

    let out = health(&["--addr", &addr, "--service", "netward.v1.PlannerService"]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));

    let out = health(&["--addr", &addr, "--service", "netward.v1.NoSuchService"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("NOT_FOUND"),
        "stderr: {}",
        stderr(&out)
    );

    planner.stop().await;
    let out = health(&["--addr", &addr]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("cannot reach http://{addr}")),
        "stderr: {}",
        stderr(&out)
    );
}

#[tokio::test]
async fn health_gives_up_on_a_silent_peer_within_the_timeout() {
    // Accepts TCP connections (the kernel's backlog) but never speaks HTTP/2.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let out = health(&["--addr", &addr, "--timeout", "500ms"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        stderr(&out).contains(&format!("http://{addr}")),
        "stderr: {}",
        stderr(&out)
    );
    drop(silent);

    let out = health(&["--addr", "not an address"]).await;
    assert_eq!(out.status.code(), Some(1));
}
