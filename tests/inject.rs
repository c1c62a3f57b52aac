//! `ncp-bootstrap inject` on NCP's own manifests (tests/fixtures/ncp-operator, Apache-2.0, see
//! its README), rendered as NCP's operator renders them: Ubuntu and RHEL, each with and without
//! the kernel-module mounts. What must hold: our binary in exactly the three containers, with
//! what our commands need; every other object and container exactly as NCP wrote it; the
//! output valid for Kubernetes; a second inject changes nothing.

mod common;
use common::*;
use serde_yaml::{Mapping, Value};
use std::fs;
use std::path::Path;
use std::process::Command;

const IMAGE: &str = "registry.example.com/ncp-bootstrap:9.9.9";
const NCP_IMAGE: &str = "registry.example.com/nsx-ncp:4.1.2";

/// One of NCP's manifests, rendered as NCP's operator renders it (vagrant/harness/render-ncp.py,
/// which the VM scenario uses too), with the 4.x node-agent ncp.ini of tests/fixtures.
fn ncp(distro: &str, kmod: bool) -> String {
    let out = Command::new("python3")
        .arg(Path::new(REPO).join("vagrant/harness/render-ncp.py"))
        .arg(Path::new(REPO).join(format!("tests/fixtures/ncp-operator/ncp-{distro}.yaml")))
        .arg(Path::new(REPO).join("tests/fixtures/ncp-4x-node-agent.ini"))
        .arg(format!("NcpImage={NCP_IMAGE}"))
        .arg(format!("UseNsxOvsKmod={}", if kmod { "true" } else { "" }))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("{{"), "an action left unrendered");
    // The switch does what it says: the kernel-module mounts only with the key.
    assert_eq!(text.contains("/tmp/nsx_usr_ovs_kmod_backup"), kmod);
    text
}

fn docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn inject(input: &str, args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.yaml");
    fs::write(&file, input).unwrap();
    let mut a = vec!["inject", "--image", IMAGE, "-f", file.to_str().unwrap()];
    a.extend_from_slice(args);
    run(&a)
}

fn injected(input: &str) -> String {
    let r = inject(input, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    r.stdout
}

fn id(v: &Value) -> String {
    format!(
        "{}/{}",
        v["kind"].as_str().unwrap_or(""),
        v["metadata"]["name"].as_str().unwrap_or("")
    )
}

fn pod(ds: &Value) -> &Value {
    &ds["spec"]["template"]["spec"]
}

fn mount<'a>(c: &'a Value, path: &str) -> Option<&'a Value> {
    c["volumeMounts"]
        .as_sequence()?
        .iter()
        .find(|m| m["mountPath"] == path)
}

fn volume<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

/// The containers ours replace, and what each runs.
const OURS: [(&str, &str, &str, &[&str]); 3] = [
    (
        "nsx-ncp-bootstrap",
        "initContainers",
        "nsx-ncp-bootstrap",
        &["ncp-bootstrap", "install", "--host-root", "/host"],
    ),
    (
        "nsx-ncp-bootstrap",
        "containers",
        "nsx-host-ovs-monitor",
        &["ncp-bootstrap", "monitor", "--host-root", "/host"],
    ),
    (
        "nsx-node-agent",
        "containers",
        "nsx-ovs",
        &["ncp-bootstrap", "ovs", "run", "--host-root", "/host"],
    ),
];

fn check_variant(distro: &str, kmod: bool) {
    let input = ncp(distro, kmod);
    let before = docs(&input);
    let out = injected(&input);
    let after = docs(&out);
    let ids = |d: &[Value]| d.iter().map(id).collect::<Vec<_>>();
    assert_eq!(
        ids(&before),
        ids(&after),
        "{distro}: objects and their order"
    );
    assert!(ids(&before).contains(&"DaemonSet/nsx-ncp-bootstrap".to_string()));

    for (b, a) in before.iter().zip(&after) {
        if b["kind"] != "DaemonSet" {
            assert_eq!(b, a, "{distro}: {} changed", id(b));
            continue;
        }
        // Names, labels, selectors, annotations, update strategy: NCP's.
        assert_eq!(b["metadata"], a["metadata"], "{}", id(b));
        assert_eq!(b["spec"]["selector"], a["spec"]["selector"], "{}", id(b));
        assert_eq!(b["spec"]["updateStrategy"], a["spec"]["updateStrategy"]);
        // Pod labels and annotations: NCP's; nsx-ovs's AppArmor annotation added only where
        // NCP's names a profile (Ubuntu).
        let mut meta = a["spec"]["template"]["metadata"].clone();
        let key = "container.apparmor.security.beta.kubernetes.io/nsx-ovs";
        let added = meta
            .get_mut("annotations")
            .and_then(Value::as_mapping_mut)
            .and_then(|m| m.remove(key));
        if id(b) == "DaemonSet/nsx-node-agent" && distro == "ubuntu" {
            assert_eq!(added, Some(Value::from("unconfined")), "{}", id(b));
        } else {
            assert_eq!(added, None, "{}", id(b));
        }
        assert_eq!(
            b["spec"]["template"]["metadata"],
            meta,
            "{}: pod labels and annotations",
            id(b)
        );
        let (bp, ap) = (pod(b), pod(a));
        for key in [
            "serviceAccountName",
            "tolerations",
            "priorityClassName",
            "hostNetwork",
        ] {
            assert_eq!(bp[key], ap[key], "{}: {key}", id(b));
        }
        // Every container that is not ours: exactly as NCP wrote it.
        for list in ["initContainers", "containers"] {
            let names: Vec<&Value> = bp[list]
                .as_sequence()
                .map(|s| s.iter().map(|c| &c["name"]).collect())
                .unwrap_or_default();
            let after_names: Vec<&Value> = ap[list]
                .as_sequence()
                .map(|s| s.iter().map(|c| &c["name"]).collect())
                .unwrap_or_default();
            assert_eq!(names, after_names, "{}: {list}", id(b));
            for (bc, ac) in bp[list]
                .as_sequence()
                .into_iter()
                .flatten()
                .zip(ap[list].as_sequence().into_iter().flatten())
            {
                let ours = OURS
                    .iter()
                    .any(|(_, l, n, _)| *l == list && bc["name"] == *n);
                if !ours {
                    assert_eq!(bc, ac, "{}: container {:?}", id(b), bc["name"]);
                    assert_eq!(ac["image"], NCP_IMAGE);
                }
            }
        }
        // Every volume NCP defined is still there, and every mount names a volume.
        for v in bp["volumes"].as_sequence().unwrap() {
            assert_eq!(volume(ap, v["name"].as_str().unwrap()), v);
        }
        for list in ["initContainers", "containers"] {
            for c in ap[list].as_sequence().into_iter().flatten() {
                for m in c["volumeMounts"].as_sequence().into_iter().flatten() {
                    volume(ap, m["name"].as_str().unwrap());
                }
            }
        }
    }

    let ds = |name: &str| {
        after
            .iter()
            .find(|d| id(d) == format!("DaemonSet/{name}"))
            .unwrap()
    };
    for (daemonset, list, name, command) in OURS {
        let p = pod(ds(daemonset));
        let c = container(p, list, name);
        assert_eq!(c["image"], IMAGE, "{name}");
        let want: Vec<Value> = command.iter().map(|s| Value::from(*s)).collect();
        assert_eq!(c["command"], Value::Sequence(want), "{name}");
        assert!(c.get("args").is_none(), "{name}: NCP's args left");
        // The host root, with the host's later mounts (a netns, a kubelet volume) seen inside.
        let host = mount(c, "/host").unwrap_or_else(|| panic!("{name}: no /host"));
        assert_eq!(host["mountPropagation"], "HostToContainer");
        let v = volume(p, host["name"].as_str().unwrap());
        assert_eq!(v["hostPath"]["path"], "/", "{name}");
        // ncp.ini where our configuration reads it: NCP's projected ConfigMap, kept.
        let ini = mount(c, "/etc/nsx-ujo").unwrap_or_else(|| panic!("{name}: no ncp.ini"));
        assert_eq!(ini["name"], "projected-volume", "{name}");
        // No host binary laid over the image's own tools.
        for path in [
            "/sbin/depmod",
            "/usr/sbin/modinfo",
            "/usr/bin/nmcli",
            "/usr/src",
        ] {
            assert!(mount(c, path).is_none(), "{distro}: {name} mounts {path}");
        }
        // PID 1's namespaces (systemd, NetworkManager, networkd) are reachable.
        assert_eq!(p["hostPID"], true, "{name}");
    }
    // The bootstrap pod is Ready only while `status` finds the node as it should be.
    let monitor = container(
        pod(ds("nsx-ncp-bootstrap")),
        "containers",
        "nsx-host-ovs-monitor",
    );
    assert_eq!(
        monitor["readinessProbe"]["exec"]["command"],
        serde_yaml::from_str::<Value>("[ncp-bootstrap, -q, --host-root, /host, status]").unwrap()
    );
    // nsx-ovs keeps NCP's OVS database (the host's /var/run/nsx-ujo/openvswitch-db), so that a
    // switch from NCP's nsx-ovs keeps every bridge and pod port, and NCP's run directory, where
    // NCP's nsx-node-agent finds the database.
    let agent = pod(ds("nsx-node-agent"));
    let ovs = container(agent, "containers", "nsx-ovs");
    let db = mount(ovs, "/etc/openvswitch").unwrap();
    assert_eq!(db["name"], "var-run-ujo");
    assert_eq!(db["subPath"], "openvswitch-db");
    assert_eq!(
        mount(ovs, "/var/run/openvswitch").unwrap()["name"],
        "openvswitch"
    );
    // The hand-off reaches PID 1's mount namespace (measured in ncp-manifests.sh).
    let caps: Vec<&str> = ovs["securityContext"]["capabilities"]["add"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for cap in ["SYS_ADMIN", "SYS_CHROOT", "SYS_PTRACE"] {
        assert!(caps.contains(&cap), "{cap}: {caps:?}");
    }
    assert_eq!(
        ovs["securityContext"]["appArmorProfile"].get("type"),
        (distro == "ubuntu")
            .then(|| Value::from("Unconfined"))
            .as_ref()
    );
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let cmd = format!("{:?}", ovs[probe]["exec"]["command"]);
        assert!(cmd.contains("health"), "{probe}: {cmd}");
    }
    assert!(
        !format!("{:?}", ovs).contains("check_pod_liveness"),
        "NCP's probe left"
    );

    // The retire label takes nsx-ovs off a node first, the bootstrap pod after it.
    let retire = |daemonset: &str| {
        pod(ds(daemonset))["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            .clone()
    };
    assert_eq!(
        retire("nsx-node-agent"),
        serde_yaml::from_str::<Value>(
            "[{matchExpressions: [{key: ncp-bootstrap/retire, operator: DoesNotExist}]}]"
        )
        .unwrap()
    );
    assert_eq!(
        retire("nsx-ncp-bootstrap"),
        serde_yaml::from_str::<Value>(
            "[{matchExpressions: [{key: ncp-bootstrap/retire, operator: NotIn, values: [all]}]}]"
        )
        .unwrap()
    );

    if distro == "rhel" {
        assert!(
            !out.to_lowercase().contains("apparmor"),
            "RHEL output names AppArmor"
        );
    }

    // A second inject changes nothing.
    assert_eq!(injected(&out), out, "{distro}: inject twice");
    validate(&after);
}

/// The injected DaemonSets against the Kubernetes schemas (1.30 and the newest known).
fn validate(after: &[Value]) {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for d in after.iter().filter(|d| d["kind"] == "DaemonSet") {
        let f = dir
            .path()
            .join(format!("{}.yaml", d["metadata"]["name"].as_str().unwrap()));
        fs::write(&f, serde_yaml::to_string(d).unwrap()).unwrap();
        files.push(f);
    }
    assert_eq!(files.len(), 2);
    kubernetes_validate(&files);
}

#[test]
fn ncps_ubuntu_manifest() {
    check_variant("ubuntu", false);
}

#[test]
fn ncps_ubuntu_manifest_with_the_kernel_module_mounts() {
    check_variant("ubuntu", true);
}

#[test]
fn ncps_rhel_manifest() {
    check_variant("rhel", false);
}

#[test]
fn ncps_rhel_manifest_with_the_kernel_module_mounts() {
    check_variant("rhel", true);
}

/// `kubectl get ds … -o yaml` prints a `kind: List` with server fields; inject keeps the List
/// and those fields, and reads it from standard input.
#[test]
fn a_kubectl_list_from_standard_input() {
    let rendered = docs(&ncp("ubuntu", false));
    let items: Vec<Value> = rendered
        .into_iter()
        .filter(|d| d["kind"] == "DaemonSet")
        .map(|mut d| {
            let m = d["metadata"].as_mapping_mut().unwrap();
            m.insert("uid".into(), "6b0c1e0e-0000-4000-8000-000000000001".into());
            m.insert("resourceVersion".into(), "4711".into());
            let mut status = Mapping::new();
            status.insert("numberReady".into(), 3.into());
            d.as_mapping_mut()
                .unwrap()
                .insert("status".into(), Value::Mapping(status));
            d
        })
        .collect();
    assert_eq!(items.len(), 2);
    let mut list = Mapping::new();
    list.insert("apiVersion".into(), "v1".into());
    list.insert("kind".into(), "List".into());
    list.insert("items".into(), Value::Sequence(items));
    let input = serde_yaml::to_string(&list).unwrap();

    let out = std::process::Command::new(BIN)
        .args(["inject", "--image", IMAGE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out: Value = serde_yaml::from_slice(&out.stdout).unwrap();
    assert_eq!(out["kind"], "List");
    let items = out["items"].as_sequence().unwrap();
    assert_eq!(items[0]["metadata"]["resourceVersion"], "4711");
    assert_eq!(items[0]["status"]["numberReady"], 3);
    let init = container(pod(&items[0]), "initContainers", "nsx-ncp-bootstrap");
    assert_eq!(init["image"], IMAGE);
    let ovs = container(pod(&items[1]), "containers", "nsx-ovs");
    assert_eq!(ovs["image"], IMAGE);
}

#[test]
fn input_inject_does_not_know_is_a_named_error() {
    // A bootstrap DaemonSet whose init container NCP's releases never had: named, nothing out.
    let input = ncp("ubuntu", false).replace("- name: nsx-ncp-bootstrap\n", "- name: renamed\n");
    let r = inject(&input, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr.contains(
            "in.yaml: DaemonSet nsx-ncp-bootstrap has no init container `nsx-ncp-bootstrap`"
        ) && r.stderr.contains("renamed"),
        "{}",
        r.stderr
    );

    let r = run(&["inject", "--image", IMAGE, "-f", "/nonexistent/ncp.yaml"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("reading /nonexistent/ncp.yaml"),
        "{}",
        r.stderr
    );

    let r = inject("kind: ConfigMap\n", &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no NCP DaemonSet found"), "{}", r.stderr);
}
