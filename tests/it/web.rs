//! Alerting's status page over plain HTTP, against real processes: the page
//! and its assets with their types and security headers, the JSON API under
//! the roles and scopes of the tokens (no token refused, a viewer cannot
//! acknowledge, a region-scoped token sees its region), the login cookie,
//! the server-sent events a state change and an alert produce, the planner
//! being unreachable, and a taken or exposed web address at startup.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use netward_shared::auth::token_sha256;
use netward_shared::proto::v1;
use netward_shared::testkit::cluster::NOBODY;
use netward_shared::testkit::eventually;
use serde_json::Value;

use crate::alerting::Ingest;
use crate::support::NETWARD;

/// (token name, role, region, token)
const TOKENS: [(&str, &str, Option<&str>, &str); 4] = [
    ("admin", "admin", None, "w-admin"),
    ("viewer", "viewer", None, "w-viewer"),
    ("emea-operator", "operator", Some("EMEA"), "w-emea"),
    ("service", "service", None, "w-service"),
];

fn config() -> String {
    let mut text = String::from("[auth]\npeer_token = \"w-service\"\n");
    for (name, role, region, token) in TOKENS {
        text.push_str(&format!(
            "\n[[auth.tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n",
            token_sha256(token)
        ));
        if let Some(region) = region {
            text.push_str(&format!("regions = [\"{region}\"]\n"));
        }
    }
    text
}

fn http() -> reqwest::Client {
    netward_shared::tls::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// GET `path` with `token` (as a bearer) → (status, JSON body).
async fn get(web: SocketAddr, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = http().get(format!("http://{web}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post(web: SocketAddr, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = http().post(format!("http://{web}{path}")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The server-sent events of one `/api/events` stream, as (event, data).
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(web: SocketAddr, token: &str) -> Events {
        let response = http()
            .get(format!("http://{web}/api/events"))
            .bearer_auth(token)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{:?}",
            response.headers()
        );
        Events {
            response,
            buffer: String::new(),
        }
    }

    /// The next event named `name` whose data satisfies `wanted`.
    async fn until(&mut self, name: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let event = block
                    .lines()
                    .find_map(|l| l.strip_prefix("event: "))
                    .unwrap_or("message");
                let data: String = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                if event == name
                    && let Ok(data) = serde_json::from_str::<Value>(&data)
                    && wanted(&data)
                {
                    return data;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("no {name} event within 30 s"))
                .unwrap()
                .unwrap_or_else(|| panic!("the event stream ended before a {name} event"));
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test]
async fn the_status_page_serves_counts_alerts_and_events_within_each_tokens_rights() {
    // Two regions, one site each.
    let rows = [
        ("paris-rtr", "paris", "EMEA"),
        ("boston-rtr", "boston", "AMER"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (name, site, region))| v1::ImportRow {
        line: i as u32 + 2,
        name: name.to_string(),
        ip: format!("127.44.0.{}", i + 1),
        site: site.to_string(),
        region: region.to_string(),
        ..Default::default()
    })
    .collect();
    // No planner: nothing judges freshness while the test holds the states,
    // and the cycles panel must say the planner is unreachable.
    let mut cluster = crate::support::cluster()
        .alerting()
        .config_all(&config())
        .client_token("w-admin")
        .devices(rows)
        .start()
        .await;
    let imported = cluster.imported.as_ref().unwrap();
    assert_eq!(imported.created, 2, "{imported:?}");
    let web = cluster.alerting.as_ref().unwrap().web_addr;
    let web = web.expect("alerting serves its status page");

    // The page and its assets: types and security headers.
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
    ] {
        let response = http()
            .get(format!("http://{web}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!response.text().await.unwrap().is_empty(), "{path}");
    }
    let (status, session) = get(web, "/api/session", None).await;
    assert_eq!((status, &session["auth"]), (200, &Value::Bool(true)));

    let admin_client = cluster.alerting_client();

    // No token: refused, with the service's own message.
    let (status, refused) = get(web, "/api/summary", None).await;
    assert_eq!(status, 401, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .starts_with("not logged in"),
        "{refused}"
    );
    // A viewer sees both sites once alerting's copy has them.
    let summary = eventually(
        "the summary lists both sites",
        Duration::from_secs(20),
        || async {
            let (status, summary) = get(web, "/api/summary", Some("w-viewer")).await;
            (status == 200 && summary["sites"].as_array()?.len() == 2).then_some(summary)
        },
    )
    .await;
    assert_eq!(summary["inventory_synced"], true, "{summary}");
    assert_eq!(summary["totals"]["total"], 2, "{summary}");
    assert_eq!(summary["totals"]["unknown"], 2, "{summary}");
    // The EMEA operator sees EMEA only.
    let (status, emea) = get(web, "/api/summary", Some("w-emea")).await;
    assert_eq!(status, 200, "{emea}");
    let sites: Vec<&str> = emea["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["site_name"].as_str().unwrap())
        .collect();
    assert_eq!(sites, ["paris"], "{emea}");
    let paris = &emea["sites"][0];
    let paris_site = paris["site_id"].as_str().unwrap().to_string();
    let (status, devices) = get(
        web,
        &format!("/api/sites/{paris_site}/devices"),
        Some("w-emea"),
    )
    .await;
    assert_eq!(status, 200, "{devices}");
    let paris_rtr = devices["devices"][0]["id"].as_str().unwrap().to_string();

    // Logging in: the token is kept in an HttpOnly, SameSite=Strict cookie.
    let (status, wrong) = post(
        web,
        "/api/login",
        None,
        serde_json::json!({"token": "nope"}),
    )
    .await;
    assert_eq!(
        (status, &wrong["error"]),
        (401, &Value::from("unknown token"))
    );
    let login = http()
        .post(format!("http://{web}/api/login"))
        .json(&serde_json::json!({"token": "w-viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();
    let by_cookie = http()
        .get(format!("http://{web}/api/session"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(by_cookie["caller"]["role"], "viewer", "{by_cookie}");

    // Events: the router goes UP then DOWN; the stream says so, and the
    // alert it raises.
    let mut events = Events::open(web, "w-admin").await;
    events.until("hello", |_| true).await;
    let mut ingest = Ingest::over(admin_client).await;
    ingest.all(1, std::slice::from_ref(&paris_rtr), true).await;
    let sent = Instant::now();
    let up = events
        .until("state", |c| {
            c["device_id"] == paris_rtr.as_str() && c["to"] == "UP"
        })
        .await;
    println!(
        "state event {:?} after the result was acked: {up}",
        sent.elapsed()
    );
    ingest.all(2, std::slice::from_ref(&paris_rtr), false).await;
    events
        .until("state", |c| {
            c["device_id"] == paris_rtr.as_str() && c["to"] == "DOWN"
        })
        .await;
    let fired = events
        .until("alert", |a| a["alert"]["device_id"] == paris_rtr.as_str())
        .await;
    let alert_id = fired["alert"]["id"].as_str().unwrap().to_string();
    let (_, summary) = get(web, "/api/summary", Some("w-viewer")).await;
    let paris = summary["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site_name"] == "paris")
        .unwrap();
    assert_eq!(paris["worst"], "DOWN", "{summary}");

    // A viewer sees the alert but cannot acknowledge it; an admin can.
    let (status, alerts) = get(web, "/api/alerts", Some("w-viewer")).await;
    assert_eq!(
        (status, &alerts["total_count"]),
        (200, &Value::from(1)),
        "{alerts}"
    );
    let ack = format!("/api/alerts/{alert_id}/ack");
    let (status, denied) = post(web, &ack, Some("w-viewer"), serde_json::json!({})).await;
    assert_eq!(status, 403, "{denied}");
    let message = denied["error"].as_str().unwrap();
    assert!(message.starts_with("permission denied"), "{message}");
    assert!(message.contains("viewer"), "{message}");
    let (status, acked) = post(
        web,
        &ack,
        Some("w-admin"),
        serde_json::json!({"comment": "on it"}),
    )
    .await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["alert"]["state"], "ACKNOWLEDGED", "{acked}");
    assert_eq!(
        acked["alert"]["acknowledged_by"], "admin (status page)",
        "{acked}"
    );
    events
        .until("alert", |a| {
            a["event"] == "ACKNOWLEDGED" && a["alert"]["id"] == alert_id.as_str()
        })
        .await;

    // No planner answers: the cycles panel says so, and why.
    let (status, cycles) = get(web, "/api/cycles", Some("w-viewer")).await;
    assert_eq!(status, 503, "{cycles}");
    let message = cycles["error"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("planner unreachable: {NOBODY}")),
        "{message}"
    );
    // A browser still listening does not hold alerting's shutdown up, and
    // its stream ends (the page then says it lost live updates).
    let stopped = cluster.alerting.take().unwrap().stop().await;
    assert!(stopped.clean(), "{stopped:?}");
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.response.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the event stream outlived alerting");
}

/// Runs `netward alerting` with `args` until it exits; its stderr. (Not a
/// cluster: the binary is to refuse to start, and say why on stderr.)
async fn alerting_fails(args: &[&str]) -> String {
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(NETWARD)
            .args([
                "alerting",
                "--grpc-addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .args(args)
            .env_remove("NETWARD_INSECURE")
            .env_remove("NETWARD_ALERTING__WEB_ADDR")
            .env_remove("NETWARD_DATABASE_URL")
            .output(),
    )
    .await
    .expect("alerting exits at once")
    .unwrap();
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_taken_or_exposed_web_address_stops_alerting_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let error = alerting_fails(&["--web-addr", &addr]).await;
    assert!(
        error.contains(&format!("cannot listen on {addr} for the status page")),
        "{error}"
    );
    assert!(error.contains("--web-addr off"), "{error}");

    let error = alerting_fails(&["--web-addr", "0.0.0.0:0"]).await;
    assert!(
        error.contains("refusing to serve the status page on 0.0.0.0:0"),
        "{error}"
    );
    assert!(error.contains("--insecure"), "{error}");

    let error = alerting_fails(&["--web-addr", "nowhere"]).await;
    assert!(
        error.contains("invalid status page address \"nowhere\""),
        "{error}"
    );
}
