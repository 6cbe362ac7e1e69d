//! Planning time of one ping cycle for a large fleet, and how many devices
//! each cycle really probes with one executor (not a test: a benchmark that
//! prints its figures). Run it in release mode:
//!
//! ```sh
//! cargo run --release -p netward-planner --example plan_bench -- 100000
//! ```
//!
//! It fills the planner's inventory copy with `N` devices (sites of 100: a
//! router and 99 devices behind it), then:
//!
//! - opens 20 cycles with no executor (every batch unserved, so nothing stays
//!   in flight) and prints the planning time — what
//!   `netward_planner_cycle_planning_seconds` measures: the first cycle after an
//!   inventory change builds the plan, the others reuse it;
//! - registers one simulated executor that finishes each batch 1.5-3 s after
//!   it was handed out, drives 10 cycles on chosen instants (50 ms steps, as
//!   the planner's loop does) and prints, per cycle, the devices probed and
//!   skipped. In steady state every device is probed every cycle.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use netward_planner::{Planner, PlannerConfig};
use netward_shared::proto::v1;
use netward_shared::proto::v1::inventory_service_client::InventoryServiceClient;
use tokio::sync::mpsc;

const INTERVAL: Duration = Duration::from_secs(10);
const STEP: Duration = Duration::from_millis(50);
const CYCLES: u32 = 10;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let devices: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(100_000);
    planning_time(devices)?;
    probing(devices)?;
    Ok(())
}

/// A planner whose inventory copy holds `devices` devices, leading.
fn planner(devices: usize) -> Result<Planner, Box<dyn std::error::Error>> {
    // Never dialled: the copy is filled by hand.
    let inventory = InventoryServiceClient::new(netward_shared::client::connect(
        "http://127.0.0.1:1",
        &Default::default(),
    )?);
    let planner = Planner::new(&PlannerConfig::default(), inventory)?;
    {
        let mut copy = planner.copy.write().map_err(|_| "poisoned")?;
        for i in 0..devices {
            let site = i / 100;
            let router = format!("dev-{}", site * 100);
            let id = format!("dev-{i}");
            copy.insert(v1::Device {
                id: id.clone(),
                name: id,
                ip_address: format!("127.{}.{}.{}", 1 + site / 250, site % 250, i % 100 + 1),
                site_name: format!("site-{site}"),
                enabled: Some(true),
                parent_device_id: if i % 100 == 0 { String::new() } else { router },
                ..Default::default()
            });
        }
        copy.synced = true;
    }
    planner.scheduler.set_leadership(true, 1);
    Ok(planner)
}

fn planning_time(devices: usize) -> Result<(), Box<dyn std::error::Error>> {
    let planner = planner(devices)?;
    let scheduler = &planner.scheduler;
    let mut times = Vec::new();
    let start = tokio::time::Instant::now();
    for k in 0..20u32 {
        let began = Instant::now();
        let cycle = scheduler
            .open_cycle(v1::ExecutorKind::Ping, start + INTERVAL * k)
            .ok_or("no cycle")?;
        times.push(began.elapsed());
        // No executor is connected: every batch becomes unserved when due,
        // so nothing stays in flight and the next cycle plans everything.
        scheduler.dispatch_due(start + INTERVAL * (k + 1));
        let state = scheduler.lock();
        let summary =
            scheduler.summary(state.cycles.iter().find(|c| c.id == cycle).ok_or("cycle")?);
        if k == 0 {
            println!(
                "AUTO-SCALING: {} devices → batch size {} → {} batches",
                summary.device_count, summary.batch_size, summary.batch_count
            );
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    // The first cycle builds the plan (depths, parent-first sort, targets);
    // later ones reuse it until the inventory changes.
    let first = times.remove(0);
    times.sort();
    println!(
        "planning time for {devices} devices: first cycle (plan built) {:.1} ms; next {} cycles: min {:.1} ms, median {:.1} ms, max {:.1} ms",
        ms(first),
        times.len(),
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
    Ok(())
}

/// One executor with room for the whole fleet (capacity is not what is
/// measured) that reports each batch done 1.5-3 s after receiving it.
fn probing(devices: usize) -> Result<(), Box<dyn std::error::Error>> {
    let planner = planner(devices)?;
    let scheduler = &planner.scheduler;
    let start = tokio::time::Instant::now();
    let (tx, mut rx) = mpsc::channel(netward_planner::cycle::WORK_CHANNEL);
    let register = v1::Register {
        executor_id: "bench".into(),
        kind: v1::ExecutorKind::Ping as i32,
        capacity: devices as u32,
        instance_token: "bench".into(),
        ..Default::default()
    };
    let (session, _) = scheduler
        .register(register, "bench".into(), tx, start)
        .map_err(|e| e.to_string())?;
    // A fixed pseudo-random sequence of durations: runs are comparable.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut duration = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        Duration::from_millis(1500 + seed % 1501)
    };
    let mut running: Vec<(tokio::time::Instant, v1::BatchDone)> = Vec::new();
    let mut probed: HashMap<u64, u64> = HashMap::new();
    let mut cycles = Vec::new();
    let end = start + INTERVAL * CYCLES + Duration::from_secs(5);
    let mut now = start;
    while now <= end {
        running.retain(|(done_at, done)| {
            let due = *done_at <= now;
            if due {
                scheduler.batch_done(session, done, now);
            }
            !due
        });
        scheduler.touch(session, now);
        if cycles.len() < CYCLES as usize && now >= start + INTERVAL * cycles.len() as u32 {
            cycles.push(
                scheduler
                    .open_cycle(v1::ExecutorKind::Ping, now)
                    .ok_or("no cycle")?,
            );
        }
        scheduler.dispatch_due(now);
        while let Ok(Ok(message)) = rx.try_recv() {
            if let Some(v1::work_response::Msg::Assignment(a)) = message.msg {
                *probed.entry(a.cycle_id).or_default() += a.targets.len() as u64;
                let done = v1::BatchDone {
                    cycle_id: a.cycle_id,
                    batch_id: a.batch_id,
                    leader_epoch: a.leader_epoch,
                    devices: a.targets.len() as u32,
                    succeeded: a.targets.len() as u32,
                    ..Default::default()
                };
                running.push((now + duration(), done));
            }
        }
        scheduler.check_timers(now);
        now += STEP;
    }
    println!(
        "one executor finishing each batch 1.5-3 s after it is handed out, {devices} devices, {CYCLES} cycles:"
    );
    let state = scheduler.lock();
    for (k, id) in cycles.iter().enumerate() {
        let cycle = state.cycles.iter().find(|c| c.id == *id).ok_or("cycle")?;
        let summary = scheduler.summary(cycle);
        let sent = probed.get(id).copied().unwrap_or_default();
        println!(
            "  cycle {k}: probed {sent} of {devices} ({:.1} %), skipped {}, unserved {}, overruns {}",
            100.0 * sent as f64 / devices as f64,
            summary.skipped,
            summary.unserved_devices,
            summary.overruns
        );
    }
    Ok(())
}
