//! The poller against net-snmp's snmpd: v2c, v3 authPriv (SHA-256/AES-128
//! and SHA-1/DES), and each wrong credential told apart from the others and
//! from a dead agent.

use std::net::UdpSocket;

use netward_shared::proto::v1;
use netward_shared::proto::v1::{SnmpAuthProtocol as Auth, SnmpOutcome, SnmpPrivProtocol as Priv};
use netward_snmp_poller::poll::Poller;
use netward_snmp_poller::profile::Profiles;
use netward_snmp_poller::snmp::SnmpEngine;

use crate::agents::{self, COMMUNITY, SHA1_DES, SHA256_AES};

pub async fn poller() -> Poller {
    Poller::new(
        SnmpEngine::new().await.unwrap(),
        Profiles::built_in().unwrap(),
    )
}

fn text(sample: &v1::SnmpSample, name: &str) -> Option<String> {
    sample
        .values
        .iter()
        .find(|v| v.name == name)
        .and_then(|v| match &v.value {
            Some(v1::scalar_value::Value::Text(text)) => Some(text.clone()),
            _ => None,
        })
}

#[tokio::test]
async fn v2c_poll_reads_system_host_and_interfaces() {
    if !agents::tools(&["snmpd", "snmpget"]) {
        return;
    }
    let agent = agents::snmpd();
    let poller = poller().await;
    let target = agents::v2c(agent.port, COMMUNITY, "auto");
    let (sample, hints) = poller.poll("127.0.0.1", "dev-1", &target, None).await;
    assert_eq!(sample.outcome(), SnmpOutcome::Ok, "{}", sample.error_detail);
    assert!(!sample.partial);
    // snmpd's sysObjectID is under net-snmp's enterprise: host + interfaces.
    assert!(
        sample.sys_object_id.starts_with("1.3.6.1.4.1.8072."),
        "{}",
        sample.sys_object_id
    );
    assert_eq!(sample.profile, "net-snmp");
    assert_eq!(hints.resolved_profile, "net-snmp");
    assert_eq!(
        text(&sample, "sysName").as_deref(),
        Some("netward-test-agent")
    );
    assert!(sample.sys_uptime_ticks.is_some());
    assert!(sample.values.iter().any(|v| v.name == "hrStorageDescr"));
    let lo = sample
        .interfaces
        .iter()
        .find(|i| i.if_name == "lo")
        .unwrap();
    assert_eq!(lo.oper_status(), v1::IfOperStatus::Up);
    assert!(lo.hc && lo.in_octets.is_some() && lo.labels_refreshed);
    assert!(sample.requests_sent >= 3, "{}", sample.requests_sent);
    assert!((1..=100).contains(&hints.max_repetitions));
    assert!(hints.labels_refreshed_at.is_some());
    assert!(hints.engine_id.is_empty(), "no engine for v2c");
}

#[tokio::test]
async fn v3_auth_priv_sha256_aes128_and_sha1_des() {
    if !agents::tools(&["snmpd", "snmpget"]) {
        return;
    }
    let agent = agents::snmpd();
    for ((user, _, auth_key, _, priv_key), auth, privacy) in [
        (SHA256_AES, Auth::Sha256, Priv::Aes128),
        (SHA1_DES, Auth::Sha1, Priv::Des),
    ] {
        let target = agents::v3(agent.port, user, auth, auth_key, privacy, priv_key);
        let (sample, hints) = poller()
            .await
            .poll("127.0.0.1", "dev-v3", &target, None)
            .await;
        assert_eq!(
            sample.outcome(),
            SnmpOutcome::Ok,
            "{user}: {}",
            sample.error_detail
        );
        assert_eq!(
            text(&sample, "sysName").as_deref(),
            Some("netward-test-agent")
        );
        assert!(!hints.engine_id.is_empty(), "{user}: engine id learned");
        assert!(hints.engine_time_at.is_some());

        // A fresh poller given the hints (as the planner hands them to
        // whichever poller gets the device) needs no discovery round trip.
        let cold = sample.requests_sent;
        let mut warm_target = target.clone();
        warm_target.hints = Some(hints.clone());
        let (warm, _) = poller()
            .await
            .poll("127.0.0.1", "dev-v3", &warm_target, None)
            .await;
        assert_eq!(
            warm.outcome(),
            SnmpOutcome::Ok,
            "{user}: {}",
            warm.error_detail
        );
        assert!(
            warm.requests_sent < cold,
            "{user}: {} with hints, {cold} without",
            warm.requests_sent
        );
    }
}

#[tokio::test]
async fn wrong_credentials_each_have_their_own_outcome() {
    if !agents::tools(&["snmpd", "snmpget"]) {
        return;
    }
    let agent = agents::snmpd();
    let poller = poller().await;
    let (user, _, auth_key, _, priv_key) = SHA256_AES;
    let cases = [
        (
            "wrong community",
            agents::v2c(agent.port, "not-the-community", "system"),
            SnmpOutcome::WrongCommunity,
            "not-the-community",
        ),
        (
            "wrong auth key",
            agents::v3(
                agent.port,
                user,
                Auth::Sha256,
                "wrong-auth-key",
                Priv::Aes128,
                priv_key,
            ),
            SnmpOutcome::AuthFailure,
            "wrong-auth-key",
        ),
        (
            "unknown user",
            agents::v3(
                agent.port,
                "nobody-here",
                Auth::Sha256,
                auth_key,
                Priv::Aes128,
                priv_key,
            ),
            SnmpOutcome::UnknownUser,
            auth_key,
        ),
        (
            "wrong privacy key",
            agents::v3(
                agent.port,
                user,
                Auth::Sha256,
                auth_key,
                Priv::Aes128,
                "wrong-priv-key",
            ),
            SnmpOutcome::DecryptionError,
            "wrong-priv-key",
        ),
    ];
    for (what, target, expected, secret) in cases {
        let (sample, _) = poller.poll("127.0.0.1", "", &target, None).await;
        assert_eq!(
            sample.outcome(),
            expected,
            "{what}: {}",
            sample.error_detail
        );
        assert!(!sample.error_detail.is_empty(), "{what}");
        assert!(
            !sample.error_detail.contains(secret),
            "{what}: {}",
            sample.error_detail
        );
        assert!(sample.values.is_empty(), "{what}");
    }

    // A port where nothing answers is a timeout, not a wrong community.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut target = agents::v2c(port, COMMUNITY, "system");
    target.timeout_ms = 200;
    let (sample, _) = poller.poll("127.0.0.1", "", &target, None).await;
    assert_eq!(
        sample.outcome(),
        SnmpOutcome::Timeout,
        "{}",
        sample.error_detail
    );
    assert_eq!(sample.requests_sent, 3, "2 attempts and the engine probe");
}

/// The issue this guards: net-snmp answers every SNMPv3 GETBULK whose
/// response outgrows the request's msgMaxSize with genErr at index 0. The
/// `auto` profile resolves to `net-snmp` (host + interfaces, the widest
/// answers); with SHA-256/AES-128 authPriv it must read both tables.
#[tokio::test]
async fn v3_auth_priv_with_the_auto_profile_reads_host_and_interfaces() {
    if !agents::tools(&["snmpd", "snmpget"]) {
        return;
    }
    let agent = agents::snmpd();
    let (user, _, auth_key, _, priv_key) = SHA256_AES;
    let mut target = agents::v3(
        agent.port,
        user,
        Auth::Sha256,
        auth_key,
        Priv::Aes128,
        priv_key,
    );
    target.profile = "auto".into();
    target.refresh_labels = true;
    let poller = poller().await;
    let (sample, hints) = poller.poll("127.0.0.1", "dev-v3-auto", &target, None).await;
    assert_eq!(sample.outcome(), SnmpOutcome::Ok, "{}", sample.error_detail);
    assert!(
        !sample.partial && sample.error_detail.is_empty(),
        "{}",
        sample.error_detail
    );
    assert_eq!(sample.profile, "net-snmp");
    assert_eq!(hints.resolved_profile, "net-snmp");
    assert!(sample.values.iter().any(|v| v.name == "hrStorageDescr"));
    let lo = sample
        .interfaces
        .iter()
        .find(|i| i.if_name == "lo")
        .unwrap();
    assert!(lo.hc && lo.in_octets.is_some());

    // The next poll, as the planner hands it over: the remembered profile
    // with the system scalars riding along.
    let mut warm = target.clone();
    warm.hints = Some(hints);
    warm.refresh_labels = false;
    let (sample, _) = poller.poll("127.0.0.1", "dev-v3-auto", &warm, None).await;
    assert_eq!(sample.outcome(), SnmpOutcome::Ok, "{}", sample.error_detail);
    assert!(!sample.interfaces.is_empty() && sample.sys_uptime_ticks.is_some());
    assert!(sample.values.iter().any(|v| v.name == "hrStorageUsed"));
}
