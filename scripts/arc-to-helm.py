#!/usr/bin/env python3
"""Turn an Azure Arc extension resource into helm arguments.

configurationSettings become `--set-string KEY=VALUE` flags (Arc passes every setting as a
flat string, exactly what --set-string does); configurationProtectedSettings are written
to a values file readable only by its owner (mode 0600) and passed with `-f FILE`, so no
protected value ever appears on a command line.

  python3 scripts/arc-to-helm.py --protected-values /tmp/sc-protected.json examples/arc-extension.yaml

prints the arguments shell-quoted on one line (for copy and paste or eval); with -0 one
argument per NUL-terminated record (for programs and `xargs -0`).
"""

import argparse
import json
import os
import re
import shlex
import sys


def load(path):
    """The resource as a dict: YAML (with PyYAML) or JSON."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("{"):
        return json.loads(text)
    try:
        import yaml  # noqa: PLC0415 (optional dependency)
    except ImportError:
        sys.exit(f"arc-to-helm: reading YAML needs PyYAML (pip install pyyaml); or give the JSON form of {path} (az k8s-extension show -o json)")
    return yaml.safe_load(text)


def settings(resource, name):
    """The flat settings map `name` of the resource (top level, or under properties)."""
    props = resource.get("properties") or {}
    found = props.get(name, resource.get(name)) or {}
    if not isinstance(found, dict):
        sys.exit(f"arc-to-helm: {name} is not a map of settings")
    return {str(k): "" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for k, v in found.items()}


def escape(value):
    """A value as --set-string reads it literally: backslash and comma escaped, and a leading
    `{` escaped so that helm does not read the value as a list."""
    value = value.replace("\\", "\\\\").replace(",", "\\,")
    return "\\" + value if value.startswith("{") else value


SEGMENT = re.compile(r"^([^\[\]]+)((?:\[\d+\])*)$")


def put(tree, key, value):
    """Set a flat helm key (a.b[0].c) in a nested tree, as helm's --set does."""
    path = []
    for part in key.split("."):
        m = SEGMENT.match(part)
        if not m:
            sys.exit(f"arc-to-helm: the protected setting key {key!r} is not a helm key (a.b[0].c)")
        path.append(m.group(1))
        path.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    node = tree
    for here, nxt in zip(path, path[1:]):
        empty = [] if isinstance(nxt, int) else {}
        if isinstance(here, int):
            while len(node) <= here:
                node.append(None)
            if node[here] is None:
                node[here] = empty
            node = node[here]
        else:
            node = node.setdefault(here, empty)
    last = path[-1]
    if isinstance(last, int):
        while len(node) <= last:
            node.append(None)
        node[last] = value
    else:
        node[last] = value


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("extension", help="the extension resource, YAML or JSON")
    p.add_argument("--protected-values", metavar="FILE", help="where to write the protected settings (mode 0600); required when there are any")
    p.add_argument("-0", dest="nul", action="store_true", help="print one argument per NUL-terminated record")
    a = p.parse_args()

    resource = load(a.extension)
    public = settings(resource, "configurationSettings")
    protected = settings(resource, "configurationProtectedSettings")

    args = []
    for k in sorted(public):
        args += ["--set-string", f"{k}={escape(public[k])}"]
    if protected:
        if not a.protected_values:
            sys.exit("arc-to-helm: the resource has configurationProtectedSettings: pass --protected-values FILE to write them (mode 0600)")
        tree = {}
        for k in sorted(protected):
            put(tree, k, protected[k])
        fd = os.open(a.protected_values, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(tree, f, indent=2)
            f.write("\n")
        args += ["-f", a.protected_values]

    if a.nul:
        sys.stdout.write("".join(x + "\0" for x in args))
    else:
        print(" ".join(shlex.quote(x) for x in args))


if __name__ == "__main__":
    main()
