//! `netward health --addr HOST:PORT`: asks a target's `grpc.health.v1`
//! service whether it serves, and exits 0 only if it does. Container health
//! checks run it (the runtime image has no shell, grpcurl or curl), so every
//! failure says why in one line: unreachable, no answer in time, or the
//! status the server reported.

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use netward_shared::tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::{TlsArgs, describe_status};

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The target's gRPC address (HOST:PORT, or a URL such as https://HOST:PORT); a bare HOST:PORT is dialled over TLS when --tls-ca or --tls-cert is given
    #[arg(long, value_name = "HOST:PORT")]
    addr: String,
    /// Service to ask about (e.g. netward.v1.PlannerService); empty: the whole server
    #[arg(long, value_name = "NAME", default_value = "")]
    service: String,
    /// How long connecting and the check may take in all (2s, 500ms, 1m)
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_timeout)]
    timeout: Duration,
    #[command(flatten)]
    tls: TlsArgs,
}

/// Succeeds when the server reports SERVING; otherwise the error says what
/// it reported, or why it could not be asked. Health is open on every
/// target, so no token is sent.
pub async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let url = if args.addr.contains("://") {
        args.addr.clone()
    } else if args.tls.any() {
        format!("https://{}", args.addr)
    } else {
        format!("http://{}", args.addr)
    };
    let mut endpoint = Endpoint::from_shared(url.clone())
        .with_context(|| format!("invalid address {:?}", args.addr))?
        .connect_timeout(args.timeout)
        .timeout(args.timeout);
    if url.starts_with("https://") {
        endpoint = endpoint
            .tls_config(args.tls.config().client()?)
            .with_context(|| format!("cannot set up TLS to {url}"))?;
    }
    let what = if args.service.is_empty() {
        "the server".to_string()
    } else {
        format!("service {:?}", args.service)
    };
    let check = async {
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: args.service.clone(),
            })
            .await
            .map_err(|status| {
                anyhow::anyhow!(
                    "health check of {what} at {url}: {}",
                    describe_status(&status)
                )
            })
    };
    let response = tokio::time::timeout(args.timeout, check)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {url} within {:?}", args.timeout))??;
    let status = response.into_inner().status;
    match ServingStatus::try_from(status) {
        Ok(ServingStatus::Serving) => {
            println!("{url}: {what} is SERVING");
            Ok(())
        }
        Ok(other) => anyhow::bail!("{url}: {what} is {}", other.as_str_name()),
        Err(_) => anyhow::bail!("{url}: {what} reported an unknown status {status}"),
    }
}

/// `2s`, `500ms`, `1m`, or a bare number of seconds; never zero.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 2s, 500ms)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?} (use ms, s or m)"
            ));
        }
    };
    if !(seconds > 0.0 && seconds <= 3600.0) {
        return Err(format!("{text:?} must be more than 0 and at most an hour"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_with_and_without_a_unit() {
        assert_eq!(parse_timeout("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_timeout("3"), Ok(Duration::from_secs(3)));
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("2h").is_err());
        assert!(parse_timeout("soon").is_err());
    }
}
