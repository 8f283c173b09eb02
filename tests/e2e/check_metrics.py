#!/usr/bin/python3
"""check_metrics.py FILE EXPECT...: parses a /metrics text with a real
parser (python3-prometheus-client's), runs `promtool check metrics` on it
when promtool is installed, and checks each EXPECT:

    NAME{label=value,...}=N     the sample exists and equals N
    NAME{label=value,...}>=N    the sample exists and is at least N

Exits 0 when every check holds; otherwise prints what differs, exits 1.
"""
import re
import shutil
import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families

EXPECT_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?(>=|=)([0-9.eE+-]+)$")


def main():
    path, expects = sys.argv[1], sys.argv[2:]
    text = open(path, encoding="utf-8").read()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    bad = []
    promtool = shutil.which("promtool")
    if promtool:
        p = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True, check=False)
        if p.returncode != 0:
            bad.append("promtool check metrics: " + (p.stdout + p.stderr).decode().strip())
    for e in expects:
        m = EXPECT_RE.match(e)
        if not m:
            bad.append(f"bad expectation {e!r}")
            continue
        name, labels, op, want = m.group(1), m.group(2), m.group(3), float(m.group(4))
        key = tuple(sorted(tuple(kv.split("=", 1)) for kv in labels.split(","))) if labels else ()
        got = samples.get((name, key))
        if got is None:
            bad.append(f"{e}: no such sample")
        elif (op == "=" and got != want) or (op == ">=" and got < want):
            bad.append(f"{e}: got {got}")
    for b in bad:
        print(b)
    print(f"check_metrics: {len(expects)} expectations, {len(samples)} samples, "
          f"promtool {'yes' if promtool else 'not installed'}, {len(bad)} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
