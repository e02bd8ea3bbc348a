//! Torn mode's log of unsynced changes, and how a cut tears it.

use super::SECTOR;
use crate::rng::Rng;

/// Torn mode keeps at most this many unsynced writes per file (and this
/// many bytes of them); later ones are always lost, which is still a
/// prefix of the unsynced writes.
const TORN_LOG_CHANGES: usize = 4096;
const TORN_LOG_BYTES: usize = 32 << 20;

/// One unsynced change to a file's data, kept in torn mode.
#[derive(Debug)]
pub(super) enum Change {
    Write { offset: u64, bytes: Vec<u8> },
    Resize(u64),
}

/// Writes `bytes` at `start`, extending `data` with zeros if needed.
pub(super) fn apply_write(data: &mut Vec<u8>, start: usize, bytes: &[u8]) {
    let end = start + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[start..end].copy_from_slice(bytes);
}

/// Appends a change to a file's log, unless the log is full (then it stops
/// for good until the next sync: what it holds stays a prefix).
pub(super) fn log_change(
    log: &mut Vec<Change>,
    bytes: &mut usize,
    overflowed: &mut bool,
    change: impl FnOnce() -> Change,
) {
    if *overflowed {
        return;
    }
    let change = change();
    let size = match &change {
        Change::Write { bytes, .. } => bytes.len(),
        Change::Resize(_) => 0,
    };
    if log.len() >= TORN_LOG_CHANGES || *bytes + size > TORN_LOG_BYTES {
        *overflowed = true;
        return;
    }
    *bytes += size;
    log.push(change);
}

/// Applies a random prefix of `unsynced` to `data`: the first `k` changes
/// whole, then possibly whole sectors from the start of the next write.
/// Returns whether anything was applied.
pub(super) fn tear(data: &mut Vec<u8>, unsynced: &[Change], rng: &mut Rng) -> bool {
    let whole = rng.below(unsynced.len() as u64 + 1) as usize;
    for change in &unsynced[..whole] {
        apply(data, change, None);
    }
    let mut applied = whole > 0;
    if let Some(next @ Change::Write { bytes, .. }) = unsynced.get(whole) {
        let sectors = bytes.len().div_ceil(SECTOR) as u64;
        let kept = (rng.below(sectors) as usize * SECTOR).min(bytes.len());
        if kept > 0 {
            apply(data, next, Some(kept));
            applied = true;
        }
    }
    applied
}

fn apply(data: &mut Vec<u8>, change: &Change, limit: Option<usize>) {
    match change {
        Change::Write { offset, bytes } => {
            let bytes = &bytes[..limit.unwrap_or(bytes.len()).min(bytes.len())];
            // Offsets were checked to fit a `usize` when the write was made.
            apply_write(data, *offset as usize, bytes);
        }
        Change::Resize(size) => data.resize(*size as usize, 0),
    }
}
