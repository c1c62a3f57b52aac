#!/usr/bin/env python3
"""Turns the DaemonSets of units/kubernetes into the Pods `podman kube play` runs (podman 4.3
plays Pod, not DaemonSet): each Pod is its DaemonSet's pod template as written, in one file
with the example ncp.ini ConfigMap it mounts; the retire Pod is taken as it is, bound to the
guest (NODE_NAME: its host name). Only these change, each printed:
  - the image: the ncp-bootstrap image under test (IMAGE) for ours; for NCP's nsx-node-agent
    image, which is not available here, the same image running `sleep infinity`: a stand-in
    that shows the container is confined by the AppArmor profile;
  - the env of extra settings a test node needs (NAME=VALUE arguments, e.g. to allow the demo
    bundle), added to the containers that run `ncp-bootstrap install`, and replacing the
    manifest's own in the container that runs `ncp-bootstrap monitor` (whose readiness probe,
    `status`, reads the bundle too).
Pod fields podman 4.3 does not read become settings of a containers.conf written beside each
Pod (<name>.conf; podman reads it from CONTAINERS_CONF): hostPID (added in podman 4.5) becomes
pidns = "host", terminationGracePeriodSeconds becomes stop_timeout.
A container with a Localhost AppArmor profile (field or annotation; kube play ignores both) is
taken out of the Pod and written as a `podman run` into the played pod (<name>.run, a shell
script), generated from its spec; a field that translation does not know is an error.
With --ncp FILE, the Pods are NCP's own DaemonSets from FILE (NCP's manifest after `ncp-bootstrap
inject`), played with NCP's ConfigMap; NCP's volume forms podman 4.3 does not take are
translated (translate_volumes), each printed.
Usage: kube-pods.py [--ncp FILE] REPO IMAGE OUT_DIR [NAME=VALUE...]"""
import shlex
import sys
import yaml

# Linux capability numbers (linux/capability.h), for the CapEff a container must end up with.
CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
        "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN",
        "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE",
        "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
        "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
        "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
        "PERFMON", "BPF", "CHECKPOINT_RESTORE"]


def capeff(c):
    """The effective set of a container that drops ALL and adds its list, as /proc shows it."""
    caps = c.get("securityContext", {}).get("capabilities", {})
    if caps.get("drop") != ["ALL"]:
        return None
    mask = sum(1 << CAPS.index(n) for n in caps.get("add", []))
    return f"{mask:016x}"


# Our DaemonSets, and the Pod that retires one node (its NODE_NAME set to this node's name).
MANIFESTS = ["ncp-bootstrap.yaml", "ncp-bootstrap-node-agent.yaml", "ncp-bootstrap-retire-node.yaml"]
OURS = "registry.example.com/ncp-bootstrap:"
NCP = "registry.example.com/nsx-ncp:"


def pod(ds, image, env, changes):
    """The Pod of a DaemonSet's template, or a Pod as it is; and its podman runs."""
    if ds["kind"] == "Pod":
        tmpl = ds
        spec = dict(tmpl["spec"])
    else:
        tmpl = ds["spec"]["template"]
        spec = dict(tmpl["spec"])
        # A DaemonSet's pods restart always; podman 4.3 applies the pod's policy to its init
        # containers too, which then run in a loop: OnFailure restarts a killed container and
        # leaves a finished init container alone.
        spec["restartPolicy"] = "OnFailure"
        changes.append(f"{ds['metadata']['name']}: restartPolicy Always -> OnFailure")
    for kind in ("initContainers", "containers"):
        for c in spec.get(kind, []):
            if c["image"].startswith(OURS):
                c["image"] = image
                if c["command"][:2] == ["ncp-bootstrap", "install"]:
                    c.setdefault("env", []).extend({"name": k, "value": v} for k, v in env)
                    for k, v in env:
                        changes.append(f"{ds['metadata']['name']}/{c['name']}: env {k}={v}")
                if c["command"][:2] == ["ncp-bootstrap", "monitor"]:
                    # The monitor's settings (a shorter grace period) replace the manifest's;
                    # the others go in too: its readiness probe and `status` read the bundle.
                    mine = {k: v for k, v in env}
                    c["env"] = [e for e in c.get("env", []) if e["name"] not in mine]
                    c["env"].extend({"name": k, "value": v} for k, v in mine.items())
                    for k, v in mine.items():
                        changes.append(f"{ds['metadata']['name']}/{c['name']}: env {k}={v}")
            elif c["image"].startswith(NCP):
                c["image"] = image
                c["command"] = ["sleep", "infinity"]
                changes.append(f"{ds['metadata']['name']}/{c['name']}: NCP's image -> {image} `sleep infinity` (stand-in)")
                # What only NCP's own program reads or answers goes with it: its probes
                # (check_pod_liveness), its arguments, the environment it takes from the API
                # server (fieldRef).
                for field in ("livenessProbe", "readinessProbe", "startupProbe", "args", "env"):
                    if c.pop(field, None) is not None:
                        changes.append(f"{ds['metadata']['name']}/{c['name']}: {field} dropped (stand-in)")
            else:
                sys.exit(f"kube-pods: unknown image {c['image']}")
    translate_volumes(ds["metadata"]["name"], spec, changes)
    runs = []
    for c in list(spec.get("containers", [])):
        profile = apparmor_profile(tmpl["metadata"], c)
        if profile:
            spec["containers"] = [x for x in spec["containers"] if x is not c]
            runs.append(podman_run(ds["metadata"]["name"], spec, c, profile))
            changes.append(f"{ds['metadata']['name']}/{c['name']}: AppArmor {profile} -> podman run --security-opt apparmor={profile} (in {ds['metadata']['name']}.run)")
    # kube play ignores an Unconfined profile too; podman has no per-container setting in a
    # played pod but the pod's containers.conf, which then leaves every container of the pod
    # that gets no profile of its own unconfined (stand-ins included).
    spec["x-unconfined"] = [c["name"] for c in spec.get("containers", []) if unconfined(tmpl["metadata"], c)]
    meta = {"name": ds["metadata"]["name"], "labels": tmpl["metadata"].get("labels", {})}
    meta["annotations"] = dict(tmpl["metadata"].get("annotations", {}))
    if spec.get("initContainers"):
        # As the kubelet does when a node reboots: the init containers run at every start of
        # the pod (podman's default, "once", removes them after the first run).
        meta["annotations"]["io.podman.annotations.init.container.type"] = "always"
        changes.append(f"{ds['metadata']['name']}: init containers of type always (podman annotation)")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}, runs


def translate_volumes(name, spec, changes):
    """NCP's volume forms podman 4.3's kube play does not take, as equivalents it does: a
    projected volume of one ConfigMap becomes that ConfigMap's volume; a subPath of a hostPath
    volume becomes a hostPath volume of its own at the joined path."""
    volumes = spec.get("volumes", [])
    for v in volumes:
        sources = v.get("projected", {}).get("sources")
        if sources is not None:
            if len(sources) != 1 or "configMap" not in sources[0]:
                sys.exit(f"kube-pods: {name}: cannot translate projected volume {v['name']}")
            del v["projected"]
            v["configMap"] = sources[0]["configMap"]
            changes.append(f"{name}: projected volume {v['name']} -> configMap {v['configMap']['name']}")
    by_name = {v["name"]: v for v in volumes}
    for kind in ("initContainers", "containers"):
        for c in spec.get(kind, []):
            for m in c.get("volumeMounts", []):
                sub = m.pop("subPath", None)
                if sub is None:
                    continue
                v = by_name[m["name"]]
                if "hostPath" not in v:
                    sys.exit(f"kube-pods: {name}/{c['name']}: cannot translate subPath of {m['name']}")
                new = f"{m['name']}-{sub.replace('/', '-')}"
                if new not in by_name:
                    path = v["hostPath"]["path"].rstrip("/") + "/" + sub
                    by_name[new] = {"name": new, "hostPath": {"path": path, "type": "DirectoryOrCreate"}}
                    volumes.append(by_name[new])
                m["name"] = new
                changes.append(f"{name}/{c['name']}: {m['mountPath']}: subPath {sub} -> hostPath volume {new}")


def apparmor(meta, c):
    """A container's AppArmor setting as the field has it ({"type": ..., "localhostProfile": ...}):
    the field, else the annotation (localhost/NAME, unconfined); None without either."""
    field = c.get("securityContext", {}).get("appArmorProfile")
    if field:
        return field
    ann = meta.get("annotations", {}).get(f"container.apparmor.security.beta.kubernetes.io/{c['name']}", "")
    if ann.startswith("localhost/"):
        return {"type": "Localhost", "localhostProfile": ann[len("localhost/"):]}
    return {"type": "Unconfined"} if ann == "unconfined" else None


def apparmor_profile(meta, c):
    """The Localhost AppArmor profile of a container."""
    a = apparmor(meta, c)
    return a["localhostProfile"] if a and a["type"] == "Localhost" else None


def unconfined(meta, c):
    """Whether a container asks to run without AppArmor confinement."""
    a = apparmor(meta, c)
    return bool(a) and a["type"] == "Unconfined"


def podman_run(pod_name, spec, c, profile):
    """`podman run` into the played pod for one container, from its spec."""
    known = {"name", "image", "imagePullPolicy", "command", "args", "env", "securityContext", "volumeMounts"}
    extra = set(c) - known
    extra |= set(c.get("securityContext", {})) - {"capabilities", "appArmorProfile", "privileged"}
    if extra or c.get("securityContext", {}).get("privileged"):
        sys.exit(f"kube-pods: {pod_name}/{c['name']}: cannot translate {sorted(extra) or 'privileged'} to podman run")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    a = ["podman", "run", "-d", "--replace", "--pod", pod_name, "--name", f"{pod_name}-{c['name']}",
         "--restart", "on-failure", "--security-opt", f"apparmor={profile}"]
    if spec.get("hostPID"):
        a += ["--pid", "host"]
    caps = c.get("securityContext", {}).get("capabilities", {})
    a += [x for cap in caps.get("drop", []) for x in ("--cap-drop", cap)]
    a += [x for cap in caps.get("add", []) for x in ("--cap-add", cap)]
    for e in c.get("env", []):
        a += ["-e", f"{e['name']}={e['value']}"]
    for m in c.get("volumeMounts", []):
        v = volumes[m["name"]]
        opts = ["ro"] if m.get("readOnly") else []
        if m.get("mountPropagation") == "HostToContainer":
            opts.append("rslave")
        if "hostPath" in v:
            src = v["hostPath"]["path"]
        elif "configMap" in v:
            src = v["configMap"]["name"]  # the volume kube play made of the ConfigMap
        else:
            sys.exit(f"kube-pods: {pod_name}/{c['name']}: cannot translate volume {m['name']}")
        a += ["-v", f"{src}:{m['mountPath']}" + (":" + ",".join(opts) if opts else "")]
    cmd = c.get("command", [])
    if cmd:
        a += ["--entrypoint", cmd[0]]
    a += [c["image"]] + cmd[1:] + c.get("args", [])
    return " ".join(shlex.quote(x) for x in a)


def containers_conf(spec, name, wanted, changes):
    """The containers.conf that gives the Pod what podman 4.3's kube play leaves out."""
    text = "# Generated by vagrant/harness/kube-pods.py from the pod template.\n[containers]\n"
    if wanted:
        text += 'apparmor_profile = "unconfined"\n'
        changes.append(f"{name}: AppArmor Unconfined ({', '.join(wanted)}) -> containers.conf apparmor_profile = \"unconfined\" (the pod's containers without a profile of their own)")
    if spec.get("hostPID"):
        text += 'pidns = "host"\n'
        changes.append(f"{name}: hostPID -> containers.conf pidns = \"host\"")
    # Kubernetes' default grace period is 30 s; podman's stop timeout is 10 s.
    grace = spec.get("terminationGracePeriodSeconds", 30)
    changes.append(f"{name}: terminationGracePeriodSeconds {grace} -> containers.conf stop_timeout")
    return text + f"\n[engine]\nstop_timeout = {grace}\n"


# The guest's host name (vagrant/harness/build-image.sh), the node the retire Pod is bound to.
NODE = "ncpb-vm"


def objects(repo, ncp):
    """The objects to play, and the ConfigMap their ncp.ini comes from: our manifests with the
    example ConfigMap, or (--ncp FILE) NCP's DaemonSets after `inject` with NCP's own ConfigMap;
    the retire Pod in both cases, bound to this node."""
    with open(f"{repo}/units/kubernetes/ncp-bootstrap-retire-node.yaml") as f:
        retire = yaml.safe_load(f.read().replace("NODE_NAME", NODE))
    if ncp is None:
        with open(f"{repo}/units/kubernetes/example/nsx-node-agent-config.yaml") as f:
            configmap = yaml.safe_load(f)
        objs = []
        for name in MANIFESTS[:-1]:
            with open(f"{repo}/units/kubernetes/{name}") as f:
                objs.append(yaml.safe_load(f))
        return objs + [retire], configmap
    with open(ncp) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    ds = [d for d in docs if d["kind"] == "DaemonSet" and d["metadata"]["namespace"] == "nsx-system"]
    cms = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "nsx-node-agent-config"]
    if len(ds) != 2 or len(cms) != 1:
        sys.exit(f"kube-pods: {ncp}: expected NCP's two DaemonSets and nsx-node-agent-config")
    return ds + [retire], cms[0]


def main():
    args = sys.argv[1:]
    ncp = None
    if "--ncp" in args:
        i = args.index("--ncp")
        ncp = args[i + 1]
        del args[i:i + 2]
    repo, image, out = args[:3]
    env = [a.split("=", 1) for a in args[3:]]
    all_objects, configmap = objects(repo, ncp)
    changes = []
    for ds in all_objects:
        name = ds["metadata"]["name"]
        assert ds["kind"] in ("DaemonSet", "Pod"), name
        p, runs = pod(ds, image, env, changes)
        name = ds["metadata"]["name"]
        unconf = p["spec"].pop("x-unconfined", [])
        with open(f"{out}/{name}.yaml", "w") as f:
            yaml.safe_dump_all([configmap, p], f, sort_keys=False)
        with open(f"{out}/{name}.conf", "w") as f:
            f.write(containers_conf(p["spec"], name, unconf, changes))
        with open(f"{out}/{name}.capeff", "w") as f:
            for c in p["spec"]["containers"]:
                if capeff(c):
                    f.write(f"{c['name']} {capeff(c)}\n")
        with open(f"{out}/{name}.run", "w") as f:
            f.write("# Generated by vagrant/harness/kube-pods.py: containers added to the played pod.\nset -e\n")
            f.write("".join(r + "\n" for r in runs))
    with open(f"{out}/image", "w") as f:
        f.write(image + "\n")
    for c in changes:
        print(f"kube-pods: {c}")


main()
