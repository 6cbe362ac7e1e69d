//! Cross-service tests of the real `netward` binary: contract tests through
//! real clients (grpcurl via reflection), and later the end-to-end, fault
//! and network-lab tests.

#![allow(clippy::unwrap_used)]

mod alerting;
mod alerting_crash;
mod alerting_rules;
mod audit;
mod availability;
mod cli_changes;
mod contract;
mod executor;
mod executor_ids;
mod executor_shutdown;
mod faults;
mod grants;
mod health;
mod inventory_cli;
mod lab_e2e;
mod lab_gap;
mod lab_loss;
mod lab_up;
mod lab_web;
mod planner;
mod probe;
mod prometheus;
mod readme;
mod roles;
mod snmp_isp;
mod snmp_v3;
mod stack;
mod support;
mod tls;
mod trace;
mod up;
mod web;
mod wire;
