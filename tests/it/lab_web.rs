//! The status page in a real headless Chromium, driven over the W3C
//! WebDriver protocol (chromedriver) against a running stack in the lab:
//! the page loads with both sites green; a router made silent by nft turns
//! its site's tile red within one ping cycle plus the SSE delay (measured);
//! its alert, acknowledged by a click on the page, shows as acknowledged in
//! `netward alerts`. A screenshot is kept as a test artifact
//! (`$NETWARD_TEST_ARTIFACTS/status-page.png`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use netward_shared::config::Target;
use netward_shared::proto::v1;
use netward_shared::testkit::eventually;
use netward_shared::testkit::lab::{self, Rule};
use serde_json::{Value, json};

use crate::support::NETWARD;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const INTERVAL: Duration = Duration::from_secs(2);

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One chromedriver process and one browser session on it.
struct Browser {
    driver: tokio::process::Child,
    http: reqwest::Client,
    session: String,
}

impl Browser {
    async fn start() -> Browser {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
            "{CHROMEDRIVER} and {CHROMIUM} are needed: apt-get install chromium chromium-driver \
             (scripts/setup.sh does it)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        netward_shared::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        eventually("chromedriver is ready", Duration::from_secs(20), || {
            let http = http.clone();
            let url = format!("{base}/status");
            async move {
                let status: Value = http.get(url).send().await.ok()?.json().await.ok()?;
                (status["value"]["ready"] == true).then_some(())
            }
        })
        .await;
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&json!({
                "capabilities": { "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                                 "--disable-dev-shm-usage", "--window-size=1400,1100"],
                    },
                }},
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_string();
        Browser {
            driver,
            http,
            session: format!("{base}/session/{session}"),
        }
    }

    /// One WebDriver command; its `value`.
    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        self.try_command(method, path, body)
            .await
            .unwrap_or_else(|error| panic!("WebDriver {path}: {error}"))
    }

    /// One WebDriver command; its `value`, or the error it answered.
    async fn try_command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, Value> {
        let url = format!("{}{path}", self.session);
        let mut request = self.http.request(method, &url);
        if !body.is_null() {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        if answer["value"]["error"].is_string() {
            return Err(answer["value"].clone());
        }
        Ok(answer["value"].clone())
    }

    async fn navigate(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    /// Runs `script` (a function body) in the page; its return value.
    async fn script(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// Clicks the element `css` selects. The page redraws parts as events
    /// arrive, so an element found may be replaced before the click lands:
    /// then it is found again.
    async fn click(&self, css: &str) {
        for _ in 0..5 {
            let found = self
                .command(
                    reqwest::Method::POST,
                    "/element",
                    json!({ "using": "css selector", "value": css }),
                )
                .await;
            let id = found[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("no element {css}: {found}"))
                .to_string();
            let clicked = self
                .try_command(
                    reqwest::Method::POST,
                    &format!("/element/{id}/click"),
                    json!({}),
                )
                .await;
            match clicked {
                Ok(_) => return,
                Err(error) if error["error"] == "stale element reference" => continue,
                Err(error) => panic!("click on {css}: {error}"),
            }
        }
        panic!("{css} was redrawn under every click");
    }

    async fn screenshot(&self) -> Vec<u8> {
        let png = self
            .command(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap()
    }

    async fn close(mut self) {
        let _ = self.http.delete(&self.session).send().await;
        let _ = self.driver.kill().await;
    }
}

/// Every site tile's state, by site name, as the page shows it.
async fn tiles(browser: &Browser) -> Value {
    browser
        .script(
            "const t = {}; for (const e of document.querySelectorAll('.tile')) \
             t[e.dataset.siteName] = e.dataset.state; return t;",
        )
        .await
}

fn artifacts() -> PathBuf {
    std::env::var_os("NETWARD_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into()))
                .join("test-artifacts")
        })
}

/// `netward alerts --json`: (device, state) of each open alert.
async fn cli_alerts(alerting_url: &str) -> Vec<(String, String)> {
    let output = tokio::process::Command::new(NETWARD)
        .args(["alerts", "--json", "--alerting-url", alerting_url])
        .env_remove("NETWARD_TOKEN")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let alert: Value = serde_json::from_str(line).unwrap();
            (
                alert["device"].as_str().unwrap_or_default().to_string(),
                alert["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn lab_the_status_page_turns_a_silent_sites_tile_red_and_acknowledges_from_the_page() {
    if !lab::inside() {
        return;
    }
    // Two sites of two devices each.
    let rows: Vec<v1::ImportRow> = (0..4)
        .map(|k| v1::ImportRow {
            line: k + 2,
            name: format!("web-{}-{}", ["rtr", "sw"][k as usize % 2], k / 2),
            ip: format!("127.61.{}.{}", k / 2, k % 2 + 1),
            site: ["tbilisi-01", "batumi-02"][k as usize / 2].to_string(),
            region: ["east", "west"][k as usize / 2].to_string(),
            ..Default::default()
        })
        .collect();
    let cluster = crate::support::cluster()
        .planner()
        .alerting()
        .ping_executors(1)
        .executor_ids(Target::PingExecutor, &["web-ping-1"])
        .ping_interval(INTERVAL)
        .devices(rows)
        .start()
        .await;
    assert_eq!(cluster.imported.as_ref().unwrap().created, 4);
    let alerting_url = cluster.alerting_url();
    let web: SocketAddr = cluster
        .alerting
        .as_ref()
        .and_then(|alerting| alerting.web_addr)
        .expect("alerting serves its status page");

    let browser = Browser::start().await;
    let started = Instant::now();
    browser.navigate(&format!("http://{web}/")).await;
    let green = json!({ "tbilisi-01": "UP", "batumi-02": "UP" });
    eventually("both tiles green", Duration::from_secs(30), || async {
        (tiles(&browser).await == green).then_some(())
    })
    .await;
    println!(
        "page loaded, both tiles green after {:?}",
        started.elapsed()
    );
    eventually("the page is live", Duration::from_secs(10), || async {
        (browser.script("return window.netward.live;").await == true).then_some(())
    })
    .await;

    // The router of tbilisi-01 goes silent.
    let router = cluster.id("web-rtr-0").to_string();
    let silent = Rule::down("127.61.0.1");
    let silenced = Instant::now();
    eventually(
        "tbilisi-01's tile turns red",
        Duration::from_secs(20),
        || async { (tiles(&browser).await["tbilisi-01"] == "DOWN").then_some(()) },
    )
    .await;
    let red = silenced.elapsed();
    // When alerting decided, from its own record: the rest is the page's delay.
    let mut client = cluster.alerting_client();
    let status = client
        .get_device_status(v1::GetDeviceStatusRequest {
            device_id: router.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    let since = status.state_since.unwrap();
    let decided = chrono::DateTime::from_timestamp(since.seconds, since.nanos as u32).unwrap();
    let page_delay = (chrono::Utc::now() - decided).to_std().unwrap_or_default();
    println!(
        "tile red {red:?} after the nft drop (ping interval {INTERVAL:?}); \
         alerting's DOWN to the tile on the page: at most {page_delay:?}"
    );
    assert_eq!(tiles(&browser).await["batumi-02"], "UP");
    assert!(
        red <= INTERVAL * 2 + Duration::from_secs(4),
        "tile red only after {red:?}: more than one cycle plus the probe and SSE delays"
    );

    // Into the site: its devices with the router DOWN.
    browser.click(".tile[data-site-name='tbilisi-01']").await;
    let css = format!("#devices tr[data-device-id='{router}']");
    eventually(
        "the site's devices are listed",
        Duration::from_secs(10),
        || async {
            let state = browser
                .script(&format!(
                    "const r = document.querySelector(\"{css}\"); return r && r.dataset.state;"
                ))
                .await;
            (state == "DOWN").then_some(())
        },
    )
    .await;

    // Its alert, acknowledged on the page, is acknowledged for the CLI.
    let ack = format!("#alerts tr[data-device-id='{router}'] button.ack");
    eventually(
        "the alert is on the page",
        Duration::from_secs(15),
        || async {
            let found = browser
                .script(&format!("return !!document.querySelector(\"{ack}\");"))
                .await;
            (found == true).then_some(())
        },
    )
    .await;
    assert_eq!(
        cli_alerts(&alerting_url).await,
        [("web-rtr-0".to_string(), "firing".to_string())]
    );
    browser.click(&ack).await;
    let acked = Instant::now();
    eventually(
        "netward alerts shows it acknowledged",
        Duration::from_secs(10),
        || async {
            let alerts = cli_alerts(&alerting_url).await;
            (alerts == [("web-rtr-0".to_string(), "acknowledged".to_string())]).then_some(())
        },
    )
    .await;
    println!(
        "acknowledged from the page, seen by netward alerts after {:?}",
        acked.elapsed()
    );
    eventually(
        "the page shows it acknowledged",
        Duration::from_secs(10),
        || async {
            let state = browser
                .script(&format!(
                    "const r = document.querySelector(\"#alerts tr[data-device-id='{router}']\"); \
                 return r && r.dataset.state;"
                ))
                .await;
            (state == "ACKNOWLEDGED").then_some(())
        },
    )
    .await;
    // A cycle or two on the panel, then the picture.
    eventually("cycles on the page", Duration::from_secs(10), || async {
        let rows = browser
            .script("return document.querySelectorAll('#cycles tr').length;")
            .await;
        (rows.as_u64()? >= 2).then_some(())
    })
    .await;
    let png = browser.screenshot().await;
    let dir = artifacts();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("status-page.png");
    std::fs::write(&path, &png).unwrap();
    println!("screenshot: {} ({} bytes)", path.display(), png.len());
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");

    drop(silent);
    browser.close().await;
}
