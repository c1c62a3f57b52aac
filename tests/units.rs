//! units/: the Kubernetes manifests validate against the Kubernetes 1.30 and the newest schemas
//! kubernetes-validate knows, replace no object of NCP's own install, and carry the
//! security-relevant fields the README documents; the systemd units pass `systemd-analyze
//! verify`; the Containerfile installs exactly the programs the code runs.

mod common;
use common::*;
use serde_yaml::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

fn manifest(name: &str) -> Value {
    let text = fs::read_to_string(Path::new(REPO).join("units/kubernetes").join(name)).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

#[test]
fn manifests_validate_against_kubernetes_schemas() {
    let files = manifest_files();
    assert!(files.len() >= 5);
    kubernetes_validate(&files);
}

/// Every manifest, the example ConfigMap included.
fn manifest_files() -> Vec<std::path::PathBuf> {
    let dir = Path::new(REPO).join("units/kubernetes");
    let mut files: Vec<_> = [dir.clone(), dir.join("example"), dir.join("rhel")]
        .iter()
        .flat_map(|d| fs::read_dir(d).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn manifests_replace_no_object_of_ncps_install_and_admit_their_pods() {
    // `kubectl apply` of units/kubernetes must overwrite no object of NCP's install (its
    // DaemonSets, ConfigMaps, accounts: every name in NCP's own manifests, Ubuntu and RHEL;
    // the ConfigMap sample lives in example/). The namespace is shared on purpose.
    let mut ncp = BTreeSet::new();
    for distro in ["ubuntu", "rhel"] {
        let path = format!("tests/fixtures/ncp-operator/ncp-{distro}.yaml");
        let text = fs::read_to_string(Path::new(REPO).join(path)).unwrap();
        for line in text.lines() {
            // Top-level object names: `metadata:` then `  name: X` (template lines skipped).
            if let Some(name) = line.strip_prefix("  name: ") {
                if !name.contains("{{") {
                    ncp.insert(name.trim().to_string());
                }
            }
        }
    }
    for name in [
        "nsx-ncp-bootstrap",
        "nsx-node-agent",
        "nsx-node-agent-config",
    ] {
        assert!(ncp.contains(name), "{name} not read from NCP's manifests");
    }
    for f in fs::read_dir(Path::new(REPO).join("units/kubernetes")).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        for m in serde_yaml::Deserializer::from_str(&fs::read_to_string(&p).unwrap()) {
            let m: Value = serde::Deserialize::deserialize(m).unwrap();
            if m["kind"] == "Namespace" {
                continue;
            }
            let name = m["metadata"]["name"].as_str().unwrap();
            assert!(!ncp.contains(name), "{}: {name} is NCP's", p.display());
        }
    }
    let ns = manifest("namespace.yaml");
    assert_eq!(ns["metadata"]["name"], "nsx-system");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
}

#[test]
fn manifests_carry_the_documented_security_fields() {
    let readme = fs::read_to_string(Path::new(REPO).join("README.md")).unwrap();
    let boot = manifest("ncp-bootstrap.yaml");
    let spec = &boot["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["hostPID"], true);
    assert_eq!(spec["automountServiceAccountToken"], false);
    let init = container(spec, "initContainers", "nsx-ncp-bootstrap");
    assert_eq!(
        init["command"],
        serde_yaml::from_str::<Value>("[ncp-bootstrap, install, --host-root, /host]").unwrap()
    );
    assert_eq!(init["securityContext"]["privileged"], true);
    assert!(init["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|m| m["mountPath"] == "/host"));
    let monitor = container(spec, "containers", "nsx-host-ovs-monitor");
    assert_eq!(
        monitor["command"],
        serde_yaml::from_str::<Value>("[ncp-bootstrap, monitor, --host-root, /host]").unwrap()
    );
    assert_eq!(
        monitor["readinessProbe"]["exec"]["command"],
        serde_yaml::from_str::<Value>("[ncp-bootstrap, -q, --host-root, /host, status]").unwrap()
    );

    let agent = manifest("ncp-bootstrap-node-agent.yaml");
    let tmpl = &agent["spec"]["template"];
    assert_eq!(
        tmpl["metadata"]["annotations"]
            ["container.apparmor.security.beta.kubernetes.io/nsx-node-agent"],
        "localhost/node-agent-apparmor"
    );
    let spec = &tmpl["spec"];
    let profile =
        &container(spec, "containers", "nsx-node-agent")["securityContext"]["appArmorProfile"];
    assert_eq!(profile["type"], "Localhost");
    assert_eq!(profile["localhostProfile"], "node-agent-apparmor");
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["hostPID"], true);
    assert!(spec["terminationGracePeriodSeconds"].as_u64().unwrap() >= 30);
    let ovs = container(spec, "containers", "nsx-ovs");
    assert_eq!(ovs["command"][1], "ovs");
    assert_eq!(ovs["command"][2], "run");
    assert!(
        ovs["securityContext"].get("privileged").is_none(),
        "nsx-ovs must not be privileged"
    );
    let caps: BTreeSet<&str> = ovs["securityContext"]["capabilities"]["add"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        caps,
        [
            "IPC_LOCK",
            "NET_ADMIN",
            "NET_RAW",
            "SYS_ADMIN",
            "SYS_CHROOT",
            "SYS_MODULE",
            "SYS_NICE",
            "SYS_PTRACE"
        ]
        .into_iter()
        .collect()
    );
    for c in &caps {
        assert!(
            readme.contains(&format!("`{c}`")),
            "README does not explain {c}"
        );
    }
    assert!(ovs["resources"]["requests"]["memory"].is_string());
    assert!(
        ovs["resources"]["limits"].is_null(),
        "an OOM kill of nsx-ovs cuts the node off"
    );
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let cmd: Vec<&str> = ovs[probe]["exec"]["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert!(
            cmd.windows(2).any(|w| w == ["ovs", "health"]),
            "{probe}: {cmd:?}"
        );
        // Only readiness waits for an uplink: with none, OVS is fine and a restart changes
        // nothing, but the pod must not report Ready.
        assert_eq!(
            cmd.contains(&"--ready"),
            probe == "readinessProbe",
            "{probe}: {cmd:?}"
        );
    }
    let db = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "host-original-ovs-db")
        .unwrap();
    assert_eq!(db["hostPath"]["path"], "/etc/openvswitch");
    assert!(ovs["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "host-original-ovs-db" && m["mountPath"] == "/etc/openvswitch"));

    // Two decommission paths: the whole cluster (a DaemonSet), one node (a Pod bound to it).
    let cluster = manifest("ncp-bootstrap-remove-from-cluster.yaml");
    assert_eq!(cluster["kind"], "DaemonSet");
    let init = container(
        &cluster["spec"]["template"]["spec"],
        "initContainers",
        "cleanup",
    );
    assert_eq!(init["command"][1], "cleanup");
    let retire = manifest("ncp-bootstrap-retire-node.yaml");
    assert_eq!(retire["kind"], "Pod");
    assert_eq!(retire["spec"]["nodeName"], "NODE_NAME");
    assert_eq!(retire["metadata"]["name"], "ncp-bootstrap-retire-NODE_NAME");
    assert_eq!(retire["spec"]["restartPolicy"], "Never");
    assert_eq!(
        container(&retire["spec"], "containers", "cleanup")["command"][1],
        "cleanup"
    );
    // The retire label takes nsx-ovs off a node before the bootstrap pod, whose monitor gives
    // node-if its addresses back in between.
    let term = |m: &Value| {
        m["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
            ["matchExpressions"][0]
            .clone()
    };
    assert_eq!(
        term(&agent),
        serde_yaml::from_str::<Value>("{key: ncp-bootstrap/retire, operator: DoesNotExist}")
            .unwrap()
    );
    assert_eq!(
        term(&boot),
        serde_yaml::from_str::<Value>(
            "{key: ncp-bootstrap/retire, operator: NotIn, values: [all]}"
        )
        .unwrap()
    );
    // Nothing here needs the API server: no RBAC objects are shipped.
    for f in manifest_files() {
        let t = fs::read_to_string(f).unwrap();
        assert!(!t.contains("kind: ClusterRole") && !t.contains("kind: Role"));
    }
}

#[test]
fn systemd_units_verify() {
    if !have("systemd-analyze") {
        skip("systemd-analyze (systemd) not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for e in fs::read_dir(Path::new(REPO).join("units/systemd")).unwrap() {
        let p = e.unwrap().path();
        // The units name the installed path; point them at the binary this test built.
        let text = fs::read_to_string(&p)
            .unwrap()
            .replace("/usr/bin/ncp-bootstrap", BIN);
        let dst = tmp.path().join(p.file_name().unwrap());
        fs::write(&dst, text).unwrap();
        units.push(dst);
    }
    assert_eq!(units.len(), 4);
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.trim().is_empty(), "systemd-analyze warned:\n{text}");
}

#[test]
fn containerfile_installs_exactly_what_the_code_runs() {
    let cf = fs::read_to_string(Path::new(REPO).join("units/container/Containerfile")).unwrap();
    let line = cf
        .lines()
        .find(|l| l.starts_with("ARG RUNTIME_TOOLS="))
        .expect("RUNTIME_TOOLS");
    let listed: BTreeSet<String> = line
        .split('"')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    let mut called: BTreeSet<String> = ncp_bootstrap::host::ovs::DAEMONS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut host_tools: BTreeSet<String> = BTreeSet::new();
    let mut stack = vec![Path::new(REPO).join("src")];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let src = fs::read_to_string(&p).unwrap();
            for pat in ["find_tool(\"", "which::which(\""] {
                for part in src.split(pat).skip(1) {
                    called.insert(part.split('"').next().unwrap().to_string());
                }
            }
            for part in src.split("host_tool(\"").skip(1) {
                host_tools.insert(part.split('"').next().unwrap().to_string());
            }
        }
    }
    // The host's own tools, reached in PID 1's mount namespace when the container has none
    // (run::host_tool falls back to `nsenter -t 1 -m -- TOOL`): not shipped in the image.
    assert_eq!(
        host_tools,
        BTreeSet::from(["networkctl", "nmcli", "resolvectl"].map(String::from)),
        "the host's own tools"
    );
    let run = fs::read_to_string(Path::new(REPO).join("src/host/run.rs")).unwrap();
    assert!(run.contains("\"-t\", \"1\", \"-m\", \"--\", name"));
    assert!(called.contains("nsenter"));
    assert_eq!(
        listed, called,
        "Containerfile RUNTIME_TOOLS vs programs the code runs"
    );
    // The image gets the binary `make build` links statically.
    let make = fs::read_to_string(Path::new(REPO).join("Makefile")).unwrap();
    assert!(make.contains("crt-static") && make.contains("TRIPLE := x86_64-unknown-linux-gnu"));
    assert!(cf.contains("COPY target/x86_64-unknown-linux-gnu/release/ncp-bootstrap /usr/bin/"));
}

/// `ncp-ovs.service` takes the place of the distribution's OVS on both families, and the
/// packages' maintainer scripts are valid shell (the VM's packages.sh runs the .deb's for real).
#[test]
fn ncp_ovs_conflicts_with_both_distributions_ovs_and_package_scripts_parse() {
    let unit = fs::read_to_string(Path::new(REPO).join("units/systemd/ncp-ovs.service")).unwrap();
    let conflicts: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Conflicts="))
        .flat_map(str::split_whitespace)
        .collect();
    for ovs in ["openvswitch-switch.service", "openvswitch.service"] {
        assert!(conflicts.contains(&ovs), "ncp-ovs.service: {conflicts:?}");
    }
    let scripts = [
        "distro/packages/debian/postinst",
        "distro/packages/debian/prerm",
        "distro/packages/debian/postrm",
        "distro/packages/rpm/post.sh",
        "distro/packages/rpm/preun.sh",
        "distro/packages/rpm/postun.sh",
    ];
    for s in scripts {
        let out = Command::new("sh")
            .arg("-n")
            .arg(Path::new(REPO).join(s))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{s}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every script Cargo.toml names for the packages is one of these.
    let cargo = fs::read_to_string(Path::new(REPO).join("Cargo.toml")).unwrap();
    assert!(cargo.contains("maintainer-scripts = \"distro/packages/debian/\""));
    for s in &scripts[3..] {
        assert!(
            cargo.contains(&format!("\"{s}\"")),
            "Cargo.toml does not name {s}"
        );
    }
}

/// The RHEL variant of the node-agent DaemonSet is the Ubuntu one without its AppArmor fields
/// (the kubelet refuses a pod that asks for AppArmor on a node without it), nothing else.
#[test]
fn the_rhel_node_agent_is_the_ubuntu_one_without_apparmor() {
    let mut ubuntu = manifest("ncp-bootstrap-node-agent.yaml");
    let rhel = manifest("rhel/ncp-bootstrap-node-agent.yaml");
    assert!(!serde_yaml::to_string(&rhel)
        .unwrap()
        .to_lowercase()
        .contains("apparmor"));
    let tmpl = ubuntu["spec"]["template"].as_mapping_mut().unwrap();
    let meta = tmpl["metadata"].as_mapping_mut().unwrap();
    assert!(meta.remove("annotations").is_some());
    for c in tmpl["spec"]["containers"].as_sequence_mut().unwrap() {
        if let Some(sc) = c["securityContext"].as_mapping_mut() {
            sc.remove("appArmorProfile");
        }
    }
    assert_eq!(ubuntu, rhel);
}
