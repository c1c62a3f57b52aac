//! `persist`: what we write is accepted by the real consumer (ifquery, netplan generate, bash
//! for ifcfg) and means what the uplink carries. The uplink lives in a namespace this test
//! makes; files go to a temporary host root.

mod common;
use common::netlab::NetLab;
use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;

fn lab() -> Option<NetLab> {
    let lab = NetLab::new()?;
    lab.standard();
    Some(lab)
}

fn read(lab: &NetLab, p: &str) -> String {
    fs::read_to_string(lab.host.join(p)).unwrap()
}

/// The same persist again writes nothing (converged); cleanup then gives the host root back as
/// it was before the first persist, byte for byte.
fn rerun_converges_then_cleanup_restores(
    lab: &NetLab,
    persist: &[&str],
    before: &std::collections::BTreeMap<String, String>,
) {
    let snap = snapshot(&lab.host, true);
    let again = lab.tool(persist, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        snapshot(&lab.host, true),
        snap,
        "a second {persist:?} wrote"
    );
    let c = lab.tool(&["cleanup"], &[]);
    assert_eq!(c.code, 0, "{}", c.stderr);
    assert_eq!(&snapshot(&lab.host, false), before);
}

/// `ifquery -i FILE IFACE`: ifupdown's own reading of a stanza.
fn ifquery(file: &Path, iface: &str) -> std::process::Output {
    Command::new("ifquery")
        .arg("-i")
        .arg(file)
        .arg(iface)
        .output()
        .unwrap()
}

/// `ifquery`'s options for IFACE, which must parse.
fn ifquery_ok(file: &Path, iface: &str) -> String {
    let q = ifquery(file, iface);
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    String::from_utf8_lossy(&q.stdout).into_owned()
}

fn need(tool: &str, pkg: &str) -> bool {
    if have(tool) {
        return true;
    }
    skip(&format!("{tool} ({pkg}) not installed"));
    false
}

const INTERFACES: &str = "# This file describes the network interfaces available on your system\n\
source /etc/network/interfaces.d/*\n\n# The loopback network interface\nauto lo\niface lo inet loopback\n\n\
# management\nauto eth0\niface eth0 inet dhcp\n\n# NSX uplink, configured by hand years ago\nauto eth1\n\
iface eth1 inet static\n    address 172.16.1.4/24\n    up route add -net 172.16.1.3/24 gw 172.16.1.1 dev eth1\n";

#[test]
fn ifupdown_stanza_parses_with_ifquery_and_keeps_the_rest() {
    let Some(lab) = lab() else { return };
    if !need("ifquery", "ifupdown") {
        return;
    }
    write(
        &lab.host.join("etc/network/interfaces"),
        INTERFACES.as_bytes(),
        0o644,
    );
    let before = snapshot(&lab.host, false);
    let r = lab.tool(&["persist"], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("format ifupdown: /etc/network/interfaces defines eth1"),
        "{}",
        r.stdout
    );
    let out = read(&lab, "etc/network/interfaces");
    // Every line outside the eth1 stanzas is still there, in order.
    let kept: Vec<&str> = INTERFACES
        .lines()
        .take_while(|l| !l.starts_with("auto eth1"))
        .collect();
    assert!(out.starts_with(&kept.join("\n")), "{out}");
    let file = lab.host.join("etc/network/interfaces");
    let q = ifquery_ok(&file, "eth1");
    for want in [
        "address: 10.0.0.5\n",
        "netmask: 255.255.255.0\n",
        "gateway: 10.0.0.1\n",
        "mtu: 1500\n",
        "up: ip addr replace 10.0.0.6/24 dev eth1\n",
        "up: ip route replace 192.168.50.0/24 via 10.0.0.1 dev eth1 metric 50\n",
        "up: ip route replace 172.16.9.0/24 dev eth1 scope link\n",
        "up: ip route replace 192.168.60.0/24 via 10.0.0.1 dev eth1 table 100\n",
        "up: ip -6 route replace fd01::/64 via fd00::1 dev eth1\n",
    ] {
        assert!(q.contains(want), "ifquery lacks {want:?}:\n{q}");
    }
    // Two IPv6 addresses, in the kernel's order: one is the stanza's address, the other added.
    assert!(
        (q.contains("address: fd00::5\n")
            && q.contains("up: ip -6 addr replace fd00::15/64 dev eth1\n"))
            || (q.contains("address: fd00::15\n")
                && q.contains("up: ip -6 addr replace fd00::5/64 dev eth1\n")),
        "{q}"
    );
    assert!(
        !q.contains("172.16.1.4"),
        "the old address must be gone:\n{q}"
    );
    assert!(
        ifquery(&file, "eth0").status.success(),
        "eth0's stanza must still parse"
    );

    // Converged: nothing written. Cleanup: the original back byte for byte.
    rerun_converges_then_cleanup_restores(&lab, &["persist"], &before);
}

/// Bytes that are not UTF-8 (a Latin-1 comment, in the file and inside node-if's stanza) are
/// written back as they were, not as U+FFFD; ifquery still reads the stanza.
#[test]
fn ifupdown_merge_keeps_bytes_that_are_not_utf8() {
    let Some(lab) = lab() else { return };
    if !need("ifquery", "ifupdown") {
        return;
    }
    let mut original =
        b"# r\xe9seau de gestion (Latin-1)\nauto eth0\niface eth0 inet dhcp\n\n".to_vec();
    original.extend_from_slice(
        b"auto eth1\niface eth1 inet static\n    # c\xf4t\xe9 NSX\n    address 172.16.1.4/24\n",
    );
    let file = lab.host.join("etc/network/interfaces");
    write(&file, &original, 0o644);
    let r = lab.tool(&["persist"], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let out = fs::read(&file).unwrap();
    assert!(
        out.starts_with(b"# r\xe9seau de gestion (Latin-1)\nauto eth0\n"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(
        out.windows(b"# c\xf4t\xe9 NSX".len())
            .any(|w| w == b"# c\xf4t\xe9 NSX"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(!String::from_utf8_lossy(&out).contains("address 172.16.1.4"));
    assert!(!out.windows(3).any(|w| w == "\u{fffd}".as_bytes()));
    let q = ifquery_ok(&file, "eth1");
    assert!(q.contains("address: 10.0.0.5\n"), "{q}");
    let c = lab.tool(&["cleanup"], &[]);
    assert_eq!(c.code, 0, "{}", c.stderr);
    assert_eq!(fs::read(&file).unwrap(), original);
}

#[test]
fn ifupdown_stanza_in_interfaces_d_is_edited_there() {
    let Some(lab) = lab() else { return };
    if !need("ifquery", "ifupdown") {
        return;
    }
    let main = "source /etc/network/interfaces.d/*\nauto lo\niface lo inet loopback\n";
    write(
        &lab.host.join("etc/network/interfaces"),
        main.as_bytes(),
        0o644,
    );
    write(
        &lab.host.join("etc/network/interfaces.d/eth1"),
        b"auto eth1\niface eth1 inet dhcp\n",
        0o644,
    );
    let r = lab.tool(&["persist"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(read(&lab, "etc/network/interfaces"), main);
    let d = lab.host.join("etc/network/interfaces.d/eth1");
    let q = ifquery(&d, "eth1");
    assert!(
        String::from_utf8_lossy(&q.stdout).contains("address: 10.0.0.5"),
        "{}",
        String::from_utf8_lossy(&q.stdout)
    );
}

#[test]
fn dhcp_and_slaac_are_persisted_as_dynamic_never_frozen() {
    let Some(lab) = NetLab::new() else { return };
    if !need("ifquery", "ifupdown") {
        return;
    }
    lab.p("link set peer0 up");
    lab.n("link set eth1 up");
    // Finite lifetimes: what a DHCP client and SLAAC leave on a link.
    lab.n("addr add 10.0.0.5/24 dev eth1 valid_lft 3600 preferred_lft 3600");
    lab.n("-6 addr add fd00::5/64 dev eth1 valid_lft 3600 preferred_lft 1800 nodad");
    write(
        &lab.host.join("etc/network/interfaces"),
        b"auto lo\niface lo inet loopback\n",
        0o644,
    );
    write(&lab.host.join("usr/sbin/ifup"), b"", 0o755);
    let r = lab.tool(&["persist"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let file = lab.host.join("etc/network/interfaces");
    let text = fs::read_to_string(&file).unwrap();
    assert!(text.contains("iface eth1 inet dhcp\n"), "{text}");
    assert!(text.contains("iface eth1 inet6 auto\n"), "{text}");
    assert!(
        !text.contains("10.0.0.5"),
        "a leased address must not be frozen: {text}"
    );
    assert!(ifquery(&file, "eth1").status.success());
}

#[test]
fn netplan_drop_in_is_generated_by_netplan_itself() {
    let Some(lab) = lab() else { return };
    if !need("netplan", "netplan.io") {
        return;
    }
    write(
        &lab.host.join("etc/netplan/50-cloud-init.yaml"),
        b"network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n",
        0o600,
    );
    write(
        &lab.host.join("etc/cloud/cloud.cfg"),
        b"# cloud-init\n",
        0o644,
    );
    let r = lab.tool(&["persist"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("format netplan"), "{}", r.stdout);
    assert!(
        r.stdout.contains("cloud-init"),
        "the cloud-init warning is missing: {}",
        r.stdout
    );
    use std::os::unix::fs::PermissionsExt;
    let ours = lab.host.join("etc/netplan/60-ncp-bootstrap.yaml");
    assert_eq!(
        fs::metadata(&ours).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let g = Command::new("netplan")
        .arg("generate")
        .arg("--root-dir")
        .arg(&lab.host)
        .output()
        .unwrap();
    assert!(
        g.status.success(),
        "netplan generate: {}",
        String::from_utf8_lossy(&g.stderr)
    );
    let net =
        fs::read_to_string(lab.host.join("run/systemd/network/10-netplan-eth1.network")).unwrap();
    for want in [
        "Address=10.0.0.5/24",
        "Address=10.0.0.6/24",
        "Address=fd00::5/64",
        "Gateway=10.0.0.1",
        "Destination=192.168.50.0/24\nGateway=10.0.0.1\nMetric=50",
        "Destination=192.168.60.0/24\nGateway=10.0.0.1\nTable=100",
        "Destination=172.16.9.0/24\nScope=link",
        "Destination=fd01::/64\nGateway=fd00::1",
        "MTUBytes=1500",
    ] {
        assert!(net.contains(want), "networkd file lacks {want:?}:\n{net}");
    }
    assert!(
        !net.contains("DHCP=ipv4") && !net.contains("DHCP=yes"),
        "{net}"
    );
}

#[test]
fn netplan_conflict_and_unknown_layout_exit_2() {
    let Some(lab) = lab() else { return };
    write(
        &lab.host.join("etc/netplan/50-cloud-init.yaml"),
        b"network:\n  version: 2\n  ethernets:\n    eth1:\n      dhcp4: true\n",
        0o600,
    );
    let before = snapshot(&lab.host, true);
    let r = lab.tool(&["persist"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("/etc/netplan/50-cloud-init.yaml also defines eth1")
            && r.stderr.contains("persist --take-over"),
        "{}",
        r.stderr
    );
    assert_eq!(snapshot(&lab.host, true), before);

    let empty = tempfile::tempdir().unwrap();
    let r = lab.tool_at(empty.path(), &["persist"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("cannot tell how this host configures its network"),
        "{}",
        r.stderr
    );

    // Two systems at once: the list of what was found.
    let both = tempfile::tempdir().unwrap();
    write(
        &both.path().join("etc/network/interfaces"),
        b"auto lo\niface lo inet loopback\n",
        0o644,
    );
    write(&both.path().join("sbin/ifup"), b"", 0o755);
    write(
        &both.path().join("etc/sysconfig/network-scripts/ifcfg-eth0"),
        b"DEVICE=eth0\n",
        0o644,
    );
    let r = lab.tool_at(both.path(), &["persist"], &[]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("ifupdown (") && r.stderr.contains("ifcfg ("),
        "{}",
        r.stderr
    );
}

#[test]
fn ifcfg_files_source_in_bash_to_the_expected_values() {
    let Some(lab) = lab() else { return };
    write(
        &lab.host.join("etc/sysconfig/network-scripts/ifcfg-eth0"),
        b"DEVICE=eth0\nBOOTPROTO=dhcp\n",
        0o644,
    );
    let r = lab.tool(&["persist"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("format ifcfg"), "{}", r.stdout);
    // No RHEL tool here: source the file in bash as network-scripts do, and read every variable.
    let f = lab.host.join("etc/sysconfig/network-scripts/ifcfg-eth1");
    let vars = "DEVICE NAME TYPE ONBOOT BOOTPROTO IPADDR PREFIX IPADDR1 PREFIX1 GATEWAY DEFROUTE MTU IPV6INIT IPV6_AUTOCONF HWADDR";
    let script = format!(
        "set -eu; . '{}'; for v in {vars}; do printf '%s=%s\\n' $v \"${{!v}}\"; done",
        f.display()
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        got,
        "DEVICE=eth1\nNAME=eth1\nTYPE=Ethernet\nONBOOT=yes\nBOOTPROTO=none\nIPADDR=10.0.0.5\nPREFIX=24\nIPADDR1=10.0.0.6\nPREFIX1=24\nGATEWAY=10.0.0.1\nDEFROUTE=yes\nMTU=1500\nIPV6INIT=yes\nIPV6_AUTOCONF=no\nHWADDR=52:54:00:aa:bb:01\n"
    );
    let v6 = format!(". '{}'; echo $IPV6ADDR $IPV6ADDR_SECONDARIES", f.display());
    let v6 = Command::new("bash").args(["-c", &v6]).output().unwrap();
    let mut v6: Vec<String> = String::from_utf8_lossy(&v6.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    v6.sort();
    assert_eq!(v6, ["fd00::15/64", "fd00::5/64"]);
    let routes = read(&lab, "etc/sysconfig/network-scripts/route-eth1");
    assert!(
        routes.contains("\n192.168.50.0/24 via 10.0.0.1 dev eth1 metric 50\n"),
        "{routes}"
    );
    assert!(
        routes.contains("\n192.168.60.0/24 via 10.0.0.1 dev eth1 table 100\n"),
        "{routes}"
    );
    assert!(read(&lab, "etc/sysconfig/network-scripts/route6-eth1")
        .contains("fd01::/64 via fd00::1 dev eth1"));
    // The UUID is the same on every run.
    let uuid = |s: &str| s.lines().find(|l| l.starts_with("UUID=")).map(String::from);
    let first = uuid(&read(&lab, "etc/sysconfig/network-scripts/ifcfg-eth1"));
    assert_eq!(lab.tool(&["cleanup"], &[]).code, 0);
    assert_eq!(lab.tool(&["persist"], &[]).code, 0);
    assert_eq!(
        uuid(&read(&lab, "etc/sysconfig/network-scripts/ifcfg-eth1")),
        first
    );
}

#[test]
fn nm_keyfile_is_written_0600_with_the_unmanaged_bridge_drop_in() {
    let Some(lab) = lab() else { return };
    fs::create_dir_all(lab.host.join("etc/NetworkManager/system-connections")).unwrap();
    write(&lab.host.join("usr/sbin/NetworkManager"), b"", 0o755);
    let r = lab.tool(&["persist"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("format nm-keyfile"), "{}", r.stdout);
    let f = lab
        .host
        .join("etc/NetworkManager/system-connections/eth1.nmconnection");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let k = fs::read_to_string(&f).unwrap();
    // Debian's NetworkManager 1.42 has no offline parser (`nmcli --offline` came later): the
    // keyfile's acceptance by NetworkManager itself belongs to the VM harness. Here: the fields.
    for want in [
        "interface-name=eth1",
        "method=manual",
        "address0=10.0.0.5/24",
        "address1=10.0.0.6/24",
        "route0=0.0.0.0/0,10.0.0.1",
        "route3=192.168.60.0/24,10.0.0.1,0\nroute3_options=table=100",
        "dhcp-timeout=2147483647",
        "mtu=1500",
    ] {
        assert!(k.contains(want), "keyfile lacks {want:?}:\n{k}");
    }
    assert!(
        k.contains("=fd00::5/64") && k.contains("=fd00::15/64"),
        "{k}"
    );
    assert!(
        read(&lab, "etc/NetworkManager/conf.d/90-ncp-bootstrap.conf")
            .contains("unmanaged-devices+=interface-name:br-int")
    );
    // Our keyfile is now NetworkManager's connection for eth1: a second run finds it as written.
    let again = lab.tool(&["persist"], &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.contains("persist: converged"),
        "{}",
        again.stdout
    );
}

#[test]
fn nm_keyfile_updates_the_operators_connection_in_place_and_cleanup_restores_it() {
    let Some(lab) = lab() else { return };
    let dir = "etc/NetworkManager/system-connections";
    fs::create_dir_all(lab.host.join(dir)).unwrap();
    write(&lab.host.join("usr/sbin/NetworkManager"), b"", 0o755);
    let theirs =
        "[connection]\nid=uplink\nuuid=6d1c1d4e-0000-4000-8000-000000000001\ntype=ethernet\n\
interface-name=eth1\n\n[ipv4]\naddress1=10.0.0.5/24,10.0.0.1\nmethod=manual\n\n\
[ipv6]\naddr-gen-mode=stable-privacy\nmethod=auto\n";
    write(
        &lab.host.join(format!("{dir}/uplink.nmconnection")),
        theirs.as_bytes(),
        0o600,
    );

    let r = lab.tool(&["persist"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("uplink.nmconnection is NetworkManager's connection for eth1"),
        "{}",
        r.stdout
    );
    // One connection for eth1, the operator's, now carrying every address and route.
    assert!(!lab.host.join(format!("{dir}/eth1.nmconnection")).exists());
    let k = read(&lab, &format!("{dir}/uplink.nmconnection"));
    for want in [
        "id=uplink\n",
        "uuid=6d1c1d4e-0000-4000-8000-000000000001",
        "address0=10.0.0.5/24",
        "address1=10.0.0.6/24",
        "route3=192.168.60.0/24,10.0.0.1,0\nroute3_options=table=100",
        "addr-gen-mode=stable-privacy",
        "=fd00::5/64",
    ] {
        assert!(k.contains(want), "keyfile lacks {want:?}:\n{k}");
    }
    assert!(!k.contains("method=auto"), "{k}");
    // Converged: a second run changes nothing.
    let again = lab.tool(&["persist"], &[]);
    assert!(again.stdout.contains("converged"), "{}", again.stdout);

    assert_eq!(lab.tool(&["cleanup"], &[]).code, 0);
    assert_eq!(read(&lab, &format!("{dir}/uplink.nmconnection")), theirs);
    assert!(!lab
        .host
        .join("etc/NetworkManager/conf.d/90-ncp-bootstrap.conf")
        .exists());

    // Two connections for the same device: refused, nothing written.
    write(
        &lab.host.join(format!("{dir}/second.nmconnection")),
        theirs.replace("id=uplink", "id=second").as_bytes(),
        0o600,
    );
    let r = lab.tool(&["persist"], &[]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr
            .contains("more than one NetworkManager connection binds eth1"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("second.nmconnection") && r.stderr.contains("uplink.nmconnection"),
        "{}",
        r.stderr
    );
    assert_eq!(read(&lab, &format!("{dir}/uplink.nmconnection")), theirs);
}

#[test]
fn an_attached_uplink_is_persisted_from_its_recorded_pre_state() {
    let Some(mut lab) = lab() else { return };
    lab.start_ovs();
    assert_eq!(lab.tool(&["uplink", "attach"], &[]).code, 0);
    write(
        &lab.host.join("etc/network/interfaces"),
        b"auto lo\niface lo inet loopback\n",
        0o644,
    );
    write(&lab.host.join("sbin/ifup"), b"", 0o755);
    let r = lab.tool(&["persist", "--apply"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("source: the pre-state recorded"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("nothing is reloaded"), "{}", r.stdout);
    let text = read(&lab, "etc/network/interfaces");
    assert!(
        text.contains("address 10.0.0.5/24") && text.contains("gateway 10.0.0.1"),
        "{text}"
    );
    assert!(Path::new(
        &lab.host
            .join("var/lib/ncp-bootstrap/backup/etc/network/interfaces")
    )
    .exists());
}

/// NCP's manual install leaves node-if with no address (the address lives on br-int): the
/// stanza must still let `ifup` know the interface and bring it up.
#[test]
fn an_uplink_without_addresses_gets_ncps_manual_stanza_that_ifquery_reads() {
    let Some(lab) = NetLab::new() else { return };
    if !need("ifquery", "ifupdown") {
        return;
    }
    lab.n("link set lo up");
    lab.n("link set eth1 up");
    write(
        &lab.host.join("etc/network/interfaces"),
        b"auto lo\niface lo inet loopback\n\nauto eth1\niface eth1 inet dhcp\n",
        0o644,
    );
    let r = lab.tool(&["persist"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = read(&lab, "etc/network/interfaces");
    assert!(
        text.contains("iface eth1 inet manual\n    up ip link set eth1 up\n"),
        "{text}"
    );
    let q = ifquery_ok(&lab.host.join("etc/network/interfaces"), "eth1");
    assert!(q.contains("up: ip link set eth1 up"), "ifquery: {q}");
}

#[test]
fn ifupdown_merge_keeps_the_operators_options_and_hooks_and_ifquery_reads_them() {
    let Some(lab) = lab() else { return };
    if !need("ifquery", "ifupdown") {
        return;
    }
    // node-if as a site configures it: options of other tools (bonding, VLAN, resolvconf),
    // hooks, and its own route command, in both families.
    let original = "auto lo\niface lo inet loopback\n\nallow-hotplug eth1\niface eth1 inet static\n    bond-mode active-backup\n    vlan-raw-device eth0\n    pre-up /usr/local/sbin/nic-tune eth1\n    address 172.16.1.4/24\n    gateway 172.16.1.1\n    dns-nameservers 10.1.1.53 10.1.1.54\n    dns-search corp.example\n    up route add -net 10.50.0.0/16 gw 172.16.1.1 dev eth1\n    post-up /usr/local/sbin/announce eth1\n    pre-down /usr/local/sbin/drain eth1\n\niface eth1 inet6 static\n    address fd00:1::9/64\n    dns-nameservers fd00:1::53\n";
    write(
        &lab.host.join("etc/network/interfaces"),
        original.as_bytes(),
        0o644,
    );
    let before = snapshot(&lab.host, false);
    let r = lab.tool(&["persist"], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let file = lab.host.join("etc/network/interfaces");
    let q = ifquery_ok(&file, "eth1");
    for want in [
        "bond-mode: active-backup\n",
        "vlan-raw-device: eth0\n",
        "pre-up: /usr/local/sbin/nic-tune eth1\n",
        "dns-nameservers: 10.1.1.53 10.1.1.54\n",
        "dns-search: corp.example\n",
        "up: route add -net 10.50.0.0/16 gw 172.16.1.1 dev eth1\n",
        // ifupdown reads post-up as up and pre-down as down.
        "up: /usr/local/sbin/announce eth1\n",
        "down: /usr/local/sbin/drain eth1\n",
        "address: 10.0.0.5\n",
        "gateway: 10.0.0.1\n",
        "up: ip route replace 192.168.50.0/24 via 10.0.0.1 dev eth1 metric 50\n",
    ] {
        assert!(q.contains(want), "ifquery lacks {want:?}:\n{q}");
    }
    assert!(
        !q.contains("172.16.1.4"),
        "the old address must be gone:\n{q}"
    );
    // ifupdown runs `up` lines in order: the operator's `route add` before our `replace`s.
    assert!(
        q.find("up: route add").unwrap_or(usize::MAX) < q.find("up: ip route replace").unwrap_or(0),
        "{q}"
    );
    let out = read(&lab, "etc/network/interfaces");
    let inet6 = out.find("iface eth1 inet6").expect("inet6 stanza");
    assert!(
        out[inet6..].contains("    dns-nameservers fd00:1::53\n"),
        "the inet6 option stays in the inet6 stanza:\n{out}"
    );
    assert!(!out.contains("fd00:1::9/64"), "{out}");

    // Converged, then cleanup gives the file back byte for byte.
    rerun_converges_then_cleanup_restores(&lab, &["persist"], &before);
}

#[test]
fn netplan_take_over_moves_node_if_out_of_cloud_inits_file_and_cleanup_restores_both() {
    let Some(lab) = lab() else { return };
    if !need("netplan", "netplan.io") {
        return;
    }
    // As cloud-init writes it on an Ubuntu cloud image: the management NIC and node-if.
    let cloud = "# This file is generated from information provided by the datasource.  Changes\n# to it will not persist across an instance reboot.\nnetwork:\n    ethernets:\n        eth0:\n            dhcp4: true\n            match:\n                macaddress: 52:54:00:aa:bb:00\n            set-name: eth0\n        eth1:\n            addresses:\n            - 172.16.1.4/24\n            match:\n                macaddress: 52:54:00:aa:bb:01\n            set-name: eth1\n    version: 2\n";
    write(
        &lab.host.join("etc/netplan/50-cloud-init.yaml"),
        cloud.as_bytes(),
        0o600,
    );
    write(
        &lab.host.join("etc/cloud/cloud.cfg"),
        b"# cloud-init\n",
        0o644,
    );
    let before = snapshot(&lab.host, false);

    let r = lab.tool(&["persist", "--take-over"], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let ci = read(&lab, "etc/netplan/50-cloud-init.yaml");
    assert!(!ci.contains("eth1") && ci.contains("eth0:"), "{ci}");
    assert!(ci.starts_with("# This file is generated"), "{ci}");
    let off = read(&lab, "etc/cloud/cloud.cfg.d/99-disable-network-config.cfg");
    assert!(off.contains("network: {config: disabled}"), "{off}");

    // netplan reads the pair as meant: eth0 still on DHCP, eth1 ours and static only.
    let g = Command::new("netplan")
        .arg("generate")
        .arg("--root-dir")
        .arg(&lab.host)
        .output()
        .unwrap();
    assert!(
        g.status.success(),
        "netplan generate: {}",
        String::from_utf8_lossy(&g.stderr)
    );
    let eth0 =
        fs::read_to_string(lab.host.join("run/systemd/network/10-netplan-eth0.network")).unwrap();
    assert!(eth0.contains("DHCP=ipv4"), "{eth0}");
    let eth1 =
        fs::read_to_string(lab.host.join("run/systemd/network/10-netplan-eth1.network")).unwrap();
    assert!(
        eth1.contains("Address=10.0.0.5/24") && !eth1.contains("172.16.1.4"),
        "{eth1}"
    );
    assert!(
        !eth1.contains("DHCP=ipv4") && !eth1.contains("DHCP=yes"),
        "{eth1}"
    );
    // What netplan generated is not ours to compare (the host root had no /run).
    fs::remove_dir_all(lab.host.join("run")).unwrap();

    // Converged; cleanup gives both files back, byte for byte, and removes the switch.
    rerun_converges_then_cleanup_restores(&lab, &["persist", "--take-over"], &before);
}
