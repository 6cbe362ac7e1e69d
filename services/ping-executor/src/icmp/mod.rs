//! The ICMP probing engine: one socket per address family shared by every
//! probe of the process, a random identifier per engine, replies matched on
//! (identifier, sequence, source, payload), ICMP errors on (identifier,
//! sequence, quoted destination, quoted payload), pacing, and the parser for
//! bytes off the wire.
//!
//! Own implementation on socket2 + tokio + nix (no `unsafe`), not surge-ping
//! 0.9.1, because of CPU. Loopback, one echo per target, 1 s timeout, 2 cores,
//! fping 5.1 `-c1 -r0 -i0 -t1000` in the same run (`examples/ping_bench.rs`;
//! these surge-ping rows were measured earlier with a probe crate; the
//! example measures it too with `--features surge-bench`, and
//! docs/architecture.md has those figures):
//!
//! | targets | run | wall | CPU | ratio to fping (wall, CPU) |
//! |---|---|---|---|---|
//! | 10,000 | surge-ping, paced by concurrency 50 | 0.31 s | 0.43 s | 1.35, 1.95 |
//! | 10,000 | this engine, default budget 60,000 pps | 0.17 s | 0.08–0.11 s | 1.2–1.7, 0.5–1.1 |
//! | 10,000 | this engine, no budget | 0.08–0.09 s | 0.09 s | 0.4–0.95, 0.46–0.91 |
//! | 60,000 | surge-ping, paced by concurrency 50–100 | 1.62 s | 2.5 s | 1.25, 1.94 |
//! | 60,000 | this engine, default budget 60,000 pps | 1.03 s | 0.53–0.68 s | 1.2–1.4, 0.65–0.83 |
//! | 60,000 | this engine, no budget | 0.36–0.57 s | 0.42–0.60 s | 0.44–0.68, 0.52–0.74 |
//!
//! (fping took 0.10–0.15 s and 0.67–0.85 s; the host's speed drifts by
//! ±25 % between runs, hence the ranges.) With the budget, wall time is the
//! budget's doing by design: 60,000 packets at 60,000 pps take 1 s.
//!
//! Where the CPU went, and what took it back:
//! - One engine task per family owns the socket, the pending table, the
//!   deadlines and the send queue (fping's single loop): no lock on the hot
//!   path, no timer per packet (one per engine), sends never contend for the
//!   socket lock. Probes talk to it through a channel and a oneshot each.
//! - The engine runs on a thread of its own (see [`Pinger`]): on the caller's
//!   multi-thread runtime every reply woke the worker parked in epoll.
//! - Results are handed to probes once per engine turn, not one by one.
//! - A kernel BPF filter on raw sockets passes only echo replies and ICMP
//!   errors (a raw socket otherwise also gets every echo *request* on
//!   loopback, and all other ICMP of the host).
//! - Pacing is one atomic reservation (GCRA), and a budget-limited engine
//!   sleeps at least `PACING_TICK`, sending what accrued within the burst.
//!
//! Files: `api.rs` (the public types), `pinger.rs` (the handle and one
//! probe), `engine.rs` (the loop), `socket.rs` (sockets and BPF),
//! `packet.rs` (building requests), `parse.rs` (the reply parser),
//! `quote.rs` (matching an ICMP error to the request it quotes),
//! `stats.rs` (counters, metrics, the recent window).

mod api;
mod engine;
mod packet;
mod parse;
mod pinger;
mod quote;
mod socket;
mod stats;

pub use api::{
    PingerConfig, PingerError, PingerStats, ProbeFailure, ProbeOutcome, ProbeSpec, SocketKind,
    SocketMode,
};
pub use parse::{ErrorKind, IcmpMessage, Layout, ParseError, parse};
pub use pinger::Pinger;
pub use quote::{Quote, Unmatched, check as check_quote};
