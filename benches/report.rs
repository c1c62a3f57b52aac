//! `make bench`: every speed and size figure, measured in one run, each against a
//! baseline from the same run, printed as one Markdown table and written to
//! target/bench/report.md. Network figures are measured in namespaces this bench creates, with
//! a userspace OVS; nothing touches the machine's own network.
//!
//! Run as root (namespaces, raw ICMP). `NCPB_PINGER=1` turns this same executable into the
//! peer's 1 ms prober (started inside the peer namespace with `ip netns exec`).

#[path = "../tests/common/mod.rs"]
mod common;

use common::netlab::{sh, NetLab};
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ncp-bootstrap");

struct Row {
    what: String,
    ours: String,
    baseline: String,
    ratio: String,
    target: String,
    command: String,
}

fn main() {
    if std::env::var_os("NCPB_PINGER").is_some() {
        return pinger();
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // NCPB_BENCH_ONLY=ovs-run,moves (names below) measures only those groups, for development;
    // the report of record is the whole run.
    let only = std::env::var("NCPB_BENCH_ONLY").ok();
    let want = |g: &str| only.as_deref().is_none_or(|o| o.split(',').any(|x| x == g));
    let mut rows = Vec::new();
    if want("size") {
        rows.extend(size_row());
    }
    if want("install") {
        rows.extend(install_rows());
    }
    if common::is_root() && common::have("ovs-vsctl") {
        if want("ovs-run") {
            rows.extend(ovs_run_rows());
        }
        if want("logs") {
            rows.extend(log_rows());
        }
        if want("monitor") {
            rows.extend(monitor_rows());
        }
        if want("moves") {
            rows.extend(move_rows());
            rows.extend(routes_rows());
        }
    } else {
        eprintln!("bench: not root or no OVS: network rows skipped");
    }
    if want("vm") {
        rows.extend(vm_rows());
        rows.extend(restart_rows());
        rows.extend(vm_monitor_rows());
        rows.extend(package_rows());
        rows.extend(kmod_rows());
        rows.extend(ncp_manifest_rows());
    }
    let mut md = String::from(
        "| figure | ours | baseline | ratio | target | how |\n|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            r.what, r.ours, r.baseline, r.ratio, r.target, r.command
        );
    }
    println!("{md}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("report.md"), &md);
}

/// How many times the baseline ours took (for targets stated as a multiple of a baseline).
fn times(ours: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{:.2}× the baseline", ours / base)
    } else {
        "-".into()
    }
}

fn ratio(ours: f64, base: f64) -> String {
    if ours > 0.0 {
        format!("{:.1}×", base / ours)
    } else {
        "-".into()
    }
}

// ---- size

fn size_row() -> Option<Row> {
    let size = std::fs::metadata(BIN).ok()?.len() as f64 / (1024.0 * 1024.0);
    let ovs =
        std::fs::metadata("/usr/sbin/ovs-vswitchd").map(|m| m.len() as f64 / (1024.0 * 1024.0));
    Some(Row {
        what: "release binary size (static)".into(),
        ours: format!("{size:.2} MiB"),
        baseline: ovs.map_or("-".into(), |o| format!("{o:.2} MiB (ovs-vswitchd)")),
        ratio: "-".into(),
        target: "≤ 15 MiB".into(),
        command: "`stat` of the binary `make build` makes (glibc linked in statically; the bench builds the same)".into(),
    })
}

/// What a VM scenario printed: with `NCPB_BENCH_REUSE_VM_LOGS=1` (CI, right after `make
/// vm-test` of the same checkout) the copy vm-test.sh kept in target/vm/logs, so the scenario
/// does not run twice; otherwise a run of its own.
fn scenario_output(scenario: &str) -> String {
    let repo = env!("CARGO_MANIFEST_DIR");
    let kept = Path::new(repo)
        .join("target/vm/logs")
        .join(format!("{scenario}.log"));
    if std::env::var_os("NCPB_BENCH_REUSE_VM_LOGS").is_some() {
        if let Ok(text) = std::fs::read_to_string(&kept) {
            eprintln!("bench: {scenario} figures from {}", kept.display());
            return text;
        }
    }
    Command::new("bash")
        .arg(format!("{repo}/vagrant/harness/vm-test.sh"))
        .arg(scenario)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

// ---- install: fresh vs converged, and peak RSS

fn bundle(dir: &Path) -> std::path::PathBuf {
    common::bundle(dir, "4.1.0.22016640")
}

/// Runs a command and returns (wall time, peak RSS in KiB) from wait4's rusage.
fn timed(cmd: &mut Command) -> (Duration, i64) {
    let t = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet waited for; status and usage are valid pointers.
    unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    std::mem::forget(child);
    (t.elapsed(), usage.ru_maxrss)
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn install_rows() -> Vec<Row> {
    let tmp = tempfile::tempdir().unwrap();
    let b = bundle(tmp.path());
    let n = 30;
    let mut fresh = Vec::new();
    let mut rss = 0;
    for i in 0..n {
        let host = tmp.path().join(format!("fresh{i}"));
        std::fs::create_dir_all(host.join("etc")).unwrap();
        let (d, r) = timed(
            Command::new(BIN)
                .arg("--host-root")
                .arg(&host)
                .args(["-q", "install", "--bundle"])
                .arg(&b),
        );
        fresh.push(d.as_secs_f64() * 1000.0);
        rss = rss.max(r);
    }
    let host = tmp.path().join("fresh0");
    let mut conv = Vec::new();
    for _ in 0..200 {
        let (d, r) = timed(
            Command::new(BIN)
                .arg("--host-root")
                .arg(&host)
                .args(["-q", "install", "--bundle"])
                .arg(&b),
        );
        conv.push(d.as_secs_f64() * 1000.0);
        rss = rss.max(r);
    }
    let (fmin, fmed, fmax) = stats(fresh);
    let (cmin, cmed, cmax) = stats(conv);
    vec![
        Row {
            what: "`install`, converged re-run (min / median / max)".into(),
            ours: format!("{cmin:.2} / {cmed:.2} / {cmax:.2} ms"),
            baseline: format!("fresh host root: {fmin:.2} / {fmed:.2} / {fmax:.2} ms"),
            ratio: ratio(cmed, fmed),
            target: "converged ≤ 20 ms".into(),
            command: format!(
                "release binary, {n} fresh and 200 converged runs, wall time per process"
            ),
        },
        Row {
            what: "peak RSS of `install`".into(),
            ours: format!("{:.2} MiB", rss as f64 / 1024.0),
            baseline: "-".into(),
            ratio: "-".into(),
            target: "≤ 16 MiB".into(),
            command: "max `ru_maxrss` (wait4) over the runs above".into(),
        },
    ]
}

// ---- the peer's prober

#[derive(Debug, Default)]
struct PingResult {
    sent: u32,
    received: u32,
    longest_gap_ms: f64,
}

/// In the peer namespace: ICMP echo to $NCPB_TARGET every 1 ms for $NCPB_MS ms; prints
/// `sent received longest_gap_ms`. The longest gap is between consecutive replies received.
fn pinger() {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    use std::io::Read;
    let target: std::net::Ipv4Addr = std::env::var("NCPB_TARGET").unwrap().parse().unwrap();
    let ms: u64 = std::env::var("NCPB_MS").unwrap().parse().unwrap();
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let rx = sock.try_clone().unwrap();
    let id = (std::process::id() & 0xffff) as u16;
    let end = Instant::now() + Duration::from_millis(ms);
    let receiver = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        let mut got = std::collections::BTreeSet::new();
        let mut last: Option<Instant> = None;
        let mut gap = Duration::ZERO;
        while Instant::now() < end + Duration::from_millis(200) {
            let Ok(n) = (&rx).read(&mut buf) else {
                continue;
            };
            let Some((rid, seq, _)) = ncp_bootstrap::host::probe::echo_reply(false, &buf[..n])
            else {
                continue;
            };
            if rid == id && got.insert(seq) {
                let now = Instant::now();
                if let Some(l) = last {
                    gap = gap.max(now - l);
                }
                last = Some(now);
            }
        }
        (got.len() as u32, gap)
    });
    let dst = SockAddr::from(std::net::SocketAddr::new(target.into(), 0));
    let mut seq: u16 = 0;
    let mut next = Instant::now();
    while Instant::now() < end {
        let pkt = ncp_bootstrap::host::probe::echo_request(false, id, seq, &[]);
        let _ = sock.send_to(&pkt, &dst);
        seq = seq.wrapping_add(1);
        next += Duration::from_millis(1);
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    let (received, gap) = receiver.join().unwrap();
    println!("{} {} {:.3}", seq, received, gap.as_secs_f64() * 1000.0);
}

fn start_pinger(lab: &NetLab, target: &str, ms: u64) -> std::process::Child {
    Command::new("ip")
        .args(["netns", "exec", &lab.peer])
        .arg(std::env::current_exe().unwrap())
        .env("NCPB_PINGER", "1")
        .env("NCPB_TARGET", target)
        .env("NCPB_MS", ms.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish_pinger(child: std::process::Child) -> PingResult {
    let out = child.wait_with_output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    let v: Vec<&str> = s.split_whitespace().collect();
    PingResult {
        sent: v.first().and_then(|x| x.parse().ok()).unwrap_or(0),
        received: v.get(1).and_then(|x| x.parse().ok()).unwrap_or(0),
        longest_gap_ms: v.get(2).and_then(|x| x.parse().ok()).unwrap_or(0.0),
    }
}

/// Runs `action` while the peer pings 10.0.0.5 every 1 ms; returns what the peer saw and the
/// action's own output.
fn under_ping<T>(lab: &NetLab, action: impl FnOnce() -> T) -> (PingResult, T) {
    let p = start_pinger(lab, "10.0.0.5", 2500);
    std::thread::sleep(Duration::from_millis(800));
    let t = action();
    (finish_pinger(p), t)
}

fn lab() -> NetLab {
    let mut lab = NetLab::new().expect("lab");
    lab.standard();
    lab.start_ovs();
    // Userspace OVS and veth: TCP would need checksum offload off; ICMP does not, but keep the
    // peer honest for any protocol.
    let _ = Command::new("ip")
        .args([
            "netns", "exec", &lab.node, "ethtool", "-K", "eth1", "tx", "off",
        ])
        .output();
    lab
}

fn tool_window(r: &common::Run) -> f64 {
    serde_json::from_str::<serde_json::Value>(&r.stdout)
        .ok()
        .and_then(|j| j["steps"][0]["metrics"]["switch_window_ms"].as_f64())
        .unwrap_or(f64::NAN)
}

/// NCP's documented manual procedure: add the port, then one `ip` command per address and route.
fn manual_attach(lab: &NetLab) -> f64 {
    let t = Instant::now();
    lab.vsctl(&[
        "add-port",
        "br-int",
        "eth1",
        "--",
        "set",
        "Interface",
        "eth1",
        "ofport_request=1",
    ]);
    for c in [
        "link set br-int up",
        "addr del 10.0.0.6/24 dev eth1",
        "addr del 10.0.0.5/24 dev eth1",
        "addr add 10.0.0.5/24 dev br-int",
        "addr add 10.0.0.6/24 dev br-int",
        "-6 addr del fd00::5/64 dev eth1",
        "-6 addr add fd00::5/64 dev br-int nodad",
        "-6 addr del fd00::15/64 dev eth1",
        "-6 addr add fd00::15/64 dev br-int",
        "route replace default via 10.0.0.1 dev br-int",
        "route replace 192.168.50.0/24 via 10.0.0.1 dev br-int metric 50",
        "route replace 172.16.9.0/24 dev br-int scope link",
        "route replace 192.168.60.0/24 via 10.0.0.1 dev br-int table 100",
        "-6 route replace fd01::/64 via fd00::1 dev br-int",
    ] {
        lab.n(c);
    }
    t.elapsed().as_secs_f64() * 1000.0
}

fn manual_detach(lab: &NetLab) -> f64 {
    let t = Instant::now();
    for c in [
        "addr del 10.0.0.6/24 dev br-int",
        "addr del 10.0.0.5/24 dev br-int",
        "addr add 10.0.0.5/24 dev eth1",
        "addr add 10.0.0.6/24 dev eth1",
        "-6 addr del fd00::5/64 dev br-int",
        "-6 addr add fd00::5/64 dev eth1 nodad",
        "-6 addr del fd00::15/64 dev br-int",
        "-6 addr add fd00::15/64 dev eth1",
        "route replace default via 10.0.0.1 dev eth1",
        "route replace 192.168.50.0/24 via 10.0.0.1 dev eth1 metric 50",
        "route replace 172.16.9.0/24 dev eth1 scope link",
        "route replace 192.168.60.0/24 via 10.0.0.1 dev eth1 table 100",
        "-6 route replace fd01::/64 via fd00::1 dev eth1",
    ] {
        lab.n(c);
    }
    lab.vsctl(&["del-port", "br-int", "eth1"]);
    t.elapsed().as_secs_f64() * 1000.0
}

fn lost(p: &PingResult) -> String {
    format!(
        "{} of {} lost, longest gap {:.1} ms",
        p.sent.saturating_sub(p.received),
        p.sent,
        p.longest_gap_ms
    )
}

fn move_rows() -> Vec<Row> {
    let ours = lab();
    let (pa, ra) = under_ping(&ours, || {
        ours.tool(&["--output", "json", "uplink", "attach"], &[])
    });
    let (pd, rd) = under_ping(&ours, || {
        ours.tool(&["--output", "json", "uplink", "detach"], &[])
    });
    assert_eq!(ra.code, 0, "attach failed: {}", ra.stderr);
    assert_eq!(rd.code, 0, "detach failed: {}", rd.stderr);
    drop(ours);

    let manual = lab();
    manual.add_bridge(&["other-config:hwaddr=\"52:54:00:aa:bb:01\""]);
    let (ma, ta) = under_ping(&manual, || manual_attach(&manual));
    let (md, td) = under_ping(&manual, || manual_detach(&manual));
    let (wa, wd) = (tool_window(&ra), tool_window(&rd));
    vec![
        Row {
            what: "`uplink attach`: peer pinging every 1 ms (userspace datapath)".into(),
            ours: lost(&pa),
            baseline: format!("manual: {}", lost(&ma)),
            ratio: "-".into(),
            target: "0 lost".into(),
            command: "peer netns ICMP every 1 ms to 10.0.0.5 while the move runs".into(),
        },
        Row {
            what: "`uplink attach`: switch window".into(),
            ours: format!("{wa:.2} ms"),
            baseline: format!("manual commands: {ta:.1} ms"),
            ratio: ratio(wa, ta),
            target: "≤ 5 ms".into(),
            command: "ours: `switch_window_ms` of `--output json` (OVS has the port → last address/route in place); manual: wall time of add-port + 14 `ip` commands".into(),
        },
        Row {
            what: "`uplink detach`: peer pinging every 1 ms (userspace datapath)".into(),
            ours: lost(&pd),
            baseline: format!("manual: {}", lost(&md)),
            ratio: "-".into(),
            target: "0 lost".into(),
            command: "as above".into(),
        },
        Row {
            what: "`uplink detach`: switch window".into(),
            ours: format!("{wd:.2} ms"),
            baseline: format!("manual commands: {td:.1} ms"),
            ratio: ratio(wd, td),
            target: "≤ 5 ms".into(),
            command: "ours: `switch_window_ms` (the burst that puts addresses and routes back; the port is removed after it); manual: 13 `ip` commands + del-port".into(),
        },
    ]
}

// ---- 10 000 routes

const ROUTES: usize = 10_000;

fn route_lines(dev: &str, verb: &str) -> String {
    let mut s = String::new();
    for i in 0..ROUTES {
        let _ = writeln!(
            s,
            "route {verb} 10.{}.{}.0/24 via 10.0.0.1 dev {dev}",
            100 + i / 256 % 100,
            i % 256
        );
    }
    s
}

fn batch(lab: &NetLab, text: &str) -> f64 {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), text).unwrap();
    let t = Instant::now();
    sh(&["ip", "-n", &lab.node, "-batch", f.path().to_str().unwrap()]);
    t.elapsed().as_secs_f64() * 1000.0
}

fn routes_lab() -> NetLab {
    let lab = lab();
    batch(&lab, &route_lines("eth1", "add"));
    lab
}

/// A lab whose addresses are on br-int already, so that only the routes are left to move.
fn bridge_ready(lab: &NetLab) {
    lab.add_bridge(&[]);
    lab.vsctl(&["add-port", "br-int", "eth1"]);
    for c in ["link set br-int up", "addr add 10.0.0.5/24 dev br-int"] {
        lab.n(c);
    }
}

fn routes_rows() -> Vec<Row> {
    let ours = routes_lab();
    let t = Instant::now();
    let r = ours.tool(
        &["--output", "json", "uplink", "attach"],
        &[("NCP_BOOTSTRAP_PROBE_TARGETS", "")],
    );
    let total = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let window = tool_window(&r);
    drop(ours);

    let b = routes_lab();
    bridge_ready(&b);
    let batch_ms = batch(&b, &route_lines("br-int", "replace"));
    drop(b);

    let one = routes_lab();
    bridge_ready(&one);
    let t = Instant::now();
    for line in route_lines("br-int", "replace").lines() {
        let mut a = vec!["ip", "-n", one.node.as_str()];
        a.extend(line.split_whitespace());
        sh(&a);
    }
    let per_route = t.elapsed().as_secs_f64() * 1000.0;
    vec![Row {
        what: format!("{ROUTES} routes moved eth1 → br-int"),
        ours: format!(
            "{:.0} ms (switch window; whole `uplink attach` {:.0} ms)",
            window, total
        ),
        baseline: format!("`ip -batch`: {batch_ms:.0} ms; one `ip` per route: {per_route:.0} ms"),
        ratio: format!(
            "{} vs -batch, {} vs per-route",
            ratio(window, batch_ms),
            ratio(window, per_route)
        ),
        target: "≤ 300 ms".into(),
        command: "routes 10.100-199.x.0/24 via 10.0.0.1 added with `ip -batch`, then moved".into(),
    }]
}

// ---- ovs run

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// One `ovs run` in a fresh lab: ms from spawn to `ovs health` passing, and its peak RSS.
fn ovs_run_once() -> (f64, Option<u64>) {
    let lab = NetLab::new().expect("lab");
    lab.standard();
    let t = Instant::now();
    let mut child = lab
        .tool_command(&["-q", "ovs", "run"], &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut attached = f64::NAN;
    while t.elapsed() < Duration::from_secs(30) {
        if lab.tool(&["ovs", "health"], &[]).code == 0 {
            attached = t.elapsed().as_secs_f64() * 1000.0;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let hwm = vm_hwm_kib(child.id());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    (attached, hwm)
}

/// `ovs-ctl start` in a fresh lab; with `bridge`, on a database that already holds the
/// userspace bridge with the uplink as its port (ovs-vswitchd then creates the datapath, and
/// estimates the TSC frequency, before it detaches: the same work as `ovs run`'s switch).
fn ovs_ctl_once(bridge: bool) -> f64 {
    let mut lab = NetLab::new().expect("lab");
    if bridge {
        lab.standard();
        lab.start_ovs();
        lab.add_bridge(&["--", "add-port", "br-int", "eth1"]);
        lab.stop_ovs();
    }
    let t = Instant::now();
    lab.start_ovs();
    t.elapsed().as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn ovs_run_rows() -> Vec<Row> {
    // Interleaved, three of each, medians: whichever runs first pays the cold caches.
    let (mut ours, mut alone, mut same, mut hwm) = (Vec::new(), Vec::new(), Vec::new(), None);
    for _ in 0..3 {
        let (a, h) = ovs_run_once();
        ours.push(a);
        hwm = hwm.max(h);
        alone.push(ovs_ctl_once(false));
        same.push(ovs_ctl_once(true));
    }
    let show = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rounds = format!(
        "runs: ours {} ms; alone {} ms; with the bridge {} ms",
        show(&ours),
        show(&alone),
        show(&same)
    );
    let (a, ovs_ctl, ovs_ctl_bridge) = (median(ours), median(alone), median(same));
    vec![
        Row {
            what: "`ovs run` start → uplink attached (userspace OVS, new database)".into(),
            ours: format!("{a:.0} ms"),
            baseline: format!("`ovs-ctl start` alone (no bridge, no uplink): {ovs_ctl:.0} ms; `ovs-ctl start` on a database holding the bridge and the uplink port: {ovs_ctl_bridge:.0} ms"),
            ratio: format!(
                "{} vs alone, {} vs with the bridge",
                times(a, ovs_ctl),
                times(a, ovs_ctl_bridge)
            ),
            target: "≤ 1.5× `ovs-ctl start`".into(),
            command: format!("medians of three interleaved runs, each in a fresh netns ({rounds}); ours: spawn `ovs run`, poll `ovs health` every 5 ms until 0; of it, about 100 ms are ovs-vswitchd's own TSC-frequency estimate when the userspace datapath's first bridge is created (`pmd_perf: Estimated TSC frequency` in its log), which the kernel datapath does not do and `ovs-ctl start` without a bridge does not wait for"),
        },
        Row {
            what: "peak RSS of `ovs run` (the supervisor, daemons excluded)".into(),
            ours: hwm.map_or("-".into(), |k| format!("{:.2} MiB", k as f64 / 1024.0)),
            baseline: "-".into(),
            ratio: "-".into(),
            target: "≤ 16 MiB".into(),
            command: "VmHWM of the `ovs run` process after the uplink is attached".into(),
        },
    ]
}

/// One `ovs run` in a fresh lab with the given `ovs.log_max_mb` (2 copies kept): ovsdb-server
/// logs every transaction at debug level while `transactions` of 20 kB each go through, then
/// the supervisor gets 5 s to rotate. Returns the bytes of its log files (the log
/// and its copies), the largest file, and how many there are.
fn log_burst(max_mb: &str, transactions: usize) -> (u64, u64, usize) {
    let lab = NetLab::new().expect("lab");
    lab.standard();
    let env = [
        ("NCP_BOOTSTRAP_OVS_LOG_MAX_MB", max_mb),
        ("NCP_BOOTSTRAP_OVS_LOG_BACKUPS", "2"),
    ];
    let mut child = lab
        .tool_command(&["-q", "ovs", "run"], &env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while lab.tool(&["ovs", "health"], &env).code != 0 && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let dir = lab.ovs_dir.display().to_string();
    let pid = std::fs::read_to_string(format!("{dir}/ovsdb-server.pid")).unwrap_or_default();
    let ctl = format!("{dir}/ovsdb-server.{}.ctl", pid.trim());
    sh(&["ovs-appctl", "-t", &ctl, "vlog/set", "file:dbg"]);
    let db = format!("--db=unix:{dir}/db.sock");
    let pad = "x".repeat(20_000);
    for n in 0..transactions {
        let value = format!("external_ids:pad=\"{pad}{n}\"");
        sh(&["ovs-vsctl", &db, "set", "Open_vSwitch", ".", &value]);
    }
    sh(&["ovs-appctl", "-t", &ctl, "vlog/set", "file:info"]);
    std::thread::sleep(Duration::from_secs(5));
    let files: Vec<u64> = std::fs::read_dir(&lab.ovs_dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("ovsdb-server.log")
        })
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .collect();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    (
        files.iter().sum(),
        files.iter().copied().max().unwrap_or(0),
        files.len(),
    )
}

fn log_rows() -> Vec<Row> {
    const TRANSACTIONS: usize = 300;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let (capped, largest, files) = log_burst("1", TRANSACTIONS);
    let (uncapped, _, _) = log_burst("0", TRANSACTIONS);
    vec![Row {
        what: "ovsdb-server's log files after a burst of debug logging, `ovs.log_max_mb = 1`, 2 copies kept".into(),
        ours: format!("{:.2} MiB in {files} files, largest {:.2} MiB", mib(capped), mib(largest)),
        baseline: format!("the same burst uncapped (`ovs.log_max_mb = 0`): {:.2} MiB", mib(uncapped)),
        ratio: ratio(capped as f64, uncapped as f64),
        target: "≤ 3 files; the live log ≤ 1 MiB after the next look (a copy may exceed the cap by what was written in the 200 ms between looks)".into(),
        command: format!("`ovs run` in a fresh netns, `ovs-appctl vlog/set file:dbg` on ovsdb-server, {TRANSACTIONS} `ovs-vsctl set` of 20 kB each, 5 s, then the sizes of ovsdb-server.log*"),
    }]
}

/// CPU time (user + system) of a process so far, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100);
    Some(ticks as f64 / hz as f64)
}

/// `monitor` beside `ovs run` in a fresh lab (userspace OVS, grace 2 s): its CPU over 20 s
/// of watching a present nsx-ovs, then `ovs run` killed with -9 (its daemons die with it, the
/// userspace bridge and the node's addresses with them) while the peer pings the node every
/// 1 ms: how long the node is unreachable, and the monitor's peak RSS.
fn monitor_rows() -> Vec<Row> {
    const IDLE: Duration = Duration::from_secs(20);
    let lab = NetLab::new().expect("lab");
    lab.standard();
    let quiet = |args: &[&str], env: &[(&str, &str)]| {
        lab.tool_command(args, env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut run = quiet(&["-q", "ovs", "run"], &[]);
    let t = Instant::now();
    while lab.tool(&["ovs", "health"], &[]).code != 0 && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let grace = [("NCP_BOOTSTRAP_MONITOR_GRACE_SECONDS", "2")];
    let mut monitor = quiet(&["-q", "monitor"], &grace);
    std::thread::sleep(Duration::from_secs(1));
    let cpu0 = cpu_seconds(monitor.id()).unwrap_or(f64::NAN);
    std::thread::sleep(IDLE);
    let cpu1 = cpu_seconds(monitor.id()).unwrap_or(f64::NAN);
    let idle_pct = (cpu1 - cpu0) / IDLE.as_secs_f64() * 100.0;

    let pinger = start_pinger(&lab, "10.0.0.5", 7000);
    std::thread::sleep(Duration::from_millis(1000));
    let _ = Command::new("kill")
        .args(["-9", &run.id().to_string()])
        .status();
    let _ = run.wait();
    let p = finish_pinger(pinger);
    let hwm = vm_hwm_kib(monitor.id());
    let back = lab.state().contains("addr eth1 10.0.0.5/24");
    let _ = Command::new("kill")
        .args(["-TERM", &monitor.id().to_string()])
        .status();
    let _ = monitor.wait();
    vec![
        Row {
            what: "nsx-ovs gone → node reachable on node-if again (`monitor`, grace 2 s, userspace OVS)".into(),
            ours: if back {
                format!(
                    "unreachable {:.0} ms ({} of {} probes lost)",
                    p.longest_gap_ms,
                    p.sent.saturating_sub(p.received),
                    p.sent
                )
            } else {
                "node-if did not get its address back".into()
            },
            baseline: "without the monitor: unreachable until nsx-ovs is back (or a reboot)".into(),
            ratio: "-".into(),
            target: "≤ grace + 2 s".into(),
            command: "peer pings the node every 1 ms for 7 s; `ovs run` killed with -9 at 1 s; the longest gap between replies".into(),
        },
        Row {
            what: "`monitor` idle CPU and peak RSS".into(),
            ours: format!(
                "{}; {}",
                if cpu1 > cpu0 {
                    format!("{idle_pct:.3} % of a core")
                } else {
                    // Less than one accounting tick (10 ms at USER_HZ 100) in the window.
                    format!(
                        "no CPU tick in {} s (< {:.3} % of a core)",
                        IDLE.as_secs(),
                        0.01 / IDLE.as_secs_f64() * 100.0
                    )
                },
                hwm.map_or("-".into(), |k| format!("{:.2} MiB", k as f64 / 1024.0))
            ),
            baseline: "-".into(),
            ratio: "-".into(),
            target: "near 0 %; ≤ 8 MiB".into(),
            command: format!(
                "CPU time over {} s beside a running `ovs run` (one look a second); VmHWM after it gave node-if its addresses back",
                IDLE.as_secs()
            ),
        },
    ]
}

/// `vagrant/scenarios/monitor.sh` on the kernel datapath: `ncp-ovs.service` stopped for good,
/// the time until node-if has its address back and the probes the peer lost meanwhile.
fn vm_monitor_rows() -> Vec<Row> {
    let text = scenario_output("monitor.sh");
    let took = text
        .lines()
        .find_map(|l| l.strip_prefix("ROW monitor nsx-ovs stopped -> "))
        .unwrap_or("- (monitor.sh printed no figure)");
    let probes = text
        .lines()
        .find_map(|l| l.strip_prefix("ROW monitor, ncp-ovs stopped for good, 10 ms "))
        .map_or("-".to_string(), |r| {
            let n: Vec<&str> = r.split_whitespace().collect();
            match (n.first(), n.get(3)) {
                (Some(sent), Some(got)) => lost_of(&format!("{got}/{sent}")),
                _ => r.to_string(),
            }
        });
    vec![Row {
        what: "nsx-ovs gone → node-if has the node's address (kernel datapath, VM, `monitor` grace 10 s)".into(),
        ours: format!("{took}; peer's probes every 10 ms: {probes}"),
        baseline: "without the monitor: the address stays on a bridge with no switch; new flows (an ARP refresh) are dropped".into(),
        ratio: "-".into(),
        target: "≤ grace + 5 s".into(),
        command: "`vm-test.sh monitor.sh`: `systemctl stop ncp-ovs` (on_exit keep) with ncp-bootstrap-monitor.service running".into(),
    }]
}

/// `vagrant/scenarios/packages.sh`: `apt-get install` of the next .deb on an attached node (its
/// postinst restarts ncp-ovs the hitless way), the probes the peer lost meanwhile; and the sizes
/// of the packages `make packages` built.
fn package_rows() -> Vec<Row> {
    let text = scenario_output("packages.sh");
    let upgrade = text
        .lines()
        .find_map(|l| l.strip_prefix("ROW package upgrade"))
        .and_then(|r| {
            let n: Vec<&str> = r.split_whitespace().collect();
            let at = n.iter().position(|w| *w == "packets")?;
            let sent = n.get(at.checked_sub(1)?)?;
            let got = n.get(at + 2)?;
            Some(lost_of(&format!("{got}/{sent}")))
        })
        .unwrap_or_else(|| "- (packages.sh printed no figure)".into());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/packages");
    let size = |ext: &str| {
        std::fs::read_dir(&dir)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| e.path().extension().is_some_and(|x| x == ext))
            .and_then(|e| e.metadata().ok())
            .map_or("- (run `make packages`)".into(), |m| {
                format!("{:.2} MiB", m.len() as f64 / 1024.0 / 1024.0)
            })
    };
    vec![
        Row {
            what: "package upgrade on an attached node (VM, kernel datapath): the peer's probes every 10 ms".into(),
            ours: upgrade,
            baseline: "-".into(),
            ratio: "-".into(),
            target: "0 lost".into(),
            command: "`vm-test.sh packages.sh`: `apt-get install` of the next .deb; its postinst runs `systemctl try-restart ncp-ovs`".into(),
        },
        Row {
            what: "package sizes (.deb, .rpm; binary, units, README, demo bundle)".into(),
            ours: format!("{}, {}", size("deb"), size("rpm")),
            baseline: "-".into(),
            ratio: "-".into(),
            target: "-".into(),
            command: "`make packages`: cargo-deb 3.7.0, cargo-generate-rpm 0.16.0".into(),
        },
    ]
}

/// `vagrant/scenarios/kmod.sh`: NSX's module (a stand-in) swapped in by ncp-ovs's restart
/// under the attached uplink: the peer's probes lost, the time from giving the addresses back to
/// fresh daemons on the new module, and from the restart to healthy.
fn kmod_rows() -> Vec<Row> {
    let text = scenario_output("kmod.sh");
    let row = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|r| r.trim().to_string())
    };
    let lost =
        probes(&text, "ROW kmod-swap ").unwrap_or_else(|| "- (kmod.sh printed no figure)".into());
    let swap = text
        .lines()
        .filter_map(|l| l.strip_prefix("ROW kmod-swap module swapped and daemons up in "))
        .next()
        .map_or("- (kmod.sh printed no figure)".into(), |r| {
            r.trim().to_string()
        });
    let healthy = row("ROW kmod-swap-to-healthy-s")
        .map_or("- (kmod.sh printed no figure)".into(), |s| format!("{s} s"));
    let how = "`vm-test.sh kmod.sh`: `systemctl restart ncp-bootstrap` (ncp-ovs restarted with \
               it) after the key was turned on, the peer pinging the node every 10 ms; the \
               stand-in module of build-kmod.sh";
    vec![
        Row {
            what: "NSX kernel module swapped under the attached uplink (VM): the peer's probes every 10 ms".into(),
            ours: lost,
            baseline: "-".into(),
            ratio: "-".into(),
            target: "-".into(),
            command: how.into(),
        },
        Row {
            what: "module swap: addresses back to node-if, daemons stopped, module swapped, daemons up".into(),
            ours: swap,
            baseline: "-".into(),
            ratio: "-".into(),
            target: "-".into(),
            command: how.into(),
        },
        Row {
            what: "module swap: the restart to `ovs health` healthy on NSX's module".into(),
            ours: healthy,
            baseline: "-".into(),
            ratio: "-".into(),
            target: "-".into(),
            command: how.into(),
        },
    ]
}

// ---- the kernel datapath, in the VM

/// Runs the VM harness (about two minutes) and reads what both ends saw while `ovs run`
/// attached the uplink on the kernel datapath: the node pinging the host-side peer, and the peer
/// (in a namespace on the host, through a tap) pinging the node, each every 10 ms.
fn vm_rows() -> Vec<Row> {
    let row = |what: &str| Row {
        what: format!("`ovs run` attach on the kernel datapath (VM, TCG): {what} every 10 ms"),
        ours: "not measured".into(),
        baseline: "-".into(),
        ratio: "-".into(),
        target: "0 lost".into(),
        command: String::new(),
    };
    let mut rows = vec![row("node pinging the peer"), row("peer pinging the node")];
    if !common::have("qemu-system-x86_64") || !common::have("mmdebstrap") {
        for r in &mut rows {
            r.command = "qemu or mmdebstrap missing: run `make setup-vm` first".into();
        }
        return rows;
    }
    let text = scenario_output("lifecycle.sh");
    // The guest's journal can repeat a line; each attach counts once.
    let mut attached: Vec<&str> = Vec::new();
    for t in text
        .lines()
        .filter_map(|l| l.split("uplink attached ").nth(1))
        .map(|t| t.split(" after").next().unwrap_or(""))
    {
        if !attached.contains(&t) {
            attached.push(t);
        }
    }
    // vm-test.sh prints a heading per direction, then ping's summary line.
    for (row, heading) in rows
        .iter_mut()
        .zip(["node pinging the peer", "peer pinging the node"])
    {
        let summary = text
            .lines()
            .skip_while(|l| !l.contains(heading))
            .find(|l| l.contains("packets transmitted"));
        match summary {
            Some(s) => {
                row.ours = s
                    .split(',')
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(",")
                    .trim()
                    .to_string();
                row.command = format!(
                    "`vagrant/harness/vm-test.sh lifecycle.sh` in this run; `ovs run` start → attached in the VM: {}",
                    attached.join(", ")
                );
            }
            None => row.command = "the VM run did not report (see `make vm-test`)".into(),
        }
    }
    rows
}

// ---- nsx-ovs restarts and the first attach, kernel datapath, in the VM

/// One `ROW kind way key=value…` line of `vagrant/scenarios/restart.sh`.
struct Measured {
    kind: String,
    way: String,
    received: String,
    stall: Option<String>,
    echo_stall: Option<String>,
    retransmits: Option<String>,
    /// First attach: IPv4 packets the guest's kernel dropped meanwhile (skb:kfree_skb).
    kernel_drops: Option<String>,
}

fn parse_rows(text: &str) -> Vec<Measured> {
    text.lines()
        .filter_map(|l| l.strip_prefix("ROW "))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (kind, way) = (f.next()?.to_string(), f.next()?.to_string());
            let field = |k: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(k).map(String::from))
            };
            Some(Measured {
                kind,
                way,
                received: field("probes_received=")?,
                stall: field("tcp_stall_ms="),
                echo_stall: field("echo_stall_ms="),
                retransmits: field("retransmits="),
                kernel_drops: field("kernel_drops="),
            })
        })
        .collect()
}

/// "1498/1500" → "2 of 1500 lost".
/// "N of M lost" from the first ROW line with `prefix` that carries ping's summary.
fn probes(text: &str, prefix: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .find(|r| r.contains("packets transmitted"))
        .and_then(|r| {
            let n: Vec<&str> = r.split_whitespace().collect();
            let at = n.iter().position(|w| *w == "packets")?;
            Some(lost_of(&format!(
                "{}/{}",
                n.get(at + 2)?,
                n.get(at.checked_sub(1)?)?
            )))
        })
}

/// `vagrant/scenarios/ncp-manifests.sh`: NCP's own manifests after `inject`, under podman: the
/// peer's probes while NCP's node-agent pod starts on a netplan/DHCP node, and across the
/// migration from NCP's manual procedure on a NetworkManager node; and which privileges the
/// hand-off to networkd needs from a container.
fn ncp_manifest_rows() -> Vec<Row> {
    let text = scenario_output("ncp-manifests.sh");
    let none = || "- (ncp-manifests.sh printed no figure)".to_string();
    let seconds = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|r| r.trim().to_string())
    };
    let how = "`vm-test.sh ncp-manifests.sh`: NCP's ncp-ubuntu.yaml rendered, `inject`ed, played by podman";
    let works: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("ROW nsenter -t 1 -m networkctl, "))
        .filter_map(|r| r.strip_suffix(": works"))
        .map(String::from)
        .collect();
    let row = |what: &str, ours: String| Row {
        what: what.into(),
        ours,
        baseline: "-".into(),
        ratio: "-".into(),
        target: "-".into(),
        command: how.into(),
    };
    vec![
        row(
            "NCP's node-agent pod start, injected nsx-ovs (netplan, DHCP; VM): the peer's probes every 10 ms",
            probes(&text, "ROW NCP's node-agent pod start, netplan and DHCP, 10 ms ").unwrap_or_else(none),
        ),
        row(
            "NCP's node-agent pod start to attached, lease on br-int (netplan, DHCP)",
            seconds("ROW NCP's node-agent pod start to attached (netplan, DHCP): ").unwrap_or_else(none),
        ),
        row(
            "migration, NCP's manual procedure to NCP's injected pods (NetworkManager; VM): the peer's probes every 20 ms",
            probes(&text, "ROW migration from NCP's manual procedure (NM), 20 ms ").unwrap_or_else(none),
        ),
        row(
            "migration: bootstrap pod start to attached under NetworkManager",
            seconds("ROW migration from NCP's manual procedure to NCP's injected pods (NM): ").unwrap_or_else(none),
        ),
        row(
            "migration, its two halves: bootstrap pod start to install done; node-agent pod start to attached",
            match (
                seconds("ROW migration: bootstrap pod start to install done (NM): "),
                seconds("ROW migration: node-agent pod start to attached (NM): "),
            ) {
                (Some(a), Some(b)) => format!("{a}; {b}"),
                _ => none(),
            },
        ),
        row(
            "after the reboot: power-on to attached under NetworkManager (NCP's injected pods)",
            seconds("ROW boot to attached (NCP's pods, NetworkManager): ").unwrap_or_else(none),
        ),
        row(
            "`networkctl` in PID 1's mount namespace from a container: what works",
            if works.is_empty() { none() } else { works.join("; ") },
        ),
    ]
}

fn lost_of(received: &str) -> String {
    match received.split_once('/') {
        Some((r, t)) => match (r.parse::<i64>(), t.parse::<i64>()) {
            (Ok(r), Ok(t)) => format!("{} of {t} lost", t - r),
            _ => received.to_string(),
        },
        None => received.to_string(),
    }
}

/// Runs `vm-test.sh restart.sh` (about six minutes under TCG) and reads its ROW lines.
fn restart_rows() -> Vec<Row> {
    let kinds = [
        ("none", "no restart: the noise floor of the measurement"),
        (
            "restart",
            "`ovs run` SIGTERM, then start (`systemctl restart ncp-ovs`)",
        ),
        (
            "kill",
            "kill -9 of ovs-vswitchd, started again in place by `ovs run`",
        ),
        (
            "upgrade",
            "upgrade: a new binary started on the old database",
        ),
    ];
    let na = |what: &str, why: &str| Row {
        what: what.to_string(),
        ours: "not measured".into(),
        baseline: "-".into(),
        ratio: "-".into(),
        target: "0 lost".into(),
        command: why.to_string(),
    };
    if !common::have("qemu-system-x86_64") || !common::have("mmdebstrap") {
        return vec![na(
            "nsx-ovs restarts in the VM",
            "qemu or mmdebstrap missing: run `make setup-vm` first",
        )];
    }
    let text = scenario_output("restart.sh");
    let measured = parse_rows(&text);
    let find = |kind: &str, way: &str| -> Vec<&Measured> {
        measured
            .iter()
            .filter(|m| m.kind == kind && m.way == way)
            .collect()
    };
    let cmd = "`vagrant/harness/vm-test.sh restart.sh`: kernel datapath, the peer pings the node every 10 ms and streams TCP to it (64 B every 2 ms, echoed by the node; the ACK stall is the longest time the node's kernel acknowledged nothing, read from the peer's TCP_INFO; the echo gap also includes the TCG guest's scheduling of the echoing process); naive = `ovs.keep_flows = false` (the new ovs-vswitchd starts empty and flushes the datapath)";
    let mut rows = Vec::new();
    for (kind, what) in kinds {
        let (o, n) = if kind == "none" {
            (find(kind, "-"), Vec::new())
        } else {
            (find(kind, "ours"), find(kind, "naive"))
        };
        let show = |m: &[&Measured]| match m.first() {
            Some(m) => format!(
                "{}; TCP: ACKs stalled {} ms, {} retransmits (echo gap {} ms)",
                lost_of(&m.received),
                m.stall.as_deref().unwrap_or("?"),
                m.retransmits.as_deref().unwrap_or("?"),
                m.echo_stall.as_deref().unwrap_or("?")
            ),
            None if kind == "none" => "-".into(),
            None => "not measured (see `vm-test.sh restart.sh`)".into(),
        };
        rows.push(Row {
            what: format!("{what} (VM, TCG)"),
            ours: show(&o),
            baseline: show(&n),
            ratio: "-".into(),
            target: "0 lost; no TCP retransmission (stall < the retransmit timer, ≥ 200 ms)".into(),
            command: cmd.into(),
        });
    }
    let rounds = |way: &str| -> String {
        let v: Vec<String> = find("first-attach", way)
            .iter()
            .map(|m| match &m.kernel_drops {
                Some(k) => format!("{} ({k} in the kernel)", lost_of(&m.received)),
                None => lost_of(&m.received),
            })
            .collect();
        if v.is_empty() {
            "not measured".into()
        } else {
            v.join("; ")
        }
    };
    let field = |k: &str| {
        text.lines()
            .find(|l| l.starts_with("ROW start-attached"))
            .and_then(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(k).and_then(|v| v.parse::<f64>().ok()))
            })
    };
    if let (Some(ours), Some(base)) = (field("start_attached_ms="), field("ovs_ctl_start_ms=")) {
        rows.push(Row {
            what: "`ovs run` start → uplink attached, kernel datapath (VM, TCG)".into(),
            ours: format!("{ours:.0} ms"),
            baseline: format!("`ovs-ctl start` alone (no bridge, no uplink): {base:.0} ms"),
            ratio: times(ours, base),
            target: "≤ 1.5× `ovs-ctl start`".into(),
            command: "`vagrant/harness/vm-test.sh restart.sh`: the first start of `ncp-ovs.service` (its log line), and `ovs-ctl start` timed on the same host database just before".into(),
        });
    }
    rows.push(Row {
        what: "first attach on the kernel datapath, the peer pinging the node every 1 ms (VM, TCG)".into(),
        ours: format!("`uplink attach`: {}", rounds("ours")),
        baseline: format!("plain `ovs-vsctl add-port`: {}", rounds("naive")),
        ratio: "-".into(),
        target: "0 lost".into(),
        command: format!(
            "`vagrant/harness/vm-test.sh restart.sh`, five rounds each, interleaved with two control rounds that attach nothing (the measurement's own loss under TCG); \"in the kernel\": IPv4 packets the guest's kernel dropped during the attach (skb:kfree_skb tracepoint; the rest of the loss is ovs-vswitchd's \"unassociated datapath port\" drop): {}",
            rounds("none")
        ),
    });
    rows
}
