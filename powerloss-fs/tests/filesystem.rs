//! The power-loss filesystem, through a real mount and the standard
//! library's file calls: what survives a cut is exactly what was synced.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use sessionkit_powerloss_fs::{Mounted, PowerLossFs};

fn mount(fs: PowerLossFs) -> Option<Mounted> {
    fs.mount_or_skip()
}

fn sync_dir(dir: &Path) {
    File::open(dir).expect("open the directory").sync_all().expect("sync the directory");
}

fn write_synced(path: &Path, bytes: &[u8]) {
    let mut file = File::create(path).expect("create");
    file.write_all(bytes).expect("write");
    file.sync_data().expect("fdatasync");
}

fn read(path: &Path) -> Option<Vec<u8>> {
    match fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(err) if err.kind() == ErrorKind::NotFound => None,
        Err(err) => panic!("reading {}: {err}", path.display()),
    }
}

/// The write-temp / fsync / rename / fsync-directory sequence of a store
/// replacing a record.
fn replace_durably(dir: &Path, name: &str, bytes: &[u8]) {
    let temp = dir.join(format!(".tmp-{name}"));
    write_synced(&temp, bytes);
    fs::rename(&temp, dir.join(name)).expect("rename");
    sync_dir(dir);
}

#[test]
fn synced_data_and_entries_survive_a_cut() {
    let Some(mut fs) = mount(PowerLossFs::new()) else { return };
    let dir = fs.path().join("d");
    fs::create_dir(&dir).expect("mkdir");
    write_synced(&dir.join("a"), b"alpha");
    sync_dir(&dir);
    sync_dir(fs.path());
    fs.cut().expect("cut");
    assert_eq!(read(&dir.join("a")).as_deref(), Some(&b"alpha"[..]));
    // And the filesystem keeps working on the remounted state.
    write_synced(&dir.join("b"), b"beta");
    sync_dir(&dir);
    fs.cut().expect("second cut");
    assert_eq!(read(&dir.join("b")).as_deref(), Some(&b"beta"[..]));
    assert_eq!(fs.cuts(), 2);
}

#[test]
fn data_not_synced_is_gone() {
    let Some(mut fs) = mount(PowerLossFs::new()) else { return };
    let path = fs.path().join("f");
    write_synced(&path, b"durable");
    sync_dir(fs.path());
    let mut file = OpenOptions::new().write(true).open(&path).expect("open");
    file.write_all(b"DURABLE and then some").expect("overwrite and extend");
    drop(file);
    assert_eq!(read(&path).as_deref(), Some(&b"DURABLE and then some"[..]), "visible before the cut");
    let cut = fs.cut().expect("cut");
    assert_eq!(read(&path).as_deref(), Some(&b"durable"[..]));
    assert_eq!(cut.files_rolled_back, 1);
}

#[test]
fn a_rename_without_a_directory_sync_is_undone() {
    let Some(mut fs) = mount(PowerLossFs::new()) else { return };
    let dir = fs.path().to_path_buf();
    let dir = dir.as_path();
    write_synced(&dir.join("record"), b"old");
    sync_dir(dir);
    let temp = dir.join(".tmp");
    write_synced(&temp, b"new");
    fs::rename(&temp, dir.join("record")).expect("rename");
    assert_eq!(read(&dir.join("record")).as_deref(), Some(&b"new"[..]));
    fs.cut().expect("cut");
    assert_eq!(read(&dir.join("record")).as_deref(), Some(&b"old"[..]), "the old name and content come back");
    assert_eq!(read(&temp), None, "the temporary file was never a durable entry");
}

#[test]
fn a_rename_across_directories_needs_both_synced() {
    let Some(mut fs) = mount(PowerLossFs::new()) else { return };
    let root = fs.path().to_path_buf();
    let (from, to) = (root.join("from"), root.join("to"));
    fs::create_dir(&from).expect("mkdir from");
    fs::create_dir(&to).expect("mkdir to");
    sync_dir(&root);
    write_synced(&from.join("f"), b"moved");
    sync_dir(&from);
    fs::rename(from.join("f"), to.join("f")).expect("rename");
    sync_dir(&to);
    fs.cut().expect("cut");
    // Only the destination was synced: the file now has both names.
    assert_eq!(read(&from.join("f")).as_deref(), Some(&b"moved"[..]));
    assert_eq!(read(&to.join("f")).as_deref(), Some(&b"moved"[..]));
    fs::rename(from.join("f"), to.join("g")).expect("rename again");
    sync_dir(&from);
    sync_dir(&to);
    fs.cut().expect("cut");
    assert_eq!(read(&from.join("f")), None);
    assert_eq!(read(&to.join("g")).as_deref(), Some(&b"moved"[..]));
}

#[test]
fn a_file_created_and_synced_without_a_directory_sync_is_gone() {
    let Some(mut fs) = mount(PowerLossFs::new()) else { return };
    let path = fs.path().join("orphan");
    write_synced(&path, b"synced data, unsynced name");
    let sub = fs.path().join("sub");
    fs::create_dir(&sub).expect("mkdir");
    write_synced(&sub.join("inner"), b"x");
    sync_dir(&sub);
    fs.cut().expect("cut");
    assert_eq!(read(&path), None);
    assert!(!sub.exists(), "a directory whose parent was never synced is gone with its contents");
}

#[test]
fn an_entry_synced_without_its_data_is_an_empty_file() {
    let Some(mut fs) = mount(PowerLossFs::new()) else { return };
    let path = fs.path().join("f");
    fs::write(&path, b"never synced").expect("write");
    sync_dir(fs.path());
    fs.cut().expect("cut");
    assert_eq!(read(&path).as_deref(), Some(&b""[..]));
}

#[test]
fn an_unlink_without_a_directory_sync_is_undone() {
    let Some(mut fs) = mount(PowerLossFs::new()) else { return };
    let (kept, gone) = (fs.path().join("kept"), fs.path().join("gone"));
    write_synced(&kept, b"k");
    write_synced(&gone, b"g");
    sync_dir(fs.path());
    fs::remove_file(&kept).expect("unlink");
    fs.cut().expect("cut");
    assert_eq!(read(&kept).as_deref(), Some(&b"k"[..]));
    fs::remove_file(&gone).expect("unlink");
    sync_dir(fs.path());
    fs.cut().expect("cut");
    assert_eq!(read(&gone), None);
}

#[test]
fn truncation_is_durable_only_once_synced() {
    let Some(mut fs) = mount(PowerLossFs::new()) else { return };
    let path = fs.path().join("f");
    let content: Vec<u8> = (0..10_000u32).map(|n| n as u8).collect();
    write_synced(&path, &content);
    sync_dir(fs.path());
    let file = OpenOptions::new().write(true).open(&path).expect("open");
    file.set_len(100).expect("truncate");
    drop(file);
    fs.cut().expect("cut");
    assert_eq!(read(&path), Some(content.clone()), "the unsynced truncation is undone");
    let file = OpenOptions::new().write(true).open(&path).expect("open");
    file.set_len(100).expect("truncate");
    file.sync_all().expect("sync");
    drop(file);
    let file = OpenOptions::new().write(true).open(&path).expect("open");
    file.set_len(20_000).expect("extend");
    drop(file);
    fs.cut().expect("cut");
    assert_eq!(read(&path), Some(content[..100].to_vec()), "the synced truncation stays, the extension does not");
}

#[test]
fn torn_mode_keeps_a_prefix_of_the_unsynced_writes() {
    let writes: Vec<Vec<u8>> = (1..=8u8).map(|n| vec![n; 4096]).collect();
    let stream = writes.concat();
    let mut lengths = Vec::new();
    for seed in 1..=12 {
        let Some(mut fs) = mount(PowerLossFs::new().torn(true).seed(seed)) else { return };
        let path = fs.path().join("log");
        write_synced(&path, b"");
        sync_dir(fs.path());
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        for write in &writes {
            file.write_all(write).expect("append");
        }
        drop(file);
        fs.cut().expect("cut");
        let survived = read(&path).expect("the entry was synced");
        assert_eq!(survived.len() % 512, 0, "whole sectors only (seed {seed})");
        assert_eq!(survived, stream[..survived.len()], "a prefix of the writes, in order (seed {seed})");
        lengths.push(survived.len());
    }
    assert!(lengths.iter().any(|&len| len > 0 && len < stream.len()), "some cut tears: {lengths:?}");
    assert!(lengths.iter().any(|&len| len % 4096 != 0), "some write is cut inside: {lengths:?}");
}

#[test]
fn a_store_like_replace_survives_and_each_fault_breaks_it() {
    let Some(mut fs) = mount(PowerLossFs::new()) else { return };
    let dir = fs.path().to_path_buf();
    replace_durably(&dir, "record", b"v1");
    replace_durably(&dir, "record", b"v2");
    fs.cut().expect("cut");
    assert_eq!(read(&dir.join("record")).as_deref(), Some(&b"v2"[..]));

    fs.set_faults(false, true);
    replace_durably(&dir, "record", b"v3");
    fs.cut().expect("cut");
    assert_eq!(read(&dir.join("record")).as_deref(), Some(&b"v2"[..]), "ignored directory syncs undo the rename");

    fs.set_faults(true, false);
    replace_durably(&dir, "record", b"v4");
    fs.cut().expect("cut");
    assert_eq!(read(&dir.join("record")).as_deref(), Some(&b""[..]), "ignored file syncs lose the data");
    let counts = fs.sync_counts();
    assert!(counts.ignored_dir_syncs >= 1 && counts.ignored_file_syncs >= 1, "{counts:?}");
}

#[test]
fn a_cut_with_a_file_still_open_detaches_it() {
    let Some(mut fs) = mount(PowerLossFs::new()) else { return };
    let path = fs.path().join("f");
    write_synced(&path, b"durable");
    sync_dir(fs.path());
    let mut held = File::open(&path).expect("open");
    let cut = fs.cut().expect("cut while busy");
    assert!(cut.was_busy);
    let mut buf = Vec::new();
    let err = held.read_to_end(&mut buf).expect_err("the old mount is powered off");
    // EIO from the dead model, or ENOTCONN once the connection is aborted
    // (where fusectl is mounted).
    assert!(matches!(err.raw_os_error(), Some(libc::EIO | libc::ENOTCONN)), "{err}");
    assert_eq!(read(&path).as_deref(), Some(&b"durable"[..]), "the new mount serves the durable state");
}

#[test]
fn locks_exclude_between_open_files() {
    let Some(fs) = mount(PowerLossFs::new()) else { return };
    let path = fs.path().join("lock");
    let first = File::create(&path).expect("create");
    let second = File::open(&path).expect("open");
    first.lock().expect("flock");
    assert!(second.try_lock().is_err(), "flock excludes another open file");
    first.unlock().expect("unlock");
    second.try_lock().expect("free again");
}

#[test]
fn dropping_the_mount_unmounts_it_even_in_a_panic() {
    let Some(fs) = mount(PowerLossFs::new()) else { return };
    let path = fs.path().to_path_buf();
    // A test thread that panics while it holds the mount.
    let result = std::thread::spawn(move || {
        let _fs = fs;
        panic!("a failing test");
    })
    .join();
    assert!(result.is_err());
    let mounts = fs::read_to_string("/proc/self/mountinfo").expect("mount table");
    assert!(!mounts.contains(&path.display().to_string()), "still mounted at {}", path.display());
    assert!(!path.exists(), "the mount point is removed");
}
