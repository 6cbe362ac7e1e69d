//! The contract suite: every RPC of `proto/netward/v1` called over the wire
//! by the real grpcurl (reflection, JSON) on the real binary's targets, at
//! least once with a valid request (`ok`, `stream_ok`) and once with a
//! request it must refuse (`err`, `stream_err`, naming the status code
//! the proto documents). One file per service; `coverage` below reads the
//! protos and these files and fails when an RPC has no valid or no refused
//! call, printing the coverage table.

mod alerting;
pub(crate) mod coverage;
mod inventory;
mod planner;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

/// One target to call: its address and the bearer token to send, if any.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

/// What grpcurl printed for one call.
#[derive(Debug)]
pub struct Answer {
    /// The response messages, in order (one for a unary call).
    pub messages: Vec<serde_json::Value>,
    /// The status code as grpcurl names it (`InvalidArgument`); `None` = OK.
    pub code: Option<String>,
    /// The status message.
    pub message: String,
}

impl Target {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, token: None }
    }

    pub fn with_token(addr: SocketAddr, token: &str) -> Self {
        Self {
            addr,
            token: Some(token.to_string()),
        }
    }

    /// Calls `method` (`netward.v1.Service/Method`) with the JSON request
    /// messages `requests` (several, one after another, for client
    /// streams), for at most `max_time`.
    pub async fn call(&self, method: &str, requests: &str, max_time: Duration) -> Answer {
        let mut command = Command::new("grpcurl");
        command.args([
            "-plaintext",
            "-format-error",
            "-max-time",
            &format!("{:.1}", max_time.as_secs_f64()),
            "-d",
            "@",
        ]);
        if let Some(token) = &self.token {
            command.args(["-H", &format!("authorization: Bearer {token}")]);
        }
        command
            .arg(self.addr.to_string())
            .arg(method)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .expect("grpcurl must be installed (scripts/setup.sh installs it)");
        let mut stdin = child.stdin.take().expect("piped");
        stdin
            .write_all(requests.as_bytes())
            .await
            .expect("write the request");
        drop(stdin);
        let output = child.wait_with_output().await.expect("grpcurl runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let messages = json_values(&stdout);
        if output.status.success() {
            return Answer {
                messages,
                code: None,
                message: String::new(),
            };
        }
        // -format-error prints the status as JSON on standard error.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let status = json_values(&stderr)
            .into_iter()
            .find(|value| value.get("code").is_some())
            .unwrap_or_else(|| {
                panic!("grpcurl {method} failed without a status: {stdout}{stderr}")
            });
        let code = status["code"].as_i64().unwrap_or_default();
        Answer {
            messages,
            code: Some(code_name(code).to_string()),
            message: status["message"].as_str().unwrap_or_default().to_string(),
        }
    }

    /// A unary call that must succeed; its response.
    pub async fn ok(&self, method: &str, request: &str) -> serde_json::Value {
        let answer = self.call(method, request, Duration::from_secs(20)).await;
        assert!(
            answer.code.is_none(),
            "{method} {request}: {:?}: {}",
            answer.code,
            answer.message
        );
        answer.messages.into_iter().next().unwrap_or_default()
    }

    /// A unary call that must fail with `code` (grpcurl's name, e.g.
    /// `InvalidArgument`); its status message.
    pub async fn err(&self, method: &str, code: &str, request: &str) -> String {
        let answer = self.call(method, request, Duration::from_secs(20)).await;
        assert_eq!(
            answer.code.as_deref(),
            Some(code),
            "{method} {request}: {}",
            answer.message
        );
        answer.message
    }

    /// A streaming call that must deliver its messages: the stream may end
    /// OK or be cut at `max_time` (DeadlineExceeded, for endless watches).
    pub async fn stream_ok(
        &self,
        method: &str,
        requests: &str,
        max_time: Duration,
    ) -> Vec<serde_json::Value> {
        let answer = self.call(method, requests, max_time).await;
        assert!(
            matches!(answer.code.as_deref(), None | Some("DeadlineExceeded")),
            "{method}: {:?}: {}",
            answer.code,
            answer.message
        );
        answer.messages
    }

    /// A streaming call that must end with `code`; its status message.
    pub async fn stream_err(&self, method: &str, code: &str, requests: &str) -> String {
        let answer = self.call(method, requests, Duration::from_secs(20)).await;
        assert_eq!(
            answer.code.as_deref(),
            Some(code),
            "{method}: {}",
            answer.message
        );
        answer.message
    }
}

/// grpcurl's name of a gRPC code number, as it prints `Code: …`.
fn code_name(code: i64) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "?",
    }
}

/// The JSON values grpcurl printed one after another.
fn json_values(text: &str) -> Vec<serde_json::Value> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<serde_json::Value>()
        .map_while(Result::ok)
        .collect()
}
