//! What the soak measures about the process, and the rules that turn the measurements into a
//! verdict.
//!
//! # The leak rules
//!
//! * **Baseline.** Taken once both runtimes are up, the listener is open and its accept loop
//!   is running, before any client starts: open descriptors, live tasks of each runtime,
//!   sockets registered with the pollers, timers armed.
//! * **Back to baseline.** Once the load has stopped and every client task has been joined,
//!   the soak waits up to `--settle` seconds (default 10) for *all* of: open descriptors,
//!   live tasks (server and client runtimes), registered sockets and armed timers to equal
//!   the baseline exactly. Any of them still off at the end of the wait is a leak.
//! * **RSS trend.** The resident set size samples taken during the second half of the load
//!   phase (at least 5 of them, else the rule is reported as skipped) are fitted with a least
//!   squares line. Its slope times the time they span is the growth the trend accounts for;
//!   more than max(4 MiB, 5 % of the median of those samples) is a leak. Warm-up growth (pages,
//!   descriptor slabs, allocator arenas reaching their working size) happens in the first
//!   half, which the rule ignores; a real leak keeps growing through the second.

use std::io;

/// One sample of the process and the runtimes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Levels {
    /// Open file descriptors (`/proc/self/fd`).
    pub fds: usize,
    /// Tasks alive on the server runtime.
    pub server_tasks: usize,
    /// Tasks alive on the client runtime.
    pub client_tasks: usize,
    /// Sockets registered with both runtimes' pollers.
    pub sockets: usize,
    /// Timers armed on both runtimes.
    pub timers: usize,
}

impl Levels {
    pub(super) fn take(server: &netpoll::Runtime, client: &netpoll::Runtime) -> io::Result<Levels> {
        let (sm, cm) = (server.metrics(), client.metrics());
        Ok(Levels {
            fds: open_fds()?,
            server_tasks: server.alive_tasks(),
            client_tasks: client.alive_tasks(),
            sockets: sm.sockets + cm.sockets,
            timers: sm.timers_armed + cm.timers_armed,
        })
    }

    /// What differs from `base`, as "name now (baseline)" items.
    pub(super) fn differences(&self, base: &Levels) -> Vec<String> {
        let mut out = Vec::new();
        let fields = [
            ("fds", self.fds, base.fds),
            ("server tasks", self.server_tasks, base.server_tasks),
            ("client tasks", self.client_tasks, base.client_tasks),
            ("sockets", self.sockets, base.sockets),
            ("timers", self.timers, base.timers),
        ];
        for (name, now, then) in fields {
            if now != then {
                out.push(format!("{name} {now} (baseline {then})"));
            }
        }
        out
    }
}

/// The number of open descriptors of this process (not counting the one used to list them).
pub(super) fn open_fds() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?
        .count()
        .saturating_sub(1))
}

/// The resident set size of this process in KiB (`VmRSS` in `/proc/self/status`).
pub(super) fn rss_kib() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS line in /proc/self/status"))
}

/// The verdict of the RSS rule (module docs).
#[derive(Clone, Debug, PartialEq)]
pub(super) enum RssTrend {
    /// Fewer than 5 samples in the second half of the load.
    Skipped {
        samples: usize,
    },
    /// The fitted growth and the allowance it was held to, in KiB.
    Steady {
        growth_kib: f64,
        allowance_kib: f64,
    },
    Leak {
        growth_kib: f64,
        allowance_kib: f64,
    },
}

/// Below this growth the RSS rule never fires: allocator and kernel bookkeeping noise.
const RSS_FLOOR_KIB: f64 = 4096.0;
/// The growth allowed on top, as a share of the median RSS.
const RSS_SHARE: f64 = 0.05;
/// The fewest samples the rule judges from.
const RSS_MIN_SAMPLES: usize = 5;

/// Applies the RSS rule to `(seconds since the load started, RSS in KiB)` samples of a load
/// phase that lasted `load_secs`.
pub(super) fn rss_trend(samples: &[(f64, u64)], load_secs: f64) -> RssTrend {
    let half: Vec<(f64, f64)> = samples
        .iter()
        .filter(|(t, _)| *t >= load_secs / 2.0 && *t <= load_secs)
        .map(|&(t, kib)| (t, kib as f64))
        .collect();
    if half.len() < RSS_MIN_SAMPLES {
        return RssTrend::Skipped {
            samples: half.len(),
        };
    }
    let n = half.len() as f64;
    let mean_t = half.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_r = half.iter().map(|p| p.1).sum::<f64>() / n;
    let cov: f64 = half.iter().map(|p| (p.0 - mean_t) * (p.1 - mean_r)).sum();
    let var: f64 = half.iter().map(|p| (p.0 - mean_t).powi(2)).sum();
    let slope = if var > 0.0 { cov / var } else { 0.0 };
    let span = half.last().unwrap().0 - half.first().unwrap().0;
    let growth_kib = slope * span;
    let mut sorted: Vec<f64> = half.iter().map(|p| p.1).collect();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let allowance_kib = RSS_FLOOR_KIB.max(RSS_SHARE * median);
    if growth_kib > allowance_kib {
        RssTrend::Leak {
            growth_kib,
            allowance_kib,
        }
    } else {
        RssTrend::Steady {
            growth_kib,
            allowance_kib,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(secs: u32, f: impl Fn(f64) -> f64) -> Vec<(f64, u64)> {
        (0..=secs).map(|t| (t as f64, f(t as f64) as u64)).collect()
    }

    #[test]
    fn a_flat_noisy_rss_is_steady() {
        // 60 MiB, ±1 MiB of jitter, after a warm-up ramp in the first half.
        let s = series(60, |t| {
            let warm = if t < 20.0 { t * 1000.0 } else { 20_000.0 };
            40_000.0 + warm + 1024.0 * (-1f64).powi(t as i32)
        });
        assert!(matches!(rss_trend(&s, 60.0), RssTrend::Steady { .. }));
    }

    #[test]
    fn a_steady_climb_through_the_second_half_is_a_leak() {
        // 200 KiB/s over 30 s = 6 MiB, above the 4 MiB floor.
        let s = series(60, |t| 50_000.0 + 200.0 * t);
        match rss_trend(&s, 60.0) {
            RssTrend::Leak { growth_kib, .. } => assert!((growth_kib - 6000.0).abs() < 1.0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn growth_below_five_percent_of_a_large_rss_is_allowed() {
        // 1 GiB resident, 20 MiB of growth: 2 %.
        let s = series(60, |t| 1_048_576.0 + 20_480.0 * (t / 60.0));
        assert!(matches!(rss_trend(&s, 60.0), RssTrend::Steady { .. }));
    }

    #[test]
    fn too_few_samples_skip_the_rule() {
        let s = series(6, |t| 50_000.0 + 10_000.0 * t);
        assert_eq!(rss_trend(&s, 6.0), RssTrend::Skipped { samples: 4 });
    }

    #[test]
    fn levels_report_each_difference() {
        let base = Levels {
            fds: 10,
            server_tasks: 1,
            ..Levels::default()
        };
        let now = Levels {
            fds: 12,
            server_tasks: 1,
            timers: 3,
            ..Levels::default()
        };
        assert_eq!(
            now.differences(&base),
            vec!["fds 12 (baseline 10)", "timers 3 (baseline 0)"]
        );
        assert!(base.differences(&base).is_empty());
    }

    #[test]
    fn rss_and_fds_can_be_read() {
        assert!(rss_kib().unwrap() > 0);
        assert!(open_fds().unwrap() >= 3);
    }
}
