//! `inject`: NCP's own DaemonSets, as NCP's YAML or its operator renders them, with
//! ncp-bootstrap in exactly three containers: the `nsx-ncp-bootstrap` init container (`install`),
//! `nsx-host-ovs-monitor` (`monitor`) and `nsx-ovs` (`ovs run`). Everything else (object names,
//! selectors, labels, the ConfigMaps, NCP's `nsx-node-agent` and `nsx-kube-proxy` containers)
//! stays as NCP wrote it, so that `kubectl apply` updates NCP's objects in place.
//!
//! What each of our containers needs comes from our own manifests in `units/kubernetes/`, built
//! into the binary, so that the standalone manifests and the injected ones cannot drift apart.
//! Where NCP's container already mounts a path ours needs, NCP's volume is kept: above all
//! nsx-ovs's `/etc/openvswitch`, NCP's own OVS database under the host's
//! `/var/run/nsx-ujo/openvswitch-db`, whose bridges and pod ports `ovs run` takes over as they
//! are. Mounts of NCP's that our commands do not use are dropped: some lay host binaries over
//! the image's own (RHEL's `/sbin/depmod`, `/usr/sbin/modinfo`, `/usr/bin/nmcli`).

use serde_yaml::{Mapping, Value};
use thiserror::Error;

/// Our standalone manifests: the source of our containers' specs.
const BOOTSTRAP_TEMPLATE: &str = include_str!("../units/kubernetes/ncp-bootstrap.yaml");
const NODE_AGENT_TEMPLATE: &str = include_str!("../units/kubernetes/ncp-bootstrap-node-agent.yaml");

/// The prefix of the volumes inject adds, so that they never collide with NCP's.
pub const VOLUME_PREFIX: &str = "ncp-bootstrap-";

#[derive(Debug, Error)]
pub enum InjectError {
    #[error("{source_name}: document {doc} is not valid YAML: {message}")]
    Yaml {
        source_name: String,
        doc: usize,
        message: String,
    },
    #[error(
        "{source_name}: no NCP DaemonSet found (neither nsx-ncp-bootstrap nor nsx-node-agent \
         in namespace nsx-system); give inject NCP's manifests, e.g. `kubectl get ds -n \
         nsx-system nsx-ncp-bootstrap nsx-node-agent -o yaml`"
    )]
    NoDaemonSet { source_name: String },
    #[error(
        "{source_name}: DaemonSet {daemonset} has no {role} `{container}` (it has: {found}); \
         this is not a layout of NCP's that inject knows. Inject into NCP 3.x/4.x manifests, or \
         use units/kubernetes/ instead"
    )]
    NoContainer {
        source_name: String,
        daemonset: String,
        role: &'static str,
        container: &'static str,
        found: String,
    },
    #[error(
        "{source_name}: DaemonSet {daemonset}: {field} is not what Kubernetes defines ({why})"
    )]
    Malformed {
        source_name: String,
        daemonset: String,
        field: String,
        why: String,
    },
    #[error("--image `{0}` is not an image reference (empty, or with whitespace)")]
    Image(String),
    #[error("the built-in template {0} is broken: {1}")]
    Template(&'static str, String),
}

/// Which of NCP's containers becomes which of ours.
struct Slot {
    /// NCP's DaemonSet.
    daemonset: &'static str,
    /// `initContainers` or `containers`.
    list: &'static str,
    /// NCP's container name.
    container: &'static str,
    /// Our template and its container.
    template: (&'static str, &'static str),
    template_container: &'static str,
}

const SLOTS: [Slot; 3] = [
    Slot {
        daemonset: "nsx-ncp-bootstrap",
        list: "initContainers",
        container: "nsx-ncp-bootstrap",
        template: ("units/kubernetes/ncp-bootstrap.yaml", BOOTSTRAP_TEMPLATE),
        template_container: "nsx-ncp-bootstrap",
    },
    Slot {
        daemonset: "nsx-ncp-bootstrap",
        list: "containers",
        container: "nsx-host-ovs-monitor",
        template: ("units/kubernetes/ncp-bootstrap.yaml", BOOTSTRAP_TEMPLATE),
        template_container: "nsx-host-ovs-monitor",
    },
    Slot {
        daemonset: "nsx-node-agent",
        list: "containers",
        container: "nsx-ovs",
        template: (
            "units/kubernetes/ncp-bootstrap-node-agent.yaml",
            NODE_AGENT_TEMPLATE,
        ),
        template_container: "nsx-ovs",
    },
];

/// The fields of a container that are ours entirely: NCP's values (its entrypoint, its
/// `check_pod_liveness` probes) are replaced, or removed where ours has none.
const OWNED_FIELDS: [&str; 9] = [
    "command",
    "args",
    "env",
    "securityContext",
    "startupProbe",
    "livenessProbe",
    "readinessProbe",
    "resources",
    "workingDir",
];

/// Pod fields our commands need set to `true` when ours sets them: `ovs run` and the monitor
/// reach the host's systemd (networkd, NetworkManager hand-offs) through PID 1's namespaces.
const POD_FLAGS: [&str; 2] = ["hostNetwork", "hostPID"];

/// NCP's manifests in, the same manifests with our containers out. `source_name` names the
/// input in errors.
pub fn inject(input: &str, image: &str, source_name: &str) -> Result<String, InjectError> {
    if image.is_empty() || image.chars().any(char::is_whitespace) {
        return Err(InjectError::Image(image.into()));
    }
    let mut docs = parse(input, source_name)?;
    let mut found = false;
    for doc in docs.iter_mut() {
        for ds in daemonsets(doc) {
            found |= inject_daemonset(ds, image, source_name)?;
        }
    }
    if !found {
        return Err(InjectError::NoDaemonSet {
            source_name: source_name.into(),
        });
    }
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let text = serde_yaml::to_string(doc).map_err(|e| InjectError::Yaml {
            source_name: source_name.into(),
            doc: i + 1,
            message: e.to_string(),
        })?;
        out.push_str(&text);
    }
    Ok(out)
}

/// The documents of a multi-document stream, empty ones left out.
fn parse(input: &str, source_name: &str) -> Result<Vec<Value>, InjectError> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(input).enumerate() {
        let v = serde::Deserialize::deserialize(de).map_err(|e: serde_yaml::Error| {
            InjectError::Yaml {
                source_name: source_name.into(),
                doc: i + 1,
                message: e.to_string(),
            }
        })?;
        if !matches!(v, Value::Null) {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// The DaemonSets of a document: itself, or the items of a `kind: List` (as `kubectl get -o
/// yaml` prints several objects).
fn daemonsets(doc: &mut Value) -> Vec<&mut Mapping> {
    let Some(m) = doc.as_mapping_mut() else {
        return Vec::new();
    };
    if str_at(m, "kind") == Some("List") {
        return match m.get_mut("items").and_then(Value::as_sequence_mut) {
            Some(items) => items
                .iter_mut()
                .filter_map(Value::as_mapping_mut)
                .filter(|i| str_at(i, "kind") == Some("DaemonSet"))
                .collect(),
            None => Vec::new(),
        };
    }
    match str_at(m, "kind") == Some("DaemonSet") {
        true => vec![m],
        false => Vec::new(),
    }
}

fn str_at<'a>(m: &'a Mapping, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str)
}

/// Whether this is one of NCP's DaemonSets (and so was injected).
fn inject_daemonset(ds: &mut Mapping, image: &str, source: &str) -> Result<bool, InjectError> {
    let meta = ds.get("metadata").and_then(Value::as_mapping);
    let name = meta.and_then(|m| str_at(m, "name")).unwrap_or_default();
    let namespace = meta.and_then(|m| str_at(m, "namespace"));
    // kubectl's output names the namespace; NCP's YAML does too. None is the one applied to.
    if namespace.is_some_and(|n| n != "nsx-system") {
        return Ok(false);
    }
    let slots: Vec<&Slot> = SLOTS.iter().filter(|s| s.daemonset == name).collect();
    if slots.is_empty() {
        return Ok(false);
    }
    let name = name.to_string();
    let malformed = |field: &str, why: &str| InjectError::Malformed {
        source_name: source.into(),
        daemonset: name.clone(),
        field: field.into(),
        why: why.into(),
    };
    let template = ds
        .get_mut("spec")
        .and_then(Value::as_mapping_mut)
        .and_then(|s| s.get_mut("template"))
        .and_then(Value::as_mapping_mut)
        .ok_or_else(|| malformed("spec.template", "missing, or not a mapping"))?;
    // NCP's manifest for AppArmor nodes (Ubuntu) names a profile; the one for nodes without
    // it (RHEL) names none, and the kubelet refuses a pod that asks for AppArmor there.
    let uses_apparmor = template
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_mapping)
        .is_some_and(|a| {
            a.keys()
                .filter_map(Value::as_str)
                .any(|k| k.starts_with(APPARMOR_ANNOTATION))
        });
    let mut annotations = Vec::new();
    let pod = template
        .get_mut("spec")
        .and_then(Value::as_mapping_mut)
        .ok_or_else(|| malformed("spec.template.spec", "missing, or not a mapping"))?;
    for slot in slots {
        let (tname, ttext) = slot.template;
        let (tpod, tannotations) = parse_template(tname, ttext)?;
        if uses_apparmor {
            let key = format!("{APPARMOR_ANNOTATION}{}", slot.template_container);
            if let Some(v) = tannotations.get(key.as_str()) {
                annotations.push((
                    format!("{APPARMOR_ANNOTATION}{}", slot.container),
                    v.clone(),
                ));
            }
        }
        let ours = container(&tpod, slot.list, slot.template_container)
            .ok_or_else(|| {
                InjectError::Template(tname, format!("no container {}", slot.template_container))
            })?
            .clone();
        let ncp = containers_mut(pod, slot.list)
            .map_err(|why| malformed(&format!("spec.template.spec.{}", slot.list), why))?
            .and_then(|list| {
                list.iter_mut()
                    .filter_map(Value::as_mapping_mut)
                    .find(|c| str_at(c, "name") == Some(slot.container))
            });
        let Some(ncp) = ncp else {
            return Err(InjectError::NoContainer {
                source_name: source.into(),
                daemonset: name,
                role: match slot.list {
                    "initContainers" => "init container",
                    _ => "container",
                },
                container: slot.container,
                found: names(pod),
            });
        };
        let added = merge_container(ncp, &ours, image);
        if !uses_apparmor {
            if let Some(sc) = ncp
                .get_mut("securityContext")
                .and_then(Value::as_mapping_mut)
            {
                sc.remove("appArmorProfile");
            }
        }
        for volume in added {
            let v = template_volume(&tpod, &volume)
                .ok_or_else(|| InjectError::Template(tname, format!("no volume {volume}")))?;
            add_volume(pod, v).map_err(|why| malformed("spec.template.spec.volumes", why))?;
        }
        for flag in POD_FLAGS {
            if tpod.get(flag).and_then(Value::as_bool) == Some(true) {
                pod.insert(flag.into(), Value::Bool(true));
            }
        }
        add_retire_terms(pod, &tpod)
            .map_err(|why| malformed("spec.template.spec.affinity.nodeAffinity", why))?;
    }
    if !annotations.is_empty() {
        let meta = template
            .entry("metadata".into())
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        let a = meta
            .as_mapping_mut()
            .ok_or_else(|| malformed("spec.template.metadata", "not a mapping"))?
            .entry("annotations".into())
            .or_insert_with(|| Value::Mapping(Mapping::new()))
            .as_mapping_mut()
            .ok_or_else(|| malformed("spec.template.metadata.annotations", "not a mapping"))?;
        for (k, v) in annotations {
            a.insert(k.into(), v);
        }
    }
    Ok(true)
}

/// The AppArmor annotation of Kubernetes before 1.30, one per container.
const APPARMOR_ANNOTATION: &str = "container.apparmor.security.beta.kubernetes.io/";

/// The node-affinity expressions of our template (the `ncp-bootstrap/retire` label that takes
/// a node out one DaemonSet at a time) added to every term of NCP's required node affinity, or
/// as its only term where NCP has none. Terms are ORed, so each must carry them.
fn add_retire_terms(pod: &mut Mapping, tpod: &Mapping) -> Result<(), &'static str> {
    let ours: Vec<Value> = terms(tpod)
        .and_then(|t| t.first())
        .and_then(|t| t.get("matchExpressions"))
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    if ours.is_empty() {
        return Ok(());
    }
    let mut node_affinity = pod;
    for key in [
        "affinity",
        "nodeAffinity",
        "requiredDuringSchedulingIgnoredDuringExecution",
    ] {
        let next = node_affinity
            .entry(key.into())
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        if next.is_null() {
            *next = Value::Mapping(Mapping::new());
        }
        node_affinity = next.as_mapping_mut().ok_or("not a mapping")?;
    }
    let list = node_affinity
        .entry("nodeSelectorTerms".into())
        .or_insert_with(|| Value::Sequence(Vec::new()));
    let Value::Sequence(list) = list else {
        return Err("nodeSelectorTerms is not a list");
    };
    if list.is_empty() {
        list.push(Value::Mapping(Mapping::new()));
    }
    for term in list.iter_mut() {
        let term = term.as_mapping_mut().ok_or("a term is not a mapping")?;
        let exprs = term
            .entry("matchExpressions".into())
            .or_insert_with(|| Value::Sequence(Vec::new()));
        let Value::Sequence(exprs) = exprs else {
            return Err("matchExpressions is not a list");
        };
        for e in &ours {
            if !exprs.contains(e) {
                exprs.push(e.clone());
            }
        }
    }
    Ok(())
}

fn terms(pod: &Mapping) -> Option<&Vec<Value>> {
    pod.get("affinity")?
        .get("nodeAffinity")?
        .get("requiredDuringSchedulingIgnoredDuringExecution")?
        .get("nodeSelectorTerms")?
        .as_sequence()
}

/// The pod template of the DaemonSet in one of our templates, parsed once: its spec, and its
/// annotations (none: empty).
fn parse_template(name: &'static str, text: &str) -> Result<(Mapping, Mapping), InjectError> {
    let doc: Value =
        serde_yaml::from_str(text).map_err(|e| InjectError::Template(name, e.to_string()))?;
    let tmpl = doc.get("spec").and_then(|s| s.get("template"));
    let spec = tmpl
        .and_then(|t| t.get("spec"))
        .and_then(Value::as_mapping)
        .cloned()
        .ok_or_else(|| InjectError::Template(name, "no spec.template.spec".into()))?;
    let annotations = tmpl
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    Ok((spec, annotations))
}

fn container<'a>(pod: &'a Mapping, list: &str, name: &str) -> Option<&'a Mapping> {
    pod.get(list)?
        .as_sequence()?
        .iter()
        .filter_map(Value::as_mapping)
        .find(|c| str_at(c, "name") == Some(name))
}

fn containers_mut<'a>(
    pod: &'a mut Mapping,
    list: &str,
) -> Result<Option<&'a mut Vec<Value>>, &'static str> {
    match pod.get_mut(list) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Sequence(s)) => Ok(Some(s)),
        Some(_) => Err("not a list"),
    }
}

/// "init: a, b; containers: c" for an error message.
fn names(pod: &Mapping) -> String {
    let list = |key: &str| {
        pod.get(key)
            .and_then(Value::as_sequence)
            .map(|s| {
                s.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    format!(
        "init containers [{}], containers [{}]",
        list("initContainers"),
        list("containers")
    )
}

/// Makes NCP's container ours: the image, our fields, and our mounts, with NCP's volume kept
/// where NCP mounts the same path. Returns the template volumes (their names in the template)
/// that the pod must have added.
fn merge_container(ncp: &mut Mapping, ours: &Mapping, image: &str) -> Vec<String> {
    ncp.insert("image".into(), image.into());
    for field in OWNED_FIELDS {
        match ours.get(field) {
            Some(v) => ncp.insert(field.into(), v.clone()),
            None => ncp.remove(field),
        };
    }
    let ncp_mounts: Vec<Mapping> = ncp
        .get("volumeMounts")
        .and_then(Value::as_sequence)
        .map(|s| s.iter().filter_map(Value::as_mapping).cloned().collect())
        .unwrap_or_default();
    let mut mounts = Vec::new();
    let mut added = Vec::new();
    for m in ours
        .get("volumeMounts")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(Value::as_mapping)
    {
        let path = str_at(m, "mountPath");
        if let Some(kept) = ncp_mounts.iter().find(|n| str_at(n, "mountPath") == path) {
            mounts.push(Value::Mapping(kept.clone()));
            continue;
        }
        let volume = str_at(m, "name").unwrap_or_default().to_string();
        let mut m = m.clone();
        m.insert("name".into(), prefixed(&volume).into());
        mounts.push(Value::Mapping(m));
        added.push(volume);
    }
    ncp.insert("volumeMounts".into(), Value::Sequence(mounts));
    added
}

fn prefixed(volume: &str) -> String {
    match volume.starts_with(VOLUME_PREFIX) {
        true => volume.into(),
        false => format!("{VOLUME_PREFIX}{volume}"),
    }
}

/// A template volume, renamed with our prefix.
fn template_volume(tpod: &Mapping, name: &str) -> Option<Mapping> {
    let mut v = tpod
        .get("volumes")?
        .as_sequence()?
        .iter()
        .filter_map(Value::as_mapping)
        .find(|v| str_at(v, "name") == Some(name))?
        .clone();
    v.insert("name".into(), prefixed(name).into());
    Some(v)
}

/// Adds a volume unless the pod has one of that name (a second inject).
fn add_volume(pod: &mut Mapping, volume: Mapping) -> Result<(), &'static str> {
    let volumes = pod
        .entry("volumes".into())
        .or_insert_with(|| Value::Sequence(Vec::new()));
    if matches!(volumes, Value::Null) {
        *volumes = Value::Sequence(Vec::new());
    }
    let Value::Sequence(list) = volumes else {
        return Err("not a list");
    };
    let name = str_at(&volume, "name");
    if !list
        .iter()
        .any(|v| v.get("name").and_then(Value::as_str) == name)
    {
        list.push(Value::Mapping(volume));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_have_every_slot() {
        for slot in &SLOTS {
            let (name, text) = slot.template;
            let (pod, _) = parse_template(name, text).unwrap();
            let c = container(&pod, slot.list, slot.template_container)
                .unwrap_or_else(|| panic!("{name}: no {}", slot.template_container));
            for m in c["volumeMounts"].as_sequence().unwrap() {
                let v = m["name"].as_str().unwrap();
                assert!(template_volume(&pod, v).is_some(), "{name}: volume {v}");
            }
        }
    }

    #[test]
    fn the_retire_expression_joins_every_term_of_an_existing_affinity() {
        let mut pod: Mapping = serde_yaml::from_str(
            "affinity:\n  nodeAffinity:\n    requiredDuringSchedulingIgnoredDuringExecution:\n      \
             nodeSelectorTerms:\n      - matchExpressions: [{key: a, operator: Exists}]\n      \
             - matchFields: [{key: metadata.name, operator: In, values: [n1]}]\n",
        )
        .unwrap();
        let (tpod, _) = parse_template("node-agent", NODE_AGENT_TEMPLATE).unwrap();
        add_retire_terms(&mut pod, &tpod).unwrap();
        add_retire_terms(&mut pod, &tpod).unwrap();
        let want: Value = serde_yaml::from_str(
            "[{matchExpressions: [{key: a, operator: Exists}, \
              {key: ncp-bootstrap/retire, operator: DoesNotExist}]}, \
             {matchFields: [{key: metadata.name, operator: In, values: [n1]}], \
              matchExpressions: [{key: ncp-bootstrap/retire, operator: DoesNotExist}]}]",
        )
        .unwrap();
        assert_eq!(terms(&pod).cloned().map(Value::Sequence), Some(want));
    }

    #[test]
    fn an_image_with_whitespace_is_refused() {
        assert!(matches!(
            inject("kind: DaemonSet\n", "a b", "-"),
            Err(InjectError::Image(_))
        ));
    }

    #[test]
    fn input_without_ncp_daemonsets_is_a_named_error() {
        let e = inject(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
            "img",
            "in.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("in.yaml: no NCP DaemonSet found"), "{e}");
    }

    #[test]
    fn a_bootstrap_without_its_init_container_is_a_named_error() {
        let input = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: nsx-ncp-bootstrap\n  \
                     namespace: nsx-system\nspec:\n  template:\n    spec:\n      containers:\n      \
                     - name: other\n";
        let e = inject(input, "img", "in.yaml").unwrap_err().to_string();
        assert!(
            e.contains("DaemonSet nsx-ncp-bootstrap has no init container `nsx-ncp-bootstrap`")
                && e.contains("containers [other]"),
            "{e}"
        );
    }

    #[test]
    fn broken_yaml_names_the_document() {
        let e = inject("kind: List\n---\nkind: [\n", "img", "in.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("in.yaml: document 2 is not valid YAML"),
            "{e}"
        );
    }
}
