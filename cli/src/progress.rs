//! A progress line on stderr: redrawn in place on a terminal, a line per
//! second otherwise (a CI log, a pipe).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub(crate) struct Progress {
    started: Instant,
    last: Option<Instant>,
    terminal: bool,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Self { started: Instant::now(), last: None, terminal: std::io::stderr().is_terminal() }
    }

    /// Shows `line` (with the elapsed time and a rate of `done` per second)
    /// if enough time has passed since the last one.
    pub(crate) fn show(&mut self, done: u64, line: &str) {
        let now = Instant::now();
        let every = if self.terminal { Duration::from_millis(100) } else { Duration::from_secs(1) };
        if self.last.is_some_and(|last| now.duration_since(last) < every) {
            return;
        }
        self.last = Some(now);
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 { done as f64 / elapsed } else { 0.0 };
        let mut err = std::io::stderr().lock();
        // A progress line that cannot be written is no reason to stop.
        let _ = if self.terminal {
            write!(err, "\r{line} ({rate:.0}/s, {elapsed:.1} s)\x1b[K")
        } else {
            writeln!(err, "{line} ({rate:.0}/s, {elapsed:.1} s)")
        };
    }

    /// Ends the line on a terminal; returns the elapsed time.
    pub(crate) fn finish(self) -> Duration {
        if self.terminal && self.last.is_some() {
            let _ = writeln!(std::io::stderr());
        }
        self.started.elapsed()
    }
}

/// Unix milliseconds as `2026-12-01T10:04:05.123Z`, or `never`.
pub(crate) fn when(instant: Option<std::time::SystemTime>) -> String {
    let Some(instant) = instant else { return "never".to_owned() };
    let ms = sessionkit::expiry::to_unix_ms(instant);
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil from days (Howard Hinnant's algorithm), proleptic Gregorian, UTC.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1_000 % 60, rest % 1_000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_print_as_utc() {
        let at = |ms| Some(sessionkit::expiry::from_unix_ms(ms));
        assert_eq!(when(at(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(when(at(1_796_116_040_648)), "2026-12-01T09:07:20.648Z");
        assert_eq!(when(at(951_782_400_000)), "2000-02-29T00:00:00.000Z");
        assert_eq!(when(None), "never");
    }
}
