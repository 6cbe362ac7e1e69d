//! Planning time of one ping cycle for a large fleet (not a test: a
//! benchmark that prints its figures). Run it in release mode:
//!
//! ```sh
//! cargo run --release -p netward-planner --example plan_bench -- 100000
//! ```
//!
//! It fills the planner's inventory copy with `N` devices (sites of 100: a
//! router and 99 devices behind it), then opens 20 cycles, releasing every
//! device between them (as if every batch finished), and prints the
//! planning time — what `planner_cycle_planning_seconds` measures: the
//! first cycle after an inventory change builds the plan, the others reuse it.

use std::time::{Duration, Instant};

use netward_planner::{Planner, PlannerConfig};
use netward_shared::proto::v1;
use netward_shared::proto::v1::inventory_service_client::InventoryServiceClient;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let devices: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(100_000);
    // Never dialled: the copy is filled by hand.
    let inventory =
        InventoryServiceClient::new(netward_shared::client::connect("http://127.0.0.1:1", None)?);
    let planner = Planner::new(&PlannerConfig::default(), inventory)?;
    {
        let mut copy = planner.copy.write().map_err(|_| "poisoned")?;
        for i in 0..devices {
            let site = i / 100;
            let router = format!("dev-{}", site * 100);
            let id = format!("dev-{i}");
            copy.devices.insert(
                id.clone(),
                v1::Device {
                    id: id.clone(),
                    name: id,
                    ip_address: format!("127.{}.{}.{}", 1 + site / 250, site % 250, i % 100 + 1),
                    site_name: format!("site-{site}"),
                    enabled: Some(true),
                    parent_device_id: if i % 100 == 0 { String::new() } else { router },
                    ..Default::default()
                },
            );
        }
        copy.synced = true;
    }
    let scheduler = &planner.scheduler;
    scheduler.set_leadership(true, 1);
    let mut times = Vec::new();
    let start = tokio::time::Instant::now();
    for k in 0..20u32 {
        let began = Instant::now();
        let cycle = scheduler
            .open_cycle(v1::ExecutorKind::Ping, start + Duration::from_secs(10) * k)
            .ok_or("no cycle")?;
        times.push(began.elapsed());
        // No executor is connected: every batch becomes unserved when due,
        // so nothing stays in flight and the next cycle plans everything.
        scheduler.dispatch_due(start + Duration::from_secs(10) * (k + 1));
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
