"""The soak's verdicts and its report: memory flat after warm-up, Envoy and devgate healthy, devgate's
counters against what the driver got, and the Markdown written to target/soak-report*.md.
bench/soak.py describes the soak."""

from __future__ import annotations

import json
import re

from soak_common import (
    ARTEFACT,
    ENVOY_CRASH,
    LOGIN_PEERS,
    NATIVE,
    RSS_MARGIN,
    STATS,
    THREADS_MARGIN,
    TROUBLE,
    WARMUP_FRACTION,
    WASM_MARGIN,
    harness,
)
from soak_driver import bucket_upper_ms, new_class_stats
from soak_sample import SAMPLE_ALIGN, SAMPLE_HEADER, Sample, mib, sample_row
from soak_traffic import TrafficClass

def margin(value: int, rule: tuple) -> int:
    """How much `value` may grow under `rule` (fraction, floor): the larger of the two."""
    frac, floor = rule
    return max(int(value * frac), floor)


# What must stay flat after warm-up, per host: (label, Sample field, margin).
FLAT = [("Envoy RSS (VmRSS)", "rss", RSS_MARGIN),
        ("Envoy heap in use (server.memory_allocated)", "heap", RSS_MARGIN),
        ("Envoy threads", "threads", THREADS_MARGIN)]
if not NATIVE:
    FLAT.append(("Wasm linear memory, all VMs", "wasm_size", WASM_MARGIN))


def memory_checks(samples: list[Sample], duration: float) -> tuple[list[dict], Sample | None, Sample | None]:
    """Each FLAT figure's growth from the first sample after warm-up to the last, against its margin."""
    after = [s for s in samples if s.t >= WARMUP_FRACTION * duration]
    if len(after) < 2:
        return [], None, None
    base, end = after[0], after[-1]
    out = []
    for label, attr, rule in FLAT:
        b, e = getattr(base, attr), getattr(end, attr)
        peak = max(getattr(s, attr) for s in after)
        allowed = margin(b, rule)
        out.append({"what": label, "base": b, "end": e, "peak": peak, "growth": e - b, "allowed": allowed,
                    "ok": e - b <= allowed, "rule": rule_text(attr, rule)})
    return out, base, end


def rule_text(attr: str, rule: tuple) -> str:
    """A margin in words."""
    if attr == "threads":
        return "none more" if rule == (0.0, 0) else f"{int(rule[0] * 100)}% or {rule[1]}"
    return f"{int(rule[0] * 100)}% or {rule[1] >> 20} MiB"


def percentile_ms(hist: list[int], q: float) -> float | None:
    """The q-quantile of a latency histogram, in milliseconds (a bucket's upper bound)."""
    n = sum(hist)
    if not n:
        return None
    want = q * n
    acc = 0
    for i, c in enumerate(hist):
        acc += c
        if acc >= want:
            return bucket_upper_ms(i)
    return bucket_upper_ms(len(hist) - 1)


def merge_stats(finals: list[dict]) -> dict:
    """The driver processes' tallies, added up per class."""
    out: dict = {}
    for stats in finals:
        for name, st in stats.items():
            m = out.setdefault(name, new_class_stats())
            for k, v in st["statuses"].items():
                m["statuses"][k] = m["statuses"].get(k, 0) + v
            m["unexpected"] += st["unexpected"]
            m["errors"] += st["errors"]
            m["examples"] += st["examples"]
            m["connects"] += st["connects"]
            m["latency"] = [a + b for a, b in zip(m["latency"], st["latency"])]
    return out


# The counters of the host's machinery that must not move during the load (a VM reloaded or torn
# down); devgate's own that must stay 0 are HEALTH_ZERO. vm0 holds their values before the load.
VM_STATS = () if NATIVE else ("wasm.envoy.wasm.runtime.v8.active", "wasm.envoy.wasm.runtime.v8.created",
                              "wasm.wasm_vm_count")
HEALTH_ZERO = ((() if NATIVE else ("wasm.devgate.vm_reload", "wasm.devgate.vm_reload_backoff",
                                   "wasm.devgate.vm_reload_failure", "wasm.devgate.vm_reload_success"))
               + (f"{STATS}.devgate.requests.denied.internal_error", f"{STATS}.devgate.login.internal_error",
                  f"{STATS}.devgate.config.rejected"))


def vm_baseline(env: harness.Envoy) -> dict:
    """VM_STATS now (empty natively)."""
    return {n: env.counters("^" + re.escape(n) + "$").get(n, 0) for n in VM_STATS}


def trouble_lines(env: harness.Envoy) -> list[str]:
    """Envoy's log lines that mean trouble on this host (a Wasm trap or VM failure; a panic caught by
    the native module) or a crash of Envoy, from the log as written so far (flushed first while
    Envoy runs)."""
    text = env.flushed_log_text() if env.alive() else env.log_text()
    return [line for line in text.splitlines() if TROUBLE.search(line) or ENVOY_CRASH.search(line)]


def devgate_health(env: harness.Envoy, vm0: dict) -> tuple[list[str], list[str], dict]:
    """(counter problems, trouble_lines(), the counters looked at); both lists empty when devgate
    (and on the Wasm host its VMs) stayed healthy."""
    problems = []
    now = {n: env.counters("^" + re.escape(n) + "$").get(n, 0) for n in HEALTH_ZERO + VM_STATS}
    for n in HEALTH_ZERO:
        if now[n]:
            problems.append(f"{n} = {now[n]}")
    for n in VM_STATS:
        if now[n] != vm0[n]:
            problems.append(f"{n} went from {vm0[n]} to {now[n]} (a VM was created or torn down)")
    return problems, trouble_lines(env), now


def devgate_counters(env: harness.Envoy) -> dict:
    """devgate's request and login counters that are not 0."""
    return {k: v for k, v in env.counters(rf"^{STATS}\.devgate\.(requests|login)\.").items() if v}


# What devgate must have counted for each class's answers: (class, status or None for all) -> counter.
COUNTED = [(name, status, f"{STATS}.devgate.{counter}") for name, status, counter in [
    ("network_dev", None, "requests.allowed.network"),
    ("bearer", None, "requests.allowed.bearer"),
    ("session", None, "requests.allowed.session"),
    ("api_private", None, "requests.allowed.private_key"),
    ("public", None, "requests.allowed.anonymous"),
    ("deny_anonymous", None, "requests.denied.no_credential"),
    ("deny_expired", None, "requests.denied.expired"),
    ("deny_product", None, "requests.denied.wrong_product"),
    ("failed_login", 401, "login.failed"),
    ("failed_login", 429, "login.rate_limited"),
]]


def counter_check(merged: dict, c0: dict, c1: dict) -> list[tuple[str, str, int, int]]:
    """[(class/status, counter, driver's answers, counter delta)] over the load; the counters not
    listed in COUNTED must not have moved at all."""
    rows = []
    for name, status, counter in COUNTED:
        st = merged.get(name, new_class_stats())["statuses"]
        n = sum(st.values()) if status is None else st.get(status, 0)
        rows.append((name if status is None else f"{name} {status}", counter, n, c1.get(counter, 0) - c0.get(counter, 0)))
    listed = {c for _, _, c in COUNTED}
    for counter in sorted(set(c0) | set(c1)):
        if counter not in listed and c1.get(counter, 0) != c0.get(counter, 0):
            rows.append(("(none)", counter, 0, c1.get(counter, 0) - c0.get(counter, 0)))
    return rows


def report(meta: dict, classes: list[TrafficClass], merged: dict, samples: list[Sample], mem: list[dict],
           base: Sample | None, end: Sample | None, failures: list[str], counted: list,
           health_counters: dict) -> str:
    """The Markdown report."""
    d = meta["duration_s"]
    total = sum(sum(st["statuses"].values()) for st in merged.values())
    lines = [
        f"# devgate soak: {'the native module (libdevgate.so)' if NATIVE else 'the Wasm filter (devgate.wasm)'}",
        "",
        f"- date: {meta['date']}; result: **{'PASS' if not failures else 'FAIL'}**",
        f"- machine: {meta['nproc']} CPUs, {meta['cpu_model']}, Linux {meta['kernel']} (shared with other work)",
        f"- Envoy {meta['envoy_version']} `--concurrency {meta['concurrency']}`, PID {meta['pid']}; "
        f"devgate {meta['revision']}, {ARTEFACT} {meta['artefact_bytes']:,} bytes",
        f"- command: `{meta['command']}`",
        f"- load: {d} s (warm-up: the first {WARMUP_FRACTION:.0%}, {d * WARMUP_FRACTION:.0f} s); driver "
        f"{meta['workers']} processes × {meta['closed_lanes']} closed-loop keep-alive connections, plus failed "
        f"logins paced at {meta['login_rate']}/s from {len(LOGIN_PEERS)} rotating addresses; samples every "
        f"{meta['sample_s']} s",
        f"- answers: {total:,} in {meta['load_s']:.0f} s = **{total / max(meta['load_s'], 1e-9):,.0f} req/s**; "
        f"Envoy counted {meta['envoy_rq']:,} downstream requests (the driver's plus the setup's); "
        f"Envoy CPU {meta['envoy_cpu_pct']:.0f}% of a core (worker thread {meta['worker_cpu_pct']:.0f}%), "
        f"whole machine busy {meta['host_busy_pct']:.0f}% of {meta['nproc']} CPUs",
        f"- where the CPU went (% of one core): devgate's Envoy {meta['envoy_cpu_pct']:.0f}, upstream Envoy "
        f"{meta['upstream_cpu_pct']:.0f}, driver {meta['driver_cpu_pct']:.0f}, other processes on the machine "
        f"{meta['other_cpu_pct']:.0f}, interrupts (the kernel's loopback TCP work) {meta['irq_cpu_pct']:.0f}",
        "",
        "## Traffic classes",
        "",
        "| class | what | source | expected | answers | req/s | statuses | unexpected | socket errors | "
        "connects | p50 ms | p99 ms |",
        "|---|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for tc in classes:
        st = merged.get(tc.name, new_class_stats())
        n = sum(st["statuses"].values())
        src = tc.sources[0] if len(tc.sources) == 1 else f"{tc.sources[0]}–{tc.sources[-1].rsplit('.', 1)[1]}"
        statuses = ", ".join(f"{k}: {v:,}" for k, v in sorted(st["statuses"].items())) or "–"
        p50, p99 = percentile_ms(st["latency"], 0.5), percentile_ms(st["latency"], 0.99)
        lines.append(f"| {tc.name} | {tc.what} | {src} | {'/'.join(map(str, tc.statuses))} | {n:,} | "
                     f"{n / max(meta['load_s'], 1e-9):,.1f} | {statuses} | {st['unexpected']} | {st['errors']} | "
                     f"{st['connects']} | {'–' if p50 is None else f'{p50:.2f}'} | "
                     f"{'–' if p99 is None else f'{p99:.2f}'} |")
    lines += ["", "(Latency from histogram buckets of 2^¼: upper bounds, ±19%.)", ""]

    lines += ["## Memory", "",
              f"After warm-up = the first sample at or after {WARMUP_FRACTION:.0%} of the run"
              + (f" (t = {base.t:.0f} s)" if base else "") + "; end = the last sample under load"
              + (f" (t = {end.t:.0f} s)" if end else "") + ".", "",
              "| what | after warm-up | end | peak after warm-up | growth | allowed | |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for m in mem:
        if m["what"].startswith("Wasm"):
            f = (lambda x: f"{x / 1024:,.0f} KiB")
        elif "threads" in m["what"]:
            f = (lambda x: f"{x:,}")
        else:
            f = (lambda x: f"{mib(x)} MiB")
        lines.append(f"| {m['what']} | {f(m['base'])} | {f(m['end'])} | {f(m['peak'])} | "
                     f"{'+' if m['growth'] >= 0 else ''}{f(m['growth'])} | {f(m['allowed'])} ({m['rule']}) | "
                     f"{'ok' if m['ok'] else '**GREW**'} |")
    if samples:
        first = samples[0]
        vms = "" if NATIVE else (f", Wasm linear memory {first.wasm_size // 1024} KiB in {first.wasm_vms} VMs "
                                 f"(wasm.wasm_vm_count {first.vm_count})")
        lines += ["", f"At the start of the load (t = {first.t:.0f} s): RSS {mib(first.rss)} MiB, heap in use "
                  f"{mib(first.heap)} MiB, {first.threads} threads{vms}."]
    if base and end and end.rq_total > base.rq_total:
        n = end.rq_total - base.rq_total
        wasm = "" if NATIVE else f", the Wasm margin one of {margin(base.wasm_size, WASM_MARGIN) / n:.2f} bytes per request"
        lines += ["", f"Sensitivity: {n:,} requests between the two samples, so the RSS margin would catch a "
                  f"leak of {margin(base.rss, RSS_MARGIN) / n:.1f} bytes per request or more{wasm}."]
    lines += ["", "Why these margins: Envoy's RSS and tcmalloc heap move by a few MiB without any leak (tcmalloc "
              "keeps freed spans in per-thread and central caches and returns them to the kernel lazily; the "
              "admin requests of the sampler and connection buffers come and go), so 10% of ~100 MiB or 5 MiB is "
              "noise, not growth. Envoy's threads are a fixed set once it serves (natively the module's login "
              "pool and revocation ticker among them): one more is a leak. "
              + ("The native module has no sandbox: its allocations are Envoy's own (Envoy's tcmalloc serves "
                 "the module's malloc), so a leak in devgate grows Envoy's heap and RSS, which is what is "
                 "measured." if NATIVE else
                 "A Wasm VM's linear memory is about 1 MiB, grows in 64 KiB pages and never "
                 "shrinks, so 5 MiB would hide a fivefold growth: its margin is 10% or 1 MiB (16 pages). Envoy 1.40 "
                 "has no per-VM memory stat (only wasm.wasm_vm_count and wasm.envoy.wasm.runtime.v8.active/created), "
                 "so the linear memories are read from /proc/PID/smaps: each is the read-write start of V8's 8 GiB "
                 "reservation for it; their number is checked against wasm.wasm_vm_count."), ""]

    lines += ["## Time series", "", SAMPLE_HEADER, SAMPLE_ALIGN]
    lines += [sample_row(s) for s in samples]

    lines += ["", "## Envoy and devgate" + ("" if NATIVE else " (the Wasm VMs)"), ""]
    lines += [f"- same Envoy process throughout: PID {meta['pid']}, exe {meta['exe']}"
              + ("" if not meta["restart_problems"] else ": **NO**: " + "; ".join(meta["restart_problems"]))]
    lines += [f"- `{k}`: {v}" for k, v in health_counters.items()]
    lines += [f"- Envoy log lines matching {TROUBLE.pattern!r} or {ENVOY_CRASH.pattern!r}: {meta['log_trouble']}"]
    lines += ["", f"devgate's own counters over the load (`{STATS}.devgate.*`) against what the driver got:", "",
              "| class | counter | driver's answers | counter moved by | |", "|---|---|---:|---:|---|"]
    lines += [f"| {what} | `{counter}` | {n:,} | {delta:,} | {'ok' if n == delta else '**differs**'} |"
              for what, counter, n, delta in counted]

    examples = [(tc.name, ex) for tc in classes for ex in merged.get(tc.name, new_class_stats())["examples"]]
    if examples:
        lines += ["", "## Unexpected answers (first few per class and worker)", ""]
        for name, ex in examples:
            hdrs = json.dumps(ex["headers"]) if ex["headers"] else ""
            lines.append(f"- {name} at {ex['time']} from {ex['source']} (worker {ex['worker']}): {ex['kind']}: "
                         f"{ex['detail']}; headers {hdrs}; request `{ex['request']!r}`")
    lines += ["", "## Verdict", ""]
    ran = "Envoy and devgate ran throughout" if NATIVE else "Envoy and its Wasm VMs ran throughout"
    lines += [f"- FAIL: {f}" for f in failures] or [f"- PASS: every answer was the expected one, {ran}, "
                                                    "memory and threads stayed flat."]
    return "\n".join(lines) + "\n"
