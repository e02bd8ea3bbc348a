//! Judging a session after a cut against what was acknowledged.

use sessionkit::SessionMap;

use super::children::Found;
use crate::crash_workload;

/// How a session read after a cut compares with what was acknowledged.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The last acknowledged state (or the known one, if none was).
    Intact,
    /// The state of the write that was in flight.
    InFlight,
    /// An older state of the workload: an acknowledged write is missing.
    Lost(String),
    /// Something no write produced.
    Torn(String),
}

/// Judges what a read of session `sid` returned after a cut. `known` is
/// its state after the previous check; `acked` and `begun` the last
/// operations acknowledged and begun since.
pub fn judge(
    sid: usize,
    read: &Result<Option<Found>, String>,
    known: &Option<SessionMap>,
    acked: Option<u64>,
    begun: Option<u64>,
) -> Verdict {
    let got = match read {
        Ok(got) => got,
        Err(err) => return Verdict::Torn(format!("session {sid}: the read failed: {err}")),
    };
    let expires_ms = sessionkit::expiry::to_unix_ms(crash_workload::expires_at());
    if let Some(found) = got
        && found.expires_ms != Some(expires_ms)
    {
        return Verdict::Torn(format!("session {sid}: expiry {:?} was never written", found.expires_ms));
    }
    judge_data(sid, got.as_ref().map(|found| found.data.clone()), known, acked, begun)
}

/// Judges a session's data after a cut (`None`: absent), as [`judge`]
/// does once the read succeeded and the expiry is right.
pub fn judge_data(
    sid: usize,
    data: Option<SessionMap>,
    known: &Option<SessionMap>,
    acked: Option<u64>,
    begun: Option<u64>,
) -> Verdict {
    let expected = match acked {
        Some(acked) => crash_workload::state_after(sid, acked),
        None => known.clone(),
    };
    if data == expected {
        return Verdict::Intact;
    }
    if let Some(begun) = begun.filter(|&begun| acked.is_none_or(|acked| begun > acked))
        && data == crash_workload::state_after(sid, begun)
    {
        return Verdict::InFlight;
    }
    let seq_of = |data: &Option<SessionMap>| data.as_ref().and_then(|map| map.get("seq")).and_then(|seq| seq.as_u64());
    let wanted = format!("acknowledged {acked:?}, in flight {begun:?}, expected seq {:?}", seq_of(&expected));
    match seq_of(&data) {
        _ if data.is_none() => Verdict::Lost(format!("session {sid}: gone ({wanted})")),
        Some(seq) if crash_workload::state_after(sid, seq) == data => {
            Verdict::Lost(format!("session {sid}: holds the older seq {seq} ({wanted})"))
        }
        _ => Verdict::Torn(format!("session {sid}: holds a record no write produced ({wanted})")),
    }
}
