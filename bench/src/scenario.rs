//! The scenario table: what `quick` and `full` run.

use crate::server::{App, Family, Variant};

/// Where the server and the loader run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Server on CPU 0 with one worker, loader (one thread) on CPU 1.
    Pinned,
    /// Server with two workers and a two-thread loader, placed by the kernel.
    Unpinned,
}

impl Placement {
    pub fn server_cpus(self) -> Option<Vec<usize>> {
        match self {
            Placement::Pinned => Some(vec![0]),
            Placement::Unpinned => None,
        }
    }

    pub fn loader_cpus(self) -> Vec<usize> {
        match self {
            Placement::Pinned => vec![1],
            Placement::Unpinned => Vec::new(),
        }
    }

    pub fn workers(self) -> usize {
        match self {
            Placement::Pinned => 1,
            Placement::Unpinned => 2,
        }
    }

    pub fn loader_threads(self) -> usize {
        match self {
            Placement::Pinned => 1,
            Placement::Unpinned => 2,
        }
    }

    fn short(self) -> &'static str {
        match self {
            Placement::Pinned => "pinned",
            Placement::Unpinned => "2 workers",
        }
    }
}

/// What a scenario measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// Closed-loop load: req/s, latency, CPU per request.
    Closed {
        conns: usize,
        size: usize,
        inflight: usize,
    },
    /// Open-loop load at a fixed rate: latency and CPU per request.
    Open {
        conns: usize,
        size: usize,
        rate: f64,
    },
    /// Server memory per idle connection.
    IdleMemory { conns: usize },
    /// Server system calls per request under closed-loop load (no warm-up).
    Syscalls { conns: usize, size: usize },
    /// Closed-loop echo with and without the read deadline moved on every request:
    /// CPU per request, paired repeats.
    DeadlineChurn { conns: usize, size: usize },
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub id: String,
    pub title: String,
    pub app: App,
    pub placement: Placement,
    pub kind: Kind,
    pub in_quick: bool,
}

/// HTTP pipeline depth (TechEmpower's plaintext test uses 16).
pub const HTTP_PIPELINE: usize = 16;
/// The open-loop rate of the measurements.
pub const OPEN_RATE: f64 = 40_000.0;
/// Paired repeats of the deadline-churn comparison.
pub const DEADLINE_REPEATS: usize = 8;

fn size_label(size: usize) -> String {
    if size >= 1024 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// Every scenario, in run order.
pub fn table() -> Vec<Scenario> {
    use Placement::*;
    let mut v = Vec::new();
    for placement in [Pinned, Unpinned] {
        for size in [64, 4096] {
            for conns in [1, 50, 500, 5000] {
                v.push(Scenario {
                    id: format!("echo-{size}-c{conns}-{placement:?}").to_lowercase(),
                    title: format!(
                        "echo {}, {conns} conn{}, {}",
                        size_label(size),
                        if conns == 1 { "" } else { "s" },
                        placement.short()
                    ),
                    app: App::Echo,
                    placement,
                    kind: Kind::Closed {
                        conns,
                        size,
                        inflight: 1,
                    },
                    in_quick: placement == Pinned && size == 64 && conns == 50,
                });
            }
        }
        for conns in [50, 500] {
            v.push(Scenario {
                id: format!("http-c{conns}-{placement:?}").to_lowercase(),
                title: format!(
                    "HTTP, {conns} conns, pipeline {HTTP_PIPELINE}, {}",
                    placement.short()
                ),
                app: App::Http,
                placement,
                kind: Kind::Closed {
                    conns,
                    size: 0,
                    inflight: HTTP_PIPELINE,
                },
                in_quick: placement == Pinned && conns == 50,
            });
        }
        // The same HTTP load on hyper 1.x: hyper on netpoll (examples/hyper_server.rs) and
        // hyper on tokio only.
        v.push(Scenario {
            id: format!("hyper-c50-{placement:?}").to_lowercase(),
            title: format!(
                "hyper on each runtime, HTTP, 50 conns, pipeline {HTTP_PIPELINE}, {}",
                placement.short()
            ),
            app: App::Hyper,
            placement,
            kind: Kind::Closed {
                conns: 50,
                size: 0,
                inflight: HTTP_PIPELINE,
            },
            in_quick: false,
        });
    }
    v.push(Scenario {
        id: "echo-open-40k-c50".into(),
        title: format!(
            "echo 64 B, 50 conns, open loop {}k req/s, pinned",
            OPEN_RATE / 1e3
        ),
        app: App::Echo,
        placement: Pinned,
        kind: Kind::Open {
            conns: 50,
            size: 64,
            rate: OPEN_RATE,
        },
        in_quick: false,
    });
    v.push(Scenario {
        id: "syscalls-echo-c50".into(),
        title: "system calls per echo round trip, 64 B, 50 conns, pinned".into(),
        app: App::Echo,
        placement: Pinned,
        kind: Kind::Syscalls {
            conns: 50,
            size: 64,
        },
        in_quick: false,
    });
    v.push(Scenario {
        id: "deadline-churn-c50".into(),
        title: "echo 64 B, 50 conns, pinned: read deadline moved on every request".into(),
        app: App::Echo,
        placement: Pinned,
        kind: Kind::DeadlineChurn {
            conns: 50,
            size: 64,
        },
        in_quick: false,
    });
    for conns in [10_000, 50_000] {
        v.push(Scenario {
            id: format!("idle-memory-c{conns}"),
            title: format!("idle memory, {conns} conns"),
            app: App::Echo,
            placement: Pinned,
            kind: Kind::IdleMemory { conns },
            in_quick: false,
        });
    }
    v
}

impl Scenario {
    /// The servers compared, given the families available in this run (hyper: netpoll and
    /// tokio only).
    pub fn variants(&self, families: &[Family]) -> Vec<Variant> {
        let families: Vec<Family> = families
            .iter()
            .copied()
            .filter(|&f| self.app.served_by(f))
            .collect();
        match self.kind {
            // The floor has no deadlines to move.
            Kind::DeadlineChurn { .. } => families
                .iter()
                .filter(|&&f| f != Family::Floor)
                .flat_map(|&f| [Variant::plain(f), Variant::with_deadline(f)])
                .collect(),
            _ => families.into_iter().map(Variant::plain).collect(),
        }
    }

    pub fn repeats(&self, asked: usize) -> usize {
        match self.kind {
            Kind::DeadlineChurn { .. } => asked.max(DEADLINE_REPEATS),
            _ => asked,
        }
    }

    /// File descriptors the server (and the loader) need.
    pub fn fds_needed(&self) -> u64 {
        let conns = match self.kind {
            Kind::Closed { conns, .. }
            | Kind::Open { conns, .. }
            | Kind::IdleMemory { conns }
            | Kind::Syscalls { conns, .. }
            | Kind::DeadlineChurn { conns, .. } => conns,
        };
        conns as u64 + 256
    }

    /// Seconds one run takes, roughly, for the time-left estimate.
    pub fn estimate_secs(&self, warmup: f64, duration: f64) -> f64 {
        let setup = 0.3;
        match self.kind {
            Kind::Closed { conns, .. } | Kind::Open { conns, .. } => {
                setup + warmup + duration + conns as f64 / 20_000.0
            }
            Kind::Syscalls { .. } | Kind::DeadlineChurn { .. } => setup + warmup + duration,
            Kind::IdleMemory { conns } => setup + 1.0 + conns as f64 / 15_000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_ids_are_unique() {
        let t = table();
        let mut ids: Vec<&str> = t.iter().map(|s| s.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), t.len());
    }

    #[test]
    fn quick_runs_echo_and_http_pinned() {
        let quick: Vec<_> = table().into_iter().filter(|s| s.in_quick).collect();
        assert_eq!(quick.len(), 2);
        assert!(quick.iter().any(|s| s.app == App::Echo));
        assert!(quick.iter().any(|s| s.app == App::Http));
        assert!(quick.iter().all(|s| s.placement == Placement::Pinned));
    }

    #[test]
    fn hyper_runs_in_full_only_on_netpoll_and_tokio_at_the_http_pipeline_depth() {
        let hyper: Vec<_> = table()
            .into_iter()
            .filter(|s| s.app == App::Hyper)
            .collect();
        let ids: Vec<&str> = hyper.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["hyper-c50-pinned", "hyper-c50-unpinned"]);
        for s in &hyper {
            assert!(!s.in_quick);
            assert_eq!(
                s.kind,
                Kind::Closed {
                    conns: 50,
                    size: 0,
                    inflight: HTTP_PIPELINE
                }
            );
            let every = [Family::Netpoll, Family::Tokio, Family::Go, Family::Floor];
            assert_eq!(
                s.variants(&every),
                [
                    Variant::plain(Family::Netpoll),
                    Variant::plain(Family::Tokio)
                ]
            );
            assert!(s.variants(&[Family::Floor, Family::Go]).is_empty());
        }
        assert_eq!(hyper[1].placement, Placement::Unpinned);
        assert_eq!(hyper[1].placement.workers(), 2);
    }

    #[test]
    fn deadline_churn_pairs_every_runtime_and_repeats_at_least_eight_times() {
        let s = table()
            .into_iter()
            .find(|s| matches!(s.kind, Kind::DeadlineChurn { .. }))
            .unwrap();
        let v = s.variants(&[Family::Netpoll, Family::Tokio, Family::Floor]);
        assert_eq!(
            v,
            [
                Variant::plain(Family::Netpoll),
                Variant::with_deadline(Family::Netpoll),
                Variant::plain(Family::Tokio),
                Variant::with_deadline(Family::Tokio),
            ]
        );
        assert_eq!(s.repeats(3), 8);
    }
}
