#!/usr/bin/env python3
"""Turns bench/run.sh's raw JSON lines into the results table (Markdown on stdout).

    summarize.py [--max-other F] RESULTS.jsonl [MEMORY.jsonl]

Each RESULTS line is one fmp-loadgen --json run labelled "scenario|contender|rep"; MEMORY lines add
RSS readings for the same labels. A run is "noisy" when processes other than the contender, the
upstream and the load generator used more than F of a core during its measured window; medians are
taken over clean runs, or over all runs (marked †) when none was clean.
"""

import argparse
import json
import statistics
import sys

CONTENDERS = ["direct", "nginx", "haproxy", "fmp"]
NAMES = {"direct": "no proxy (plain HTTP)", "nginx": "nginx", "haproxy": "HAProxy",
         "fmp": "fhir-mtls-proxy"}
SCENARIOS = {
    "keepalive-50": "keep-alive, 50 conns, GET Patient",
    "handshake-full": "full mTLS handshake per request, 50 conns (ECDSA P-256)",
    "handshake-resumed": "resumed TLS session per request, 50 conns",
    "sequential-1": "1 connection, sequential (latency)",
    "bundle-1mib": "POST 1 MiB transaction Bundle, 4 conns",
    "stream": "streamed big response, 1 conn",
    "idle": "idle mTLS connections (RSS per connection)",
    "handshake-full-rsa": "full mTLS handshake per request, 50 conns (RSA-2048)",
}
BUSY_LIMIT = 0.95


def load(path):
    rows = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    rows.append(json.loads(line))
    except FileNotFoundError:
        pass
    return rows


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=1, unit=""):
    if v is None:
        return "–"
    if abs(v) >= 1000 and digits <= 1:
        return f"{v:,.0f}{unit}"
    return f"{v:,.{digits}f}{unit}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}×"


def is_clean(run, max_other):
    return run["cpu"]["other_cores"] <= max_other and run["cpu"]["valid"]


def rep_ratios(runs, scen, other, max_other):
    """fhir-mtls-proxy's CPU per request over OTHER's, repetition by repetition ("0.79/0.90*"):
    every repetition, the ones where either run was not clean marked with *."""
    def by_rep(contender):
        return {r["label"].split("|")[2]: r for r in runs.get((scen, contender), [])}
    mine, theirs = by_rep("fmp"), by_rep(other)
    reps = sorted(set(mine) & set(theirs), key=int)
    return "/".join(
        ratio(mine[r]["cpu"]["proxy_us_per_request"],
              theirs[r]["cpu"]["proxy_us_per_request"]).rstrip("×")
        + ("" if is_clean(mine[r], max_other) and is_clean(theirs[r], max_other) else "*")
        for r in reps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-other", type=float, default=0.05)
    ap.add_argument("results")
    ap.add_argument("memory", nargs="?")
    args = ap.parse_args()

    runs = {}
    for r in load(args.results):
        scenario, contender, _rep = r["label"].split("|")
        if scenario.startswith("preflight"):
            continue
        runs.setdefault((scenario, contender), []).append(r)
    memory = {}
    for m in load(args.memory) if args.memory else []:
        scenario, contender, _rep = m["label"].split("|")
        memory[(scenario, contender)] = m["mem"]

    # One summary per (scenario, contender).
    summary = {}
    for key, rs in runs.items():
        clean = [r for r in rs if is_clean(r, args.max_other)]
        use = clean or rs
        s = {
            "n": len(rs), "clean": len(clean), "dagger": not clean,
            "rps": med(r["rps"] for r in use),
            "mbps": med(r["mb_per_s"] for r in use),
            "p50": med(r["latency_ms"]["p50"] for r in use),
            "p99": med(r["latency_ms"]["p99"] for r in use),
            "p999": med(r["latency_ms"]["p99.9"] for r in use),
            "max": med(r["latency_ms"]["max"] for r in use),
            "cpu": (med(r["cpu"]["proxy_us_per_request"] for r in use)
                    if key[1] != "direct" and key[0] != "idle" else None),
            "busy": (med(r["cpu"]["proxy_busy"] for r in use)
                     if key[1] != "direct" and key[0] != "idle" else None),
            "other": med(r["cpu"]["other_cores"] for r in rs),
            "errors": sum(r["errors"]["total"] for r in rs),
            "non200": sum(n for r in rs for code, n in r["status"].items() if code != "200"),
            "resumed": sum(r["handshakes"]["resumed"] for r in rs),
            "full": sum(r["handshakes"]["full"] for r in rs),
            "established": max((r.get("idle_established", 0) for r in rs), default=0),
        }
        mem = memory.get(key)
        s["mem_text"], s["mem_value"] = "", None
        if mem and "hwm_kib" in mem:
            s["mem_value"] = mem["hwm_kib"] / 1024
            s["mem_text"] = f"peak RSS {s['mem_value']:.1f} MiB"
        elif mem and "rss_after_kib" in mem:
            n = mem.get("established") or 0
            if n:
                s["mem_value"] = (mem["rss_after_kib"] - mem["rss_before_kib"]) / n
                s["mem_text"] = f"{s['mem_value']:.1f} KiB/conn ({n} conns)"
        summary[key] = s

    print("### fhir-mtls-proxy vs nginx vs HAProxy")
    print()
    print("Medians of clean runs (runs where other processes took more than "
          f"{args.max_other * 100:.0f}% of a core are discarded; † = no clean run, median of all runs; "
          "in the per-repetition ratios, * marks a repetition that was not clean). "
          "Proxy CPU is utime+stime of the contender's process(es) over the measured window divided "
          "by completed requests; ratios are fhir-mtls-proxy ÷ the other (below 1 = "
          "fhir-mtls-proxy cheaper/faster/smaller). \"rig-bound\": the contender was under "
          f"{BUSY_LIMIT * 100:.0f}% busy, so the load generator/upstream core, not the proxy, "
          "set the pace.")
    print()
    print("| scenario | contender | proxy CPU µs/req | ratio vs nginx | ratio vs HAProxy | req/s "
          "(MB/s) | p50 ms | p99 ms | p99.9 ms | proxy busy | memory | clean runs | notes |")
    print("|---|---|---:|---|---|---:|---:|---:|---:|---:|---|---:|---|")
    scenarios = [s for s in SCENARIOS if any((s, c) in summary for c in CONTENDERS)]
    for scen in scenarios:
        direct = summary.get((scen, "direct"))
        for c in CONTENDERS:
            s = summary.get((scen, c))
            if not s:
                continue
            ratios = {"nginx": "", "haproxy": ""}
            if c == "fmp":
                for other in ("nginx", "haproxy"):
                    o = summary.get((scen, other))
                    if not o:
                        continue
                    if scen == "idle":
                        ratios[other] = "mem " + ratio(s["mem_value"], o["mem_value"])
                    elif scen == "stream":
                        ratios[other] = (f"CPU {ratio(s['cpu'], o['cpu'])} · MB/s "
                                         f"{ratio(s['mbps'], o['mbps'])} · peak RSS "
                                         f"{ratio(s['mem_value'], o['mem_value'])}")
                    else:
                        ratios[other] = (f"CPU {ratio(s['cpu'], o['cpu'])} · req/s "
                                         f"{ratio(s['rps'], o['rps'])} · p99 "
                                         f"{ratio(s['p99'], o['p99'])}")
            notes = []
            if s["busy"] is not None and s["busy"] < BUSY_LIMIT and scen not in ("idle",):
                notes.append("rig-bound")
            if s["errors"]:
                notes.append(f"{s['errors']} errors")
            if s["non200"]:
                notes.append(f"{s['non200']} non-200")
            if scen.startswith("handshake") and c != "direct":
                notes.append(f"handshakes {s['full']} full / {s['resumed']} resumed")
            if c == "fmp" and scen not in ("idle", "stream") and s["n"] > 1:
                for other in ("nginx", "haproxy"):
                    per_rep = rep_ratios(runs, scen, other, args.max_other)
                    if per_rep:
                        notes.append(f"CPU vs {NAMES[other]} per repetition {per_rep}")
            if scen == "sequential-1" and direct and c != "direct" and s["p50"] is not None:
                notes.append(f"p50 +{(s['p50'] - direct['p50']) * 1000:.0f} µs over no proxy")
            if s["other"] and s["other"] > args.max_other:
                notes.append(f"other load {s['other'] * 100:.0f}% of a core (median)")
            tput = fmt(s["mbps"], 1) + " MB/s" if scen == "stream" else fmt(s["rps"], 1)
            if scen == "idle":
                tput = "–"
            clean = f"{s['clean']}/{s['n']}" + (" †" if s["dagger"] else "")
            busy = "–" if s["busy"] is None else f"{s['busy'] * 100:.0f}%"
            print(f"| {SCENARIOS[scen]} | {NAMES[c]} | {fmt(s['cpu'], 1)} | {ratios['nginx']} | "
                  f"{ratios['haproxy']} | {tput} | {fmt(s['p50'], 3)} | {fmt(s['p99'], 3)} | "
                  f"{fmt(s['p999'], 3)} | "
                  f"{busy} | "
                  f"{s['mem_text'] or '–'} | {clean} | {'; '.join(notes)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
