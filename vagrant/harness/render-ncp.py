#!/usr/bin/env python3
"""Renders one of NCP's manifests (tests/fixtures/ncp-operator/, Go text/template) as NCP's
operator does (pkg/controller/configmap/config.go, pkg/util/render/render.go), for the tests of
`ncp-bootstrap inject` and the VM scenario that plays NCP's manifests.

Only the template subset those manifests use is understood: `{{.Key}}`, `{{.Key | indent N}}`
(the operator's indent: every line padded, the first included) and non-nested
`{{if .Key}} ... {{end}}`, true for a non-empty value. Anything else, or a key without a value
(the operator renders with missingkey=error), is an error.

Usage: render-ncp.py TEMPLATE NODE_AGENT_NCP_INI [Key=Value ...]
The values default to what an operator with one NCP replica and tolerations for every node
gives; Key=Value overrides one (UseNsxOvsKmod=true for the kernel-module mounts)."""
import re
import sys

DEFAULTS = {
    "NcpImage": "registry.example.com/nsx-ncp:4.1.2",
    "NcpReplicas": "1",
    "NcpNodeSelector": '{"kubernetes.io/os":"linux"}',
    "NcpTolerations": '[{"operator":"Exists"}]',
    "NsxNodeAgentTolerations": '[{"operator":"Exists"}]',
    "NSXNCPConfig": "[DEFAULT]",
    "NsxCert": "",
    "NsxKey": "",
    "NsxCA": "",
    "LbCert": "",
    "LbKey": "",
    "UseNsxOvsKmod": "",
}

ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)


def render(template, data):
    def value(key):
        if key not in data:
            sys.exit(f"render-ncp: no value for {key} (missingkey=error)")
        return data[key]

    out, pos, skipping = [], 0, False
    for m in ACTION.finditer(template):
        if not skipping:
            out.append(template[pos:m.start()])
        pos = m.end()
        action = m.group(1).strip()
        if action.startswith("if ."):
            if skipping:
                sys.exit("render-ncp: nested if")
            skipping = value(action[4:]) == ""
        elif action == "end":
            skipping = False
        elif skipping:
            continue
        elif "| indent" in action:
            key, n = action.split("| indent")
            pad = " " * int(n)
            out.append(pad + value(key.strip().lstrip(".")).replace("\n", "\n" + pad))
        elif action.startswith("."):
            out.append(value(action[1:]))
        else:
            sys.exit(f"render-ncp: template action {{{{{action}}}}} not supported")
    out.append(template[pos:])
    return "".join(out)


def main():
    template, ini = sys.argv[1:3]
    data = dict(DEFAULTS)
    with open(ini) as f:
        data["NSXNodeAgentConfig"] = f.read().rstrip("\n")
    for kv in sys.argv[3:]:
        k, v = kv.split("=", 1)
        data[k] = v
    with open(template) as f:
        sys.stdout.write(render(f.read(), data))


main()
