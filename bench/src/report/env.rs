//! What a summary says about where and how it was measured.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::server;

#[derive(Clone, Debug)]
pub struct Environment {
    pub date: String,
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub versions: String,
    pub command: String,
    pub notes: Vec<String>,
}

impl Environment {
    /// Reads the machine and the versions; `command` is how the run was started.
    pub fn collect(command: String, go: Option<String>, notes: Vec<String>) -> Environment {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into());
        let rustc = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
            .arg("-V")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "rustc ?".into());
        let lock = std::fs::read_to_string(server::workspace_root().join("Cargo.lock"))
            .unwrap_or_default();
        let version = |name: &str| locked_version(&lock, name).unwrap_or_else(|| "?".into());
        let mut versions = format!(
            "{rustc}; netpoll {}; tokio {}",
            version("netpoll"),
            version("tokio")
        );
        if let Some(go) = go {
            versions.push_str("; ");
            versions.push_str(go.trim_start_matches("go version "));
        }
        Environment {
            date: utc_now(),
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel,
            versions,
            command,
            notes,
        }
    }
}

/// The version of package `name` in a Cargo.lock.
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let needle = format!("name = \"{name}\"\n");
    let at = lock.find(&needle)? + needle.len();
    let line = lock[at..].lines().next()?;
    Some(
        line.strip_prefix("version = ")?
            .trim_matches('"')
            .to_string(),
    )
}

/// "YYYY-MM-DD HH:MM UTC" from the system clock.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_of_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }

    #[test]
    fn versions_are_read_from_the_lock_file() {
        let lock = "[[package]]\nname = \"tokio\"\nversion = \"1.2.3\"\n";
        assert_eq!(locked_version(lock, "tokio").as_deref(), Some("1.2.3"));
        assert_eq!(locked_version(lock, "tok"), None);
    }
}
