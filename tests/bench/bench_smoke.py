#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Smoke test of hintmig-bench: a tiny matrix (64 MiB guests, one
repetition) over TCP and over UNIX, with --json and --plot. Every run must
complete and verify bit for bit (0 mismatching pages), the JSON must hold
every planned run and the aggregates, and the plot must be an SVG.

Usage: bench_smoke.py PATH/TO/hintmig-bench PATH/TO/hm-absent
Exit 0 pass, 1 fail, 77 skip (userfaultfd-wp refused or absent; under
HINTMIG_TEST_STRICT=1 only when hm-absent confirms that it is absent)."""
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HM_ABSENT = None  # path of tests/hm-absent, from the command line
SKIP_HINTS = ("Operation not permitted", "Operation not supported",
              "Function not implemented")


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def skip(msg, kind):
    """Skip for want of `kind` (a tests/hm_absent.h reason); under strict
    mode only when hm-absent confirms the absence."""
    print("SKIP: " + msg, file=sys.stderr)
    strict = os.environ.get("HINTMIG_TEST_STRICT", "")
    if strict and strict != "0":
        p = subprocess.run([HM_ABSENT, kind], capture_output=True, text=True)
        if p.returncode != 0:
            print("FAIL: skipped for want of %s, but this machine has it "
                  "(%s); HINTMIG_TEST_STRICT=1 allows only confirmed "
                  "absences" % (kind, p.stdout.strip()), file=sys.stderr)
            sys.exit(1)
        print("strict: absence confirmed: " + p.stdout.strip(),
              file=sys.stderr)
    sys.exit(77)


def planned(bench, args):
    out = subprocess.run([bench] + args + ["--list"], check=True,
                         capture_output=True, text=True).stdout
    last = out.strip().splitlines()[-1]
    return int(last.split()[0])


def run(bench, tmp, name, args):
    js = os.path.join(tmp, name + ".json")
    svg = os.path.join(tmp, name + ".svg")
    want = planned(bench, args)
    cmd = [bench] + args + ["--json", js, "--plot", svg, "--no-progress"]
    print("+ " + " ".join(cmd), file=sys.stderr)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    sys.stderr.write(p.stderr)
    sys.stdout.write(p.stdout)
    if not os.path.exists(js):
        fail("%s: no JSON written (exit %d)" % (name, p.returncode))
    with open(js) as f:
        doc = json.load(f)
    runs = doc.get("runs", [])
    if runs and all(r["status"] != "completed" for r in runs) and \
            any(h in r["error"] for r in runs for h in SKIP_HINTS):
        skip("%s: every run failed: %s" % (name, runs[0]["error"]),
             "uffd-wp")
    if p.returncode != 0:
        fail("%s: hintmig-bench exited %d" % (name, p.returncode))
    if len(runs) != want:
        fail("%s: %d runs in the JSON, %d planned" % (name, len(runs), want))
    modes = set()
    for r in runs:
        tag = "%s run %d (config %d, %s)" % (name, r["seq"], r["config"],
                                             r["hints-mode"])
        if r["status"] != "completed":
            fail("%s: status %s: %s" % (tag, r["status"], r["error"]))
        if r["verify"]["mismatches"] != 0:
            fail("%s: %s mismatching pages" % (tag, r["verify"]["mismatches"]))
        if r["verify"]["pages-checked"] <= 0:
            fail("%s: nothing verified" % tag)
        if r["verify"]["pages-checked"] * 4096 > r["ram"]["total"]:
            fail("%s: checked more pages than the guest has" % tag)
        if r["ram"]["transferred"] <= 0 or r["total-time"] <= 0:
            fail("%s: no transfer recorded" % tag)
        if not r["raw-bytes-per-s"] or r["physical-limit-ms"] <= 0:
            fail("%s: no physical limit" % tag)
        if r["hints-mode"] != "none" and r["ram"]["skipped-hinted"] == 0:
            fail("%s: hints on, yet nothing skipped as hinted" % tag)
        if r["hints-mode"] == "none" and r["ram"]["skipped-hinted"] != 0:
            fail("%s: hints off, yet pages skipped as hinted" % tag)
        modes.add(r["hints-mode"])
    if modes != {"none", "free", "isolated"}:
        fail("%s: modes run: %s" % (name, sorted(modes)))
    for c in doc["configs"]:
        for m, agg in c["modes"].items():
            if agg["failed"] or agg["mismatches"]:
                fail("%s: config %d %s: aggregate reports failures" %
                     (name, c["index"], m))
            if agg["total-time-ms"]["n"] != agg["runs"]:
                fail("%s: config %d %s: aggregate over %d of %d runs" %
                     (name, c["index"], m, agg["total-time-ms"]["n"],
                      agg["runs"]))
    root = ET.parse(svg).getroot()
    if not root.tag.endswith("svg"):
        fail("%s: the plot is not an SVG" % name)
    print("%s: %d runs, all completed and verified" % (name, len(runs)),
          file=sys.stderr)
    return doc


def main():
    global HM_ABSENT
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    bench, HM_ABSENT = sys.argv[1], sys.argv[2]
    tiny = ["--ram", "64M", "--reps", "1", "--raw-bytes", "64M",
            "--window", "200"]
    certs = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         "..", "migration", "engine", "tls_certs.sh")
    with tempfile.TemporaryDirectory(prefix="hm-bench-smoke-") as tmp:
        # the quick preset's tls group: plain and TLS side by side
        pki = os.path.join(tmp, "pki")
        if subprocess.run(["bash", certs, pki]).returncode != 0:
            fail("cannot make test certificates (certtool, gnutls-bin)")
        doc = run(bench, tmp, "tcp", ["--preset", "quick", "--tls-dir",
                                      os.path.join(pki, "good")] + tiny)
        tls_cfgs = {c["index"] for c in doc["configs"] if c.get("tls")}
        if not tls_cfgs:
            fail("tcp: no TLS configuration in the quick preset")
        for r in doc["runs"]:
            on = r["config"] in tls_cfgs
            if on != r.get("tls", "").startswith("TLS"):
                fail("tcp run %d: config tls=%s, the run says %r" %
                     (r["seq"], on, r.get("tls")))
        run(bench, tmp, "unix", ["--transport", "unix", "--free", "75%",
                                 "--dirty-rate", "20k",
                                 "--hints", "none,free,isolated"] + tiny)
    print("PASS bench-smoke", file=sys.stderr)


if __name__ == "__main__":
    main()
