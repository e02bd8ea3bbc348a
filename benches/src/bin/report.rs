//! Writes `BENCHMARKS.md` and its charts from the last benchmark run.
//!
//! Reads criterion's estimates (`target/criterion/**/new/`), keeping only
//! those written since the matching benchmark binary last started, and the
//! JSON the other benchmarks wrote (`target/sessionkit-bench/`). Run it after
//! `cargo bench -p sessionkit-benches`, or run `scripts/bench`, which does
//! both.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use plotters::prelude::*;
use serde::Deserialize;
use sessionkit_benches::fixtures::PAYLOADS;
use sessionkit_benches::machine::utc_timestamp;
use sessionkit_benches::registry::STORES;
use sessionkit_benches::results::{self, Memory, Middleware, RunStart};
use sessionkit_benches::settings;

/// One criterion benchmark's result.
#[derive(Debug, Clone)]
struct Bench {
    median_ns: f64,
    /// Operations per criterion iteration.
    elements: f64,
}

impl Bench {
    fn per_second(&self) -> f64 {
        self.elements * 1e9 / self.median_ns
    }
}

/// `(group, function, value)` → result.
type Results = BTreeMap<(String, String, String), Bench>;

#[derive(Deserialize)]
struct BenchmarkJson {
    group_id: String,
    function_id: Option<String>,
    value_str: Option<String>,
    throughput: Option<ThroughputJson>,
}

#[derive(Deserialize)]
enum ThroughputJson {
    Elements(u64),
    Bytes(serde::de::IgnoredAny),
    BytesDecimal(serde::de::IgnoredAny),
    ElementsAndBytes { elements: u64 },
}

#[derive(Deserialize)]
struct EstimatesJson {
    median: Estimate,
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
}

/// Which benchmark binary writes a group: only results written since that
/// binary last started belong to the run being reported.
fn binary_of(group: &str) -> &'static str {
    match group {
        "migrate" => "migrate",
        group if group.starts_with("concurrent") => "concurrency",
        _ => "stores",
    }
}

fn load_criterion(dir: &Path, starts: &BTreeMap<String, RunStart>, results: &mut Results) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|name| name == "new") {
            if let Some((key, bench)) = read_bench(&path, starts) {
                results.insert(key, bench);
            }
        } else {
            load_criterion(&path, starts, results);
        }
    }
}

fn read_bench(dir: &Path, starts: &BTreeMap<String, RunStart>) -> Option<((String, String, String), Bench)> {
    let benchmark: BenchmarkJson = serde_json::from_slice(&std::fs::read(dir.join("benchmark.json")).ok()?).ok()?;
    let estimates_path = dir.join("estimates.json");
    let written = std::fs::metadata(&estimates_path).ok()?.modified().ok()?;
    let written = written.duration_since(UNIX_EPOCH).ok()?.as_secs();
    let start = starts.get(binary_of(&benchmark.group_id))?;
    if written < start.started_unix {
        return None;
    }
    let estimates: EstimatesJson = serde_json::from_slice(&std::fs::read(estimates_path).ok()?).ok()?;
    let elements = match benchmark.throughput {
        Some(ThroughputJson::Elements(n)) | Some(ThroughputJson::ElementsAndBytes { elements: n, .. }) => n as f64,
        Some(ThroughputJson::Bytes(_) | ThroughputJson::BytesDecimal(_)) | None => 1.0,
    };
    let key = (benchmark.group_id, benchmark.function_id.unwrap_or_default(), benchmark.value_str.unwrap_or_default());
    Some((key, Bench { median_ns: estimates.median.point_estimate, elements }))
}

fn get<'r>(results: &'r Results, group: &str, function: &str, value: &str) -> Option<&'r Bench> {
    results.get(&(group.to_owned(), function.to_owned(), value.to_owned()))
}

fn time(ns: f64) -> String {
    match ns {
        ns if ns >= 1e6 => format!("{:.2} ms", ns / 1e6),
        ns if ns >= 1e3 => format!("{:.2} µs", ns / 1e3),
        ns => format!("{ns:.0} ns"),
    }
}

fn rate(per_second: f64) -> String {
    match per_second {
        r if r >= 1e6 => format!("{:.2} M/s", r / 1e6),
        r if r >= 1e3 => format!("{:.1} k/s", r / 1e3),
        r => format!("{r:.0}/s"),
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The populations the stores benchmark used, smallest first.
fn populations(results: &Results) -> Vec<String> {
    let mut seen: Vec<String> = results.keys().filter(|(g, ..)| g == "get").map(|(_, _, v)| v.clone()).collect();
    seen.sort_by_key(|label| parse_count(label));
    seen.dedup();
    seen
}

fn parse_count(label: &str) -> u64 {
    let (digits, unit) = label.split_at(label.find(|c: char| !c.is_ascii_digit()).unwrap_or(label.len()));
    let n: u64 = digits.parse().unwrap_or(0);
    match unit {
        "k" => n * 1_000,
        "M" => n * 1_000_000,
        _ => n,
    }
}

/// The stores that appear in `results`, in registry order.
fn stores_in(results: &Results) -> Vec<&'static str> {
    STORES
        .iter()
        .map(|spec| spec.name)
        .filter(|name| results.keys().any(|(_, function, _)| function.split('/').next() == Some(*name)))
        .collect()
}

fn durable(store: &str) -> bool {
    STORES.iter().any(|spec| spec.name == store && spec.durable)
}

struct Verdict {
    what: String,
    target: String,
    measured: String,
    met: Option<bool>,
    note: String,
}

impl Verdict {
    /// A measurement against a target; `shortfall` says by how much it was
    /// missed, and is asked only when it was.
    fn judged(
        what: impl Into<String>,
        target: impl Into<String>,
        measured: String,
        met: bool,
        shortfall: impl FnOnce() -> String,
    ) -> Verdict {
        let note = if met { String::new() } else { format!("missed by {}", shortfall()) };
        Verdict { what: what.into(), target: target.into(), measured, met: Some(met), note }
    }
}

fn main() {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut starts = BTreeMap::new();
    for bench in ["stores", "concurrency", "middleware", "rss", "migrate"] {
        if let Some(start) = results::read::<RunStart>(&format!("run-{bench}")) {
            starts.insert(bench.to_owned(), start);
        }
    }
    let mut results = Results::new();
    load_criterion(&settings::criterion_dir(), &starts, &mut results);
    let middleware: Option<Middleware> = results::read("middleware");
    let memory: Option<Memory> = results::read("rss");
    if results.is_empty() && middleware.is_none() {
        eprintln!("report: no benchmark results found; run `cargo bench -p sessionkit-benches` first");
        std::process::exit(1);
    }

    let charts = root.join("docs/bench");
    if let Err(err) = std::fs::create_dir_all(&charts) {
        eprintln!("report: cannot create {}: {err}", charts.display());
        std::process::exit(1);
    }
    let mut out = String::new();
    let quick = starts.values().any(|start| start.quick);
    write_header(&mut out, &starts, quick);
    let verdicts = verdicts(&results, middleware.as_ref(), memory.as_ref());
    write_glance(&mut out, &results, middleware.as_ref());
    write_targets(&mut out, &verdicts);
    write_operations(&mut out, &results, &charts);
    write_concurrency(&mut out, &results, &charts);
    write_sweep(&mut out, &results);
    write_index_cost(&mut out, &results);
    write_migration(&mut out, &results);
    if let Some(middleware) = &middleware {
        write_middleware(&mut out, middleware, &charts);
    }
    if let Some(memory) = &memory {
        write_memory(&mut out, memory);
    }
    write_method(&mut out);
    if let Ok(analysis) = std::fs::read_to_string(root.join("benches/analysis.md")) {
        out.push('\n');
        out.push_str(&analysis);
    }
    let path = root.join("BENCHMARKS.md");
    match std::fs::write(&path, out) {
        Ok(()) => println!("report: wrote {} and the charts in {}", path.display(), charts.display()),
        Err(err) => {
            eprintln!("report: cannot write {}: {err}", path.display());
            std::process::exit(1);
        }
    }
}

/// The `index-cost` group: each write on a session bound to a user against
/// the same write on a session bound to nobody.
fn write_index_cost(out: &mut String, results: &Results) {
    const OPS: [&str; 4] = ["set", "update", "rename", "delete"];
    let per_op = |store: &str, op: &str, variant: &str| {
        get(results, "index-cost", &format!("{store}/{op}"), variant).map(|bench| bench.median_ns / bench.elements)
    };
    let stores: Vec<&str> = STORES
        .iter()
        .map(|spec| spec.name)
        .filter(|store| OPS.iter().any(|op| per_op(store, op, "with-user").is_some()))
        .collect();
    if stores.is_empty() {
        return;
    }
    let _ = writeln!(out, "## What the user index costs\n");
    let _ = writeln!(
        out,
        "Every store keeps an index from a user to their sessions, written in the same atomic step as the \
         session. Each cell is the median time of one operation on a session bound to a user (which the \
         index follows) against the same operation on a session bound to nobody, and their ratio (the \
         `index-cost` group of the `stores` benchmark). Stores that wait on I/O run waves of 256 \
         concurrent operations, as a loaded server would, so their times are per operation within a \
         wave; the others run one at a time. The store holds 10,000 other sessions; the bound sessions \
         belong to 100 users.\n"
    );
    let _ = writeln!(out, "| store | `set` (new session) | `update` | `rename` | `delete` |");
    let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
    for store in stores {
        let cells: Vec<String> = OPS
            .iter()
            .map(|op| match (per_op(store, op, "with-user"), per_op(store, op, "without-user")) {
                (Some(with), Some(without)) => {
                    format!("{} vs {} ({:.2}×)", time(with), time(without), with / without)
                }
                _ => "—".to_owned(),
            })
            .collect();
        let _ = writeln!(out, "| {store} | {} |", cells.join(" | "));
    }
    let _ = writeln!(out);
}

/// The `migrate` benchmark: `sessionkit migrate` from redb to each store.
fn write_migration(out: &mut String, results: &Results) {
    let rows: Vec<(&str, &str, &Bench)> = STORES
        .iter()
        .filter_map(|spec| {
            let function = format!("redb-to-{}", spec.name);
            results
                .iter()
                .find(|((group, f, _), _)| group == "migrate" && *f == function)
                .map(|((_, _, count), bench)| (spec.name, count.as_str(), bench))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Moving sessions between stores: `sessionkit migrate`\n");
    let _ = writeln!(
        out,
        "One whole `sessionkit migrate --from redb:… --to URL` run per iteration (the CLI's own code, with \
         its default batch of 1,000 and 32 writes in flight): the keying check, every page scanned from \
         redb, every session written to the destination. The source holds 100 B sessions, half of them \
         bound to a user; the destination already holds them from the previous iteration, so each run \
         replaces every session (what a second run of a migration does). Median of 10 runs.\n"
    );
    let _ = writeln!(out, "| from → to | sessions | sessions/s | 100,000 sessions in |");
    let _ = writeln!(out, "| --- | --- | --- | --- |");
    for (store, count, bench) in rows {
        let per_second = bench.per_second();
        let _ = writeln!(
            out,
            "| redb → {store} | {count} | {} | {:.0} s |",
            rate(per_second),
            100_000.0 / per_second.max(1e-9)
        );
    }
    let _ = writeln!(out);
}

fn write_header(out: &mut String, starts: &BTreeMap<String, RunStart>, quick: bool) {
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Generated by `benches/src/bin/report.rs` from a real run of `cargo bench -p sessionkit-benches`; \
         do not edit by hand. Reproduce with one command: `scripts/bench` (about 30 minutes on the machine \
         below; `SESSIONKIT_BENCH_QUICK=1 scripts/bench` for a smoke run of a few minutes whose numbers are \
         not for publishing).\n"
    );
    if quick {
        let _ = writeln!(out, "> **Quick mode**: small populations and short measurements. Not for publishing.\n");
    }
    if let Some(machine) = starts.values().next().map(|start| &start.machine) {
        let _ = writeln!(out, "## The machine\n");
        let _ = writeln!(out, "| CPU | cores | memory | OS |\n| --- | --- | --- | --- |");
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} GiB | {} |\n",
            machine.cpu,
            machine.cores,
            machine.memory_bytes as f64 / (1024.0 * 1024.0 * 1024.0),
            machine.os
        );
    }
    let _ = writeln!(out, "| benchmark | started | load average at start (1, 5, 15 min) |\n| --- | --- | --- |");
    for (bench, start) in starts {
        let _ = writeln!(
            out,
            "| `{bench}` | {} | {:.2}, {:.2}, {:.2} |",
            utc_timestamp(start.started_unix),
            start.load[0],
            start.load[1],
            start.load[2]
        );
    }
    let busy = starts.values().any(|start| start.load[0] >= 1.0);
    if busy {
        let _ = writeln!(
            out,
            "\nA 1-minute load of 1.0 or more at a start means other work shared the machine's cores during \
             that benchmark: absolute numbers are lower and noisier than on a quiet machine. The middleware \
             comparison interleaves its variants so that their ratios hold regardless."
        );
    }
    out.push('\n');
}

fn write_glance(out: &mut String, results: &Results, middleware: Option<&Middleware>) {
    let _ = writeln!(out, "## At a glance: which store for which load\n");
    let pops = populations(results);
    let pop =
        if pops.iter().any(|p| p == "100k") { "100k".to_owned() } else { pops.last().cloned().unwrap_or_default() };
    let mix = |store: &str, tasks: &str| get(results, "concurrent-mix", store, tasks).map(Bench::per_second);
    let layer = |store: &str| {
        let bare = middleware?.variants.first()?.median;
        let variant = middleware?.variants.iter().find(|v| v.id == format!("sessionkit-{store}"))?;
        Some((variant.median, variant.median / bare))
    };
    for store in stores_in(results) {
        let get_ns = get(results, "get", &format!("{store}/100B"), &pop).map(|b| time(b.median_ns));
        let set_ns = get(results, "set", &format!("{store}/100B"), &pop).map(|b| time(b.median_ns));
        let what = match store {
            "memory" => "one process; sessions vanish on restart and are not shared between processes",
            "sqlite" => "one machine; sessions survive restarts, in a file or in the application's SQLite database",
            "redb" => "one process; sessions survive restarts, no server to run",
            "file" => "one machine; sessions survive restarts as one file each, inspectable with any tool",
            "redis" => "many application servers sharing one session space",
            "postgres" => "many application servers sharing one session space in the PostgreSQL they already run",
            _ => "",
        };
        let _ = write!(
            out,
            "- **{store}** ({what}): `get` {}, `set` {} at 100 B with {pop} sessions",
            get_ns.unwrap_or_else(|| "n/a".into()),
            set_ns.unwrap_or_else(|| "n/a".into())
        );
        if let (Some(one), Some(many)) = (mix(store, "1"), mix(store, "64")) {
            let _ = write!(out, "; realistic mix {} with 1 task, {} with 64", rate(one), rate(many));
        }
        if let Some((rps, share)) = layer(store) {
            let _ =
                write!(out, "; {} requests/s through the layer ({:.0}% of a bare handler)", rate(rps), share * 100.0);
        }
        out.push_str(".\n");
    }
    let _ = writeln!(
        out,
        "\nPick **memory** when losing sessions on a restart is acceptable: it is one to two orders of magnitude \
         faster than anything that writes to disk. Among the durable stores every write waits for `fsync`, so \
         their single-request latency is the disk's; under concurrency their group commit shares one `fsync` \
         among all the writes waiting, which the `concurrent-set` table shows.\n"
    );
}

fn verdicts(results: &Results, middleware: Option<&Middleware>, memory: Option<&Memory>) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    for (op, target) in [("get", 300.0), ("set", 600.0)] {
        let measured = get(results, op, "memory/100B", "100k");
        verdicts.push(Verdict {
            what: format!("MemoryStore `{op}`, 100 B, 100,000 sessions"),
            target: format!("< {target:.0} ns"),
            measured: measured.map_or("not run".into(), |b| time(b.median_ns)),
            met: measured.map(|b| b.median_ns < target),
            note: measured
                .filter(|b| b.median_ns >= target)
                .map(|b| {
                    format!("missed by {:.0} ns ({:.0}%)", b.median_ns - target, 100.0 * (b.median_ns / target - 1.0))
                })
                .unwrap_or_default(),
        });
    }
    for store in ["redb", "sqlite"] {
        let Some(measured) = get(results, "get", &format!("{store}/100B"), "100k") else { continue };
        verdicts.push(Verdict::judged(
            format!("{store} `get`, 100 B, 100,000 sessions"),
            "≤ 5 µs",
            time(measured.median_ns),
            measured.median_ns <= 5_000.0,
            || time(measured.median_ns - 5_000.0),
        ));
    }
    if let (Some(store), Some(floor)) =
        (get(results, "get", "file/100B", "100k"), get(results, "file-read-floor", "open-read-close/100B", "100k"))
    {
        verdicts.push(Verdict {
            what: "FileStore `get`, 100 B, 100,000 sessions, against an open, read and close of its file".into(),
            target: "as close as it gets".into(),
            measured: format!(
                "{} vs {} ({:.2}×)",
                time(store.median_ns),
                time(floor.median_ns),
                store.median_ns / floor.median_ns
            ),
            met: None,
            note: "no number was set".into(),
        });
    }
    if let Some(middleware) = middleware {
        let find = |id: &str| middleware.variants.iter().find(|v| v.id == id).map(|v| v.median);
        // The second round's targets: (what, ours, against, floor).
        let ratios = [
            ("layer + MemoryStore, write per request, vs the bare handler", "sessionkit-memory", "bare", 0.90),
            ("layer + MemoryStore, read only, vs the bare handler", "sessionkit-memory-read-only", "bare", 0.95),
            (
                "layer + RedisStore vs tower-sessions-redis-store, same redis-server",
                "sessionkit-redis",
                "tower-sessions-redis",
                1.2,
            ),
            ("layer + FileStore, one session, vs the bare handler", "sessionkit-file-one-session", "bare", 0.5),
            ("layer + SqliteStore, one session, vs the bare handler", "sessionkit-sqlite-one-session", "bare", 0.5),
            ("layer + RedbStore, one session, vs the bare handler", "sessionkit-redb-one-session", "bare", 0.5),
        ];
        for (what, ours, against, floor) in ratios {
            let (Some(ours), Some(against)) = (find(ours), find(against)) else { continue };
            let ratio = ours / against;
            verdicts.push(Verdict::judged(
                what,
                format!("≥ {floor:.2}×"),
                format!("{ratio:.2}× ({ours:.0} vs {against:.0} req/s)"),
                ratio >= floor,
                || format!("{:.2}×", floor - ratio),
            ));
        }
        if let (Some(bare), Some(ours), Some(tower)) =
            (find("bare"), find("sessionkit-memory"), find("tower-sessions-memory"))
        {
            let share = ours / bare;
            verdicts.push(Verdict::judged(
                "layer + MemoryStore, requests/s vs the bare handler",
                "≥ 80%",
                format!("{:.1}%", share * 100.0),
                share >= 0.8,
                || format!("{:.1} points", 80.0 - share * 100.0),
            ));
            let ratio = ours / tower;
            verdicts.push(Verdict::judged(
                "layer + MemoryStore, requests/s vs tower-sessions + its MemoryStore",
                "≥ 1.25×",
                format!("{ratio:.2}×"),
                ratio >= 1.25,
                || format!("{:.2}×", 1.25 - ratio),
            ));
        }
    }
    if let Some(one_session) =
        middleware.and_then(|m| m.variants.iter().find(|v| v.id == "sessionkit-file-one-session"))
    {
        let target = 10_000.0;
        verdicts.push(Verdict::judged(
            format!(
                "layer + FileStore, {} connections on one session, requests/s",
                middleware.map_or(0, |m| m.connections)
            ),
            "≥ 10,000/s",
            format!("{:.0}/s", one_session.median),
            one_session.median >= target,
            || format!("{:.0}/s", target - one_session.median),
        ));
    }
    for store in stores_in(results).into_iter().filter(|store| durable(store)) {
        let one = get(results, "concurrent-set", store, "1");
        let many = get(results, "concurrent-set", store, "64");
        if let (Some(one), Some(many)) = (one, many) {
            let ratio = many.per_second() / one.per_second();
            verdicts.push(Verdict::judged(
                format!("{store}: durable `set` throughput, 64 writers vs 1"),
                "≥ 5×",
                format!("{ratio:.1}× ({} vs {})", rate(many.per_second()), rate(one.per_second())),
                ratio >= 5.0,
                || format!("{:.1}×", 5.0 - ratio),
            ));
        }
    }
    if let Some(memory) = memory {
        let rss = mib(memory.rss_after);
        verdicts.push(Verdict::judged(
            format!("RSS with {} MemoryStore sessions of {} B", thousands(memory.sessions), memory.payload_bytes),
            "< 400 MiB",
            format!("{rss:.0} MiB"),
            rss < 400.0,
            || format!("{:.0} MiB", rss - 400.0),
        ));
    }
    verdicts
}

fn write_targets(out: &mut String, verdicts: &[Verdict]) {
    let _ = writeln!(out, "## Targets\n");
    let _ = writeln!(out, "| what | target | measured | met | |\n| --- | --- | --- | --- | --- |");
    for v in verdicts {
        let met = match v.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "n/a",
        };
        let _ = writeln!(out, "| {} | {} | {} | {met} | {} |", v.what, v.target, v.measured, v.note);
    }
    let _ = writeln!(out, "\nWhy a target was missed is under [Analysis](#analysis).\n");
}

fn write_operations(out: &mut String, results: &Results, charts: &Path) {
    let _ = writeln!(out, "## Store operations, one at a time\n");
    let _ = writeln!(
        out,
        "Median time per operation (and operations per second) on one task. Columns are the payload size; \
         rows the store and how many sessions it held.\n"
    );
    let pops = populations(results);
    for op in ["get", "set", "update", "touch", "delete"] {
        let _ = writeln!(out, "### `{op}`\n");
        let _ = write!(out, "| store | sessions |");
        for (label, _) in PAYLOADS {
            let _ = write!(out, " {label} |");
        }
        let _ = writeln!(out, "\n| --- | --- |{}", " --- |".repeat(PAYLOADS.len()));
        for store in stores_in(results) {
            for pop in &pops {
                if get(results, op, &format!("{store}/100B"), pop).is_none() {
                    continue;
                }
                let _ = write!(out, "| {store} | {pop} |");
                for (label, _) in PAYLOADS {
                    match get(results, op, &format!("{store}/{label}"), pop) {
                        Some(b) => {
                            let _ = write!(out, " {} ({}) |", time(b.median_ns), rate(b.per_second()));
                        }
                        None => out.push_str(" n/a |"),
                    }
                }
                out.push('\n');
            }
        }
        out.push('\n');
    }
    let pop =
        if pops.iter().any(|p| p == "100k") { "100k".to_owned() } else { pops.last().cloned().unwrap_or_default() };
    let series: Vec<(String, Vec<Option<f64>>)> = stores_in(results)
        .into_iter()
        .map(|store| {
            let values = ["get", "set", "update", "touch", "delete"]
                .iter()
                .map(|op| get(results, op, &format!("{store}/100B"), &pop).map(|b| b.median_ns))
                .collect();
            (store.to_owned(), values)
        })
        .collect();
    let file = charts.join("operations.svg");
    match bar_chart(
        &file,
        &format!("Median time per operation, 100 B sessions, {pop} stored (log scale, lower is better)"),
        &["get", "set", "update", "touch", "delete"].map(String::from),
        &series,
        "nanoseconds",
        true,
    ) {
        Ok(()) => {
            let _ = writeln!(out, "![Median time per store operation](docs/bench/operations.svg)\n");
        }
        Err(err) => eprintln!("report: chart {}: {err}", file.display()),
    }
}

fn write_concurrency(out: &mut String, results: &Results, charts: &Path) {
    let stores: Vec<&str> =
        stores_in(results).into_iter().filter(|s| get(results, "concurrent-mix", s, "1").is_some()).collect();
    if stores.is_empty() {
        return;
    }
    let tasks = ["1", "8", "64"];
    let _ = writeln!(out, "## Concurrency\n");
    let _ = writeln!(
        out,
        "Operations per second across all tasks, on a multi-thread runtime with one worker per core, \
         against a store of {} sessions of 100 B.\n",
        settings_population()
    );
    for (group, title) in [
        ("concurrent-mix", "Realistic mix: 80% `get`, 15% `update`, 5% new session"),
        ("concurrent-set", "Writes only: `set` over random sessions (group commit at work)"),
    ] {
        let _ = writeln!(out, "### {title}\n");
        let _ = writeln!(out, "| store | 1 task | 8 tasks | 64 tasks | 64 vs 1 |\n| --- | --- | --- | --- | --- |");
        for store in &stores {
            let values: Vec<Option<f64>> =
                tasks.iter().map(|t| get(results, group, store, t).map(Bench::per_second)).collect();
            let cell = |v: &Option<f64>| v.map_or("n/a".to_owned(), rate);
            let ratio = match (values[0], values[2]) {
                (Some(one), Some(many)) => format!("{:.1}×", many / one),
                _ => "n/a".into(),
            };
            let _ = writeln!(
                out,
                "| {store} | {} | {} | {} | {ratio} |",
                cell(&values[0]),
                cell(&values[1]),
                cell(&values[2])
            );
        }
        out.push('\n');
    }
    let series: Vec<(String, Vec<Option<f64>>)> = stores
        .iter()
        .map(|store| {
            let values =
                tasks.iter().map(|t| get(results, "concurrent-mix", store, t).map(Bench::per_second)).collect();
            (store.to_string(), values)
        })
        .collect();
    let file = charts.join("concurrency.svg");
    match bar_chart(
        &file,
        "Realistic mix, operations per second (log scale, higher is better)",
        &tasks.map(|t| format!("{t} task{}", if t == "1" { "" } else { "s" })),
        &series,
        "operations per second",
        true,
    ) {
        Ok(()) => {
            let _ = writeln!(out, "![Operations per second under concurrency](docs/bench/concurrency.svg)\n");
        }
        Err(err) => eprintln!("report: chart {}: {err}", file.display()),
    }
}

fn settings_population() -> String {
    thousands(settings::large_population())
}

/// `1000000` → `1,000,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn write_sweep(out: &mut String, results: &Results) {
    let rows: Vec<_> = results.iter().filter(|((g, ..), _)| g == "delete_expired").collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "## `delete_expired`\n");
    let _ = writeln!(out, "One sweep removing the expired 1% of a store's sessions.\n");
    let _ = writeln!(
        out,
        "| store | expired of stored | sweep | expired sessions removed per second |\n| --- | --- | --- | --- |"
    );
    for store in STORES.iter().map(|s| s.name) {
        for ((_, function, value), bench) in &rows {
            if function != store {
                continue;
            }
            let removed = if STORES.iter().any(|spec| spec.name == store && spec.expires_itself) {
                "none: the engine expires records itself".to_owned()
            } else {
                rate(bench.per_second())
            };
            let _ = writeln!(out, "| {store} | {value} | {} | {removed} |", time(bench.median_ns));
        }
    }
    out.push('\n');
}

fn write_middleware(out: &mut String, middleware: &Middleware, charts: &Path) {
    let _ = writeln!(out, "## The middleware, over HTTP\n");
    let _ = writeln!(
        out,
        "Requests per second through a real axum server on 127.0.0.1 ({} worker threads), driven by an \
         in-process load generator with {} keep-alive connections, each one browser with its own cookie \
         (the *one session* variants: all connections send the same cookie, so every request updates the \
         same record). The session handlers read a counter and write it back incremented, so every request \
         loads and updates its session; the load generator checks every response's counter (on one session: \
         that the session was found and kept). Each variant ran {} rounds of {:.0} s, interleaved with the \
         others; the table shows the median round.\n",
        middleware.server_threads,
        middleware.connections,
        middleware.variants.first().map_or(0, |v| v.rounds.len()),
        middleware.round_secs
    );
    let bare = middleware.variants.iter().find(|v| v.id == "bare").map(|v| v.median);
    let tower = middleware.variants.iter().find(|v| v.id == "tower-sessions-memory").map(|v| v.median);
    let _ = writeln!(
        out,
        "| variant | requests/s | vs bare | vs tower-sessions | rounds |\n| --- | --- | --- | --- | --- |"
    );
    for v in &middleware.variants {
        let ratio = |base: Option<f64>, percent: bool| match base {
            Some(base) if percent => format!("{:.1}%", 100.0 * v.median / base),
            Some(base) => format!("{:.2}×", v.median / base),
            None => "n/a".into(),
        };
        let rounds: Vec<String> = v.rounds.iter().map(|r| format!("{:.0}", r)).collect();
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} |",
            v.label,
            v.median,
            ratio(bare, true),
            ratio(tower, false),
            rounds.join(", ")
        );
    }
    out.push('\n');
    // Round i of every variant ran in the same rotation, so rounds pair up.
    let rounds = |id: &str| middleware.variants.iter().find(|v| v.id == id).map(|v| v.rounds.clone());
    for (base, name) in [("bare", "the bare handler"), ("tower-sessions-memory", "tower-sessions")] {
        if let (Some(ours), Some(theirs)) = (rounds("sessionkit-memory"), rounds(base)) {
            let mut ratios: Vec<f64> = ours.iter().zip(&theirs).map(|(a, b)| a / b).collect();
            ratios.sort_by(f64::total_cmp);
            if let (Some(low), Some(high)) = (ratios.first(), ratios.last()) {
                let _ = writeln!(
                    out,
                    "Round by round, sessionkit with MemoryStore against {name}: from {low:.2}× to {high:.2}× \
                     (median {:.2}×).",
                    ratios[ratios.len() / 2]
                );
            }
        }
    }
    out.push('\n');
    let series = vec![(
        "requests per second".to_owned(),
        middleware.variants.iter().map(|v| Some(v.median)).collect::<Vec<_>>(),
    )];
    let labels: Vec<String> = middleware.variants.iter().map(|v| v.id.clone()).collect();
    let file = charts.join("middleware.svg");
    match bar_chart(
        &file,
        "Requests per second through axum (higher is better)",
        &labels,
        &series,
        "requests per second",
        false,
    ) {
        Ok(()) => {
            let _ = writeln!(out, "![Requests per second through the middleware](docs/bench/middleware.svg)\n");
        }
        Err(err) => eprintln!("report: chart {}: {err}", file.display()),
    }
}

fn write_memory(out: &mut String, memory: &Memory) {
    let _ = writeln!(out, "## Memory\n");
    let _ = writeln!(
        out,
        "Resident set size (`VmRSS`) of a fresh process holding {} `MemoryStore` sessions of {} B each: \
         **{:.0} MiB** ({:.0} MiB before filling the store, {:.0} bytes per session).",
        thousands(memory.sessions),
        memory.payload_bytes,
        mib(memory.rss_after),
        mib(memory.rss_before),
        memory.rss_after.saturating_sub(memory.rss_before) as f64 / memory.sessions as f64
    );
    if let Some(peer) = memory.peer_rss_growth {
        let _ = writeln!(out, "The same sessions in tower-sessions' `MemoryStore` add {:.0} MiB.", mib(peer));
    }
    if let Some(ns) = memory.random_load_ns {
        let _ = writeln!(
            out,
            "\nOn this machine a load from a random address of a 32 MiB buffer (a cache and TLB miss) takes \
             **{ns:.0} ns**: the floor under any operation on a session no recent operation touched."
        );
    }
    out.push('\n');
}

fn write_method(out: &mut String) {
    let _ = writeln!(
        out,
        "## Method\n\n\
         - Store operations (`benches/stores.rs`): each criterion sample runs a batch of operations inside one \
         `block_on` of a current-thread tokio runtime and times the whole batch, so the runtime's entry is paid \
         once per batch; every call goes through `&dyn SessionStore`, boxed future included, as the layer \
         makes it. Stores hold sessions of 100 B; 100 B operations visit all of them in an order unrelated to \
         the order they were written in; 4 KiB and 64 KiB operations go to 1,000 sessions rewritten to that \
         size. `delete` times deleting sessions written (untimed) just before. Durable stores run with their \
         default durability: every acknowledged write is on disk.\n\
         - Concurrency (`benches/concurrency.rs`): each sample splits its operations among 1, 8 or 64 tokio \
         tasks on a multi-thread runtime; criterion's time per iteration is wall time per operation.\n\
         - Middleware (`benches/middleware.rs`): see its section.\n\
         - Memory (`benches/rss.rs`): each store is filled in a fresh child process, so memory the allocator \
         kept from another measurement cannot count.\n\
         - Timing settings: 0.5 s warm-up, 1.5 s measurement (3 s for concurrency), 30 samples (10 for \
         concurrency and sweeps); medians are criterion's median estimates.\n"
    );
}

/// A grouped bar chart: one group per label, one bar per series.
fn bar_chart(
    path: &Path,
    title: &str,
    labels: &[String],
    series: &[(String, Vec<Option<f64>>)],
    unit: &str,
    log: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let values: Vec<f64> = series.iter().flat_map(|(_, v)| v.iter().flatten().copied()).filter(|v| *v > 0.0).collect();
    if values.is_empty() {
        return Err("no values to chart".into());
    }
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    let min = values.iter().copied().fold(f64::MAX, f64::min);
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let groups = labels.len() as f64;
    let label_of = |x: f64| -> String {
        let index = x.floor();
        if index >= 0.0 && (x - index - 0.5).abs() < 1e-6 {
            labels.get(index as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let builder = || {
        let mut builder = ChartBuilder::on(&root);
        builder.caption(title, ("sans-serif", 18)).margin(15).x_label_area_size(35).y_label_area_size(80);
        builder
    };
    // The two scales are different types to plotters, so the bars are drawn
    // by one generic function.
    if log {
        let low = 10f64.powf(min.log10().floor());
        let high = 10f64.powf(max.log10().ceil() + 0.3);
        let chart = builder().build_cartesian_2d(0f64..groups, (low..high).log_scale())?;
        draw_bars(chart, series, &label_of, labels.len(), unit, low)?;
    } else {
        let chart = builder().build_cartesian_2d(0f64..groups, 0f64..max * 1.1)?;
        draw_bars(chart, series, &label_of, labels.len(), unit, 0.0)?;
    }
    root.present()?;
    Ok(())
}

/// Draws the mesh, one bar per series and group (from `low` up), and the legend.
fn draw_bars<'a, Y>(
    mut chart: ChartContext<'a, SVGBackend<'a>, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    series: &[(String, Vec<Option<f64>>)],
    label_of: &dyn Fn(f64) -> String,
    groups: usize,
    unit: &str,
    low: f64,
) -> Result<(), Box<dyn std::error::Error>>
where
    Y: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    const COLORS: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups * 2 + 1)
        .x_label_formatter(&|x| label_of(*x))
        .y_desc(unit)
        .y_label_formatter(&|y| short(*y))
        .draw()?;
    let width = 0.8 / series.len().max(1) as f64;
    for (i, (name, vals)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let bars: Vec<Rectangle<(f64, f64)>> = vals
            .iter()
            .enumerate()
            .filter_map(|(g, v)| {
                let v = (*v)?;
                let x0 = g as f64 + 0.1 + i as f64 * width;
                Some(Rectangle::new([(x0, low), (x0 + width * 0.9, v)], color.filled()))
            })
            .collect();
        chart
            .draw_series(bars)?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
    }
    Ok(())
}

/// `1500` → `1.5k`, `2000000` → `2M`.
fn short(value: f64) -> String {
    match value {
        v if v >= 1e6 => format!("{}M", trim(v / 1e6)),
        v if v >= 1e3 => format!("{}k", trim(v / 1e3)),
        v => trim(v),
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.1}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_charts_draw_every_series_on_both_scales() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let labels = vec!["get".to_string(), "set".to_string()];
        let series = vec![
            ("memory".to_string(), vec![Some(350.0), Some(480.0)]),
            ("sqlite".to_string(), vec![Some(35_000.0), None]),
        ];
        for log in [true, false] {
            let path = dir.path().join(format!("chart-{log}.svg"));
            bar_chart(&path, "Operations", &labels, &series, "ns", log).expect("chart");
            let svg = std::fs::read_to_string(&path).expect("svg");
            assert!(svg.contains("memory") && svg.contains("sqlite") && svg.contains("Operations"), "{svg}");
            // Three values, three bars (the missing one is skipped), plus legend marks.
            assert!(svg.matches("<rect").count() >= 3, "{svg}");
        }
        assert!(bar_chart(&dir.path().join("empty.svg"), "t", &labels, &[], "ns", false).is_err());
    }
}
