//! Facts about the machine a run happened on, read from `/proc` (Linux) so
//! that a report says what produced its numbers.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The machine, as far as a benchmark reader cares.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// The processor model, from `/proc/cpuinfo`.
    pub cpu: String,
    /// Logical cores available to this process.
    pub cores: usize,
    /// Total memory, in bytes.
    pub memory_bytes: u64,
    /// The distribution and kernel.
    pub os: String,
}

impl Machine {
    /// Reads the current machine's description; unknown parts say so.
    pub fn current() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_bytes = field(&meminfo, "MemTotal").and_then(|kib| kib_to_bytes(&kib)).unwrap_or(0);
        let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let distro = release
            .lines()
            .find_map(|line| line.strip_prefix("PRETTY_NAME="))
            .map(|name| name.trim_matches('"').to_owned())
            .unwrap_or_else(|| std::env::consts::OS.to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let os = if kernel.trim().is_empty() { distro } else { format!("{distro}, Linux {}", kernel.trim()) };
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self { cpu, cores, memory_bytes, os }
    }
}

/// The value of `name` in a `name : value` file such as `/proc/cpuinfo`.
fn field(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim().to_owned())
    })
}

/// `"24000000 kB"` → bytes.
pub fn kib_to_bytes(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse::<u64>().ok().map(|kib| kib * 1024)
}

/// The 1-, 5- and 15-minute load averages, or zeros where unknown.
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut parts = text.split_whitespace().map(|part| part.parse().unwrap_or(0.0));
    [parts.next().unwrap_or(0.0), parts.next().unwrap_or(0.0), parts.next().unwrap_or(0.0)]
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

/// `secs` since the epoch as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_timestamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (hour, minute) = ((secs % 86_400) / 3_600, (secs % 3_600) / 60);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (y, m, d).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// This process's resident set size (`VmRSS`), in bytes.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    kib_to_bytes(&field(&status, "VmRSS")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_civil_dates() {
        assert_eq!(utc_timestamp(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_timestamp(951_782_400 + 3_600 + 120), "2000-02-29 01:02 UTC");
        assert_eq!(utc_timestamp(1_767_225_600), "2026-01-01 00:00 UTC");
    }

    #[test]
    fn the_machine_and_this_process_are_described() {
        let machine = Machine::current();
        assert!(machine.cores >= 1);
        assert!(!machine.os.is_empty());
        if cfg!(target_os = "linux") {
            assert!(machine.memory_bytes > 0);
            assert!(rss_bytes().is_some_and(|rss| rss > 0));
        }
    }
}
