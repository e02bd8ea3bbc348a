//! Durability against power loss: the file, SQLite and redb stores on the
//! power-loss filesystem (`sessionkit-powerloss-fs`, in torn mode), where a
//! cut keeps only what was synced (and a random prefix of unsynced writes).
//! A child process writes through the store with concurrent tasks; at a
//! random moment it is killed and the power cut; the store is reopened and
//! every acknowledged write must be there, untorn, and the store must keep
//! working. See `integration_tests::power_cut` for the rules.
//!
//! Each test also proves the check has teeth: the same rounds on a store
//! made to skip its syncs must be caught losing acknowledged writes.
//!
//! Needs FUSE (`/dev/fuse`, `fusermount3`: `scripts/install-test-deps`);
//! without it a test is skipped loudly, or fails under `CI=true`.

use sessionkit_integration_tests::power_cut::{Children, PowerCutRun, Rng, Tally};
use sessionkit_integration_tests::power_cut_http::HttpPowerCutRun;
use sessionkit_powerloss_fs::PowerLossFs;

/// Power cuts per store.
const CUTS: u64 = 100;

/// Power cuts through the HTTP layer.
const HTTP_CUTS: u64 = 100;

/// A broken store must be caught within this many cuts.
const TEETH_CUTS: u64 = 30;

fn children() -> Children {
    Children {
        writer: env!("CARGO_BIN_EXE_crash-writer").into(),
        checker: env!("CARGO_BIN_EXE_power-cut-checker").into(),
    }
}

/// How the broken setup of a teeth run skips its syncs.
#[derive(Clone, Copy)]
enum Breakage {
    /// The store's own setting (redb `Durability::None`).
    StoreSetting,
    /// The filesystem ignores directory syncs.
    DirSyncsIgnored,
    /// The filesystem ignores file syncs.
    FileSyncsIgnored,
}

/// Runs `cuts` rounds (a broken setup stops at the first damage found).
/// `None` when FUSE is missing (a loud skip).
fn run(
    what: &str,
    writer_kind: &str,
    checker_kind: &str,
    file: &str,
    breakage: Option<Breakage>,
    cuts: u64,
) -> Option<Tally> {
    let mut rng = Rng::from_env_or_clock(what);
    let fs = PowerLossFs::new().torn(true).seed(rng.fs_seed()).mount_or_skip()?;
    let mut run = PowerCutRun::start(&children(), writer_kind, checker_kind, fs, file, rng);
    match breakage {
        Some(Breakage::DirSyncsIgnored) => run.fs().set_faults(false, true),
        Some(Breakage::FileSyncsIgnored) => run.fs().set_faults(true, false),
        Some(Breakage::StoreSetting) | None => {}
    }
    for _ in 0..cuts {
        run.round();
        if breakage.is_some() && run.tally().caught() {
            break;
        }
    }
    println!("{what}: {} in {:.1?} ({:?})", run.tally().summary(), run.elapsed(), run.fs().sync_counts());
    Some(run.tally().clone())
}

/// The store survives [`CUTS`] cuts, and the broken variant is caught.
fn survives_and_has_teeth(kind: &str, file: &str, broken_kind: &str, breakage: Breakage, broken_what: &str) {
    let Some(good) = run(kind, kind, kind, file, None, CUTS) else { return };
    let teeth_what = format!("{kind} ({broken_what})");
    let Some(broken) = run(&teeth_what, broken_kind, kind, file, Some(breakage), TEETH_CUTS) else { return };
    let teeth = if broken.caught() {
        format!("caught after {} cuts (lost {}, torn {})", broken.cuts, broken.lost, broken.torn)
    } else {
        format!("NOT caught in {} cuts", broken.cuts)
    };
    println!(
        "power cuts, {kind}: {} cuts, {} acknowledged writes, lost {}, torn {}; teeth ({broken_what}): {teeth}",
        good.cuts, good.acked, good.lost, good.torn
    );
    assert!(
        !good.caught(),
        "{kind} lost or damaged acknowledged writes across power cuts: {}\n{}",
        good.summary(),
        good.failures.join("\n")
    );
    assert_eq!(good.cuts, CUTS);
    assert!(good.acked > CUTS * 10, "too few acknowledged writes to prove anything: {}", good.summary());
    // Lost, or unreadable (SQLite without its syncs can also corrupt its
    // file): either way acknowledged writes are gone, and the check says so.
    assert!(broken.caught(), "the check missed a {kind} store that skips its syncs: {}", broken.summary());
}

#[test]
fn file_store_survives_power_cuts() {
    survives_and_has_teeth("file", "sessions", "file", Breakage::DirSyncsIgnored, "directory fsyncs ignored");
}

#[test]
fn sqlite_survives_power_cuts() {
    survives_and_has_teeth("sqlite", "sessions.db", "sqlite", Breakage::FileSyncsIgnored, "file fsyncs ignored");
}

#[test]
fn redb_survives_power_cuts() {
    survives_and_has_teeth("redb", "sessions.redb", "redb-volatile", Breakage::StoreSetting, "Durability::None");
}

/// Runs up to `cuts` rounds through HTTP; as [`run`].
async fn run_http(what: &str, kind: &str, file: &str, breakage: Option<Breakage>, cuts: u64) -> Option<Tally> {
    let mut rng = Rng::from_env_or_clock(what);
    let fs = PowerLossFs::new().torn(true).seed(rng.fs_seed()).mount_or_skip()?;
    let server = env!("CARGO_BIN_EXE_power-cut-server");
    let mut run = HttpPowerCutRun::start(server.as_ref(), kind, fs, file, rng);
    if let Some(Breakage::DirSyncsIgnored) = breakage {
        run.fs().set_faults(false, true);
    }
    for _ in 0..cuts {
        run.round().await;
        if breakage.is_some() && run.tally().caught() {
            break;
        }
    }
    run.finish().await;
    println!("{what}: {} in {:.1?} ({:?})", run.tally().summary(), run.elapsed(), run.fs().sync_counts());
    Some(run.tally().clone())
}

/// A server child serves the session layer on the FileStore; the test
/// drives concurrent clients over loopback, counting only the responses
/// it received; cut, restart, check. The teeth: the same with directory
/// fsyncs ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_through_http_survives_power_cuts() {
    let Some(good) = run_http("file over HTTP", "file", "sessions", None, HTTP_CUTS).await else { return };
    let what = "file over HTTP (directory fsyncs ignored)";
    let Some(broken) = run_http(what, "file", "sessions", Some(Breakage::DirSyncsIgnored), TEETH_CUTS).await else {
        return;
    };
    println!(
        "power cuts, file over HTTP: {} cuts, {} acknowledged responses, lost {}, torn {}; \
         teeth (directory fsyncs ignored): {} after {} cuts (lost {}, torn {})",
        good.cuts,
        good.acked,
        good.lost,
        good.torn,
        if broken.caught() { "caught" } else { "NOT caught" },
        broken.cuts,
        broken.lost,
        broken.torn
    );
    assert!(
        !good.caught(),
        "acknowledged HTTP writes lost or damaged across power cuts: {}\n{}",
        good.summary(),
        good.failures.join("\n")
    );
    assert_eq!(good.cuts, HTTP_CUTS);
    assert!(good.acked > HTTP_CUTS * 10, "too few acknowledged writes to prove anything: {}", good.summary());
    assert!(broken.caught(), "the check missed a FileStore whose directory syncs are ignored: {}", broken.summary());
}
