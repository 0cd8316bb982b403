"""The report: the figures of every round summarised per variant, as Markdown, with the native
module's goals and both builds side by side."""

from __future__ import annotations

import statistics

from benchlib.common import NOISY_PCT
from benchlib.variants import Variant


# The goals the native module was built to meet, checked against the same run: the variant, the
# anchor it is compared with, and what each figure must be.
NATIVE_GOALS = [
    # (variant, minimum x baseline, anchor variant, max ratio of added work to the anchor's, note)
    ("native_network", 0.90, "basic_auth", 1.5, "and within 0.05 of basic_auth's x baseline"),
    ("native_bearer", 0.85, "jwt_authn", 0.5, ""),
    ("native_cookie", 0.85, "jwt_authn", 0.5, ""),
    ("native_api_key", 0.85, None, None, ""),
]


def goals_markdown(summary: dict, added_key: str, unit: str) -> list[str]:
    """The native goals next to this run's figures (`added_key`: the summary's added-work figure)."""
    rows = []
    for name, min_ratio, anchor, max_times, note in NATIVE_GOALS:
        x = summary.get(name)
        if not x:
            continue
        ratio = x.get("ratio")
        cells = [name]
        if ratio is not None:
            ok = ratio >= min_ratio
            if name == "native_network" and summary.get("basic_auth", {}).get("ratio") is not None:
                ok = ok and ratio >= summary["basic_auth"]["ratio"] - 0.05
            cells.append(f"{ratio:.3f} (goal ≥ {min_ratio:.2f}{' ' + note if note else ''}): "
                         f"{'met' if ok else 'NOT met'}")
        else:
            cells.append("–")
        a = summary.get(anchor, {}) if anchor else {}
        # An anchor whose added work is within noise of zero (timed runs) gives no ratio.
        if anchor and x.get(added_key) is not None and (a.get(added_key) or 0) > 0:
            times = x[added_key] / a[added_key]
            shown = f"{x[added_key]:+,.0f}" if unit.startswith("instructions") else f"{x[added_key]:+.1f}"
            cells.append(f"{shown} {unit} = {times:.2f} × {anchor}'s "
                         f"(goal ≤ {max_times:g}): {'met' if times <= max_times else 'NOT met'}")
        else:
            cells.append("–")
        rows.append("| " + " | ".join(cells) + " |")
    if not rows:
        return []
    return ["", "Native module goals, this run:", "",
            "| variant | × baseline | added work vs anchor |", "|---|---|---|"] + rows


# Each devgate path as (what, Wasm variant, native variant); the anchors beside them.
PATHS = [
    ("network developer", "devgate_network", "native_network"),
    ("Bearer token", "devgate_bearer", "native_bearer"),
    ("cookie token", "devgate_cookie", "native_cookie"),
    ("private API key", "devgate_api_key", "native_api_key"),
    ("401 (answered without the upstream)", "devgate_deny", "native_deny"),
    ("edge assertion, ES256, cache hit (one token)", "devgate_assertion", "native_assertion"),
    ("edge assertion, ES256, cache miss (a new token each request; bench-calls only)", "devgate_assertion_miss",
     "native_assertion_miss"),
]
ANCHORS = [
    ("no filter (the baseline)", "baseline", "baseline"),
    ("no-op filter: empty proxy-wasm (Wasm column), devgate-noop (native column)", "empty_wasm", "native_noop"),
    ("Envoy `basic_auth` (anchor, no devgate)", "basic_auth", "basic_auth"),
    ("Envoy `jwt_authn`, same HS256 token (anchor, no devgate)", "jwt_authn", "jwt_authn"),
    ("Envoy `jwt_authn`, same ES256 token, no cache (anchor, no devgate)", "jwt_authn_es256", "jwt_authn_es256"),
    ("Envoy `jwt_authn`, same ES256 token, `jwt_cache_config` (anchor, no devgate)", "jwt_authn_es256_cached",
     "jwt_authn_es256_cached"),
]

# Edge assertions against what they are priced by (issue #23's numbers): (what, Wasm variant, native
# variant, the Wasm variant's yardstick, the native one's, whether the variant must not exceed it).
ASSERTION_COMPARISONS = [
    ("cached assertion vs devgate's own HS256 token (Bearer)", "devgate_assertion", "native_assertion",
     "devgate_bearer", "native_bearer", True),
    ("cached assertion vs `jwt_authn` ES256 with its JWT cache", "devgate_assertion", "native_assertion",
     "jwt_authn_es256_cached", "jwt_authn_es256_cached", False),
    ("uncached assertion (ES256 verify) vs `jwt_authn` ES256 without cache", "devgate_assertion_miss",
     "native_assertion_miss", "jwt_authn_es256", "jwt_authn_es256", False),
]


def assertion_markdown(summary: dict, added_key: str, unit: str) -> list[str]:
    """Edge assertions next to devgate's own token path and to `jwt_authn` doing the same, as added
    work (`added_key` of this run's `summary`) and its ratio to the yardstick's; a comparison of
    which this run has neither pair is left out."""
    def cell(variant: str, yardstick: str, bound: bool) -> str:
        x, y = summary.get(variant, {}).get(added_key), summary.get(yardstick, {}).get(added_key)
        if x is None or y is None:
            return "–"
        shown = (lambda v: f"{v:+,.0f}") if unit.startswith("instructions") else (lambda v: f"{v:+.1f}")
        text = f"{shown(x)} vs {yardstick}'s {shown(y)} {unit}"
        # A yardstick within noise of zero (timed runs) gives no ratio.
        if y > 0:
            text += f" = {x / y:.2f}×"
            if bound:
                text += ": met" if x <= y else ": NOT met"
        return text

    rows = []
    for what, wasm, native, wasm_ref, native_ref, bound in ASSERTION_COMPARISONS:
        cells = [cell(wasm, wasm_ref, bound), cell(native, native_ref, bound)]
        if cells != ["–", "–"]:
            rows.append(f"| {what}{' (goal: no more)' if bound else ''} | {cells[0]} | {cells[1]} |")
    if not rows:
        return []
    return ["", "Edge assertions (ES256 ID token, profile oidc, inline JWKS), added work over baseline, this run:", "",
            "| comparison | Wasm (`devgate.wasm`) | native (`libdevgate.so`) |", "|---|---|---|"] + rows


def side_by_side_markdown(summary: dict, cell) -> list[str]:
    """Both builds per path in one table, with the anchors, from this run's `summary`
    (`cell(x)` formats one variant's figures; a variant not in this run shows a dash)."""
    rows = []
    for what, wasm, native in ANCHORS + PATHS:
        if wasm not in summary and native not in summary:
            continue
        shown = [cell(summary[v]) if v in summary else "–" for v in (wasm, native)]
        bold = "" if (wasm, native) in [(w, n) for _, w, n in ANCHORS] else "**"
        rows.append(f"| {bold}{what}{bold} | {shown[0]} | {shown[1]} |")
    if not rows:
        return []
    return ["", "Both builds side by side, this run:", "",
            "| path | Wasm (`devgate.wasm`) | native (`libdevgate.so`) |", "|---|---:|---:|"] + rows


def med(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(names: list[str], rounds: list[dict]) -> dict:
    out = {}
    for name in names:
        runs = [r[name] for r in rounds if name in r]
        ratios = [r[name]["rps"] / r["baseline"]["rps"] for r in rounds if name in r and r["baseline"]["rps"]]
        added = [r[name]["envoy_cpu_us_per_req"] - r["baseline"]["envoy_cpu_us_per_req"] for r in rounds if name in r]
        out[name] = {
            "rps": med([x["rps"] for x in runs]),
            "rps_rounds": [round(x["rps"]) for x in runs],
            "ratio": med(ratios),
            "ratio_min": min(ratios) if ratios else None,
            "ratio_max": max(ratios) if ratios else None,
            "p50_ms": med([x["p50_ms"] for x in runs]),
            "p99_ms": med([x["p99_ms"] for x in runs]),
            "envoy_cpu_us_per_req": med([x["envoy_cpu_us_per_req"] for x in runs]),
            "added_cpu_us_per_req": med(added),
            "upstream_cpu_us_per_req": med([x["upstream_cpu_us_per_req"] for x in runs]),
            "envoy_busy_pct": med([x["envoy_busy_pct"] for x in runs]),
            "envoy_core_busy_pct": med([x["envoy_core_busy_pct"] for x in runs]),
            "wrk_cpu_us_per_req": med([x["wrk_cpu_s"] / max(x["requests"], 1) * 1e6 for x in runs]),
            "other_process_pct": med([x["other_process_pct"] for x in runs]),
            "other_process_pct_max": max(x["other_process_pct"] for x in runs),
            "steal_pct": med([x["steal_pct"] for x in runs]),
            "new_connections": med([x["new_connections"] for x in runs]),
            "wrong_status": sum(x["wrong_status"] for x in runs),
            "socket_errors": sum(x["socket_errors"] for x in runs),
        }
    return out


def fmt(x, spec: str, dash: str = "–") -> str:
    return dash if x is None else format(x, spec)


def markdown(meta: dict, vs: list[Variant], summary: dict, broken: dict) -> str:
    others = [x["other_process_pct"] for x in summary.values()]
    steal = [x["steal_pct"] for x in summary.values()]
    lines = [
        "# devgate benchmark",
        "",
        f"- date: {meta['date']}",
        f"- machine: {meta['nproc']} CPUs, {meta['cpu_model']}, Linux {meta['kernel']}",
        f"- Envoy: {meta['envoy_version']}; wrk: {meta['wrk_version']}",
        f"- devgate: {meta['devgate_revision']}, devgate.wasm {meta['devgate_wasm_bytes']} bytes "
        f"(empty filter: {meta['empty_wasm_bytes']} bytes)",
        f"- command: `{meta['command']}`",
        f"- {meta['rounds']} rounds × {meta['duration_s']} s per variant after {meta['warmup_s']} s of warm-up; "
        f"wrk -t1 -c{meta['connections']} on CPU {meta['load_cpu']}; Envoy under test `--concurrency 1` on CPU "
        f"{meta['envoy_cpu']}; upstream Envoy (direct_response) on CPU {meta['upstream_cpu']}; "
        f"run took {meta['elapsed_s']:.0f} s",
    ]
    if others:
        worst = max(x["other_process_pct_max"] for x in summary.values())
        lines.append(f"- noise: other processes used {statistics.median(others):.1f}% of the benchmark's CPUs "
                     f"(median over variants; worst run {worst:.1f}%), hypervisor steal {statistics.median(steal):.1f}%")
    lines += [
        "",
        "| variant | req/s | × baseline (min–max) | p50 ms | p99 ms | Envoy CPU µs/req | added µs/req "
        "| × empty filter's | Envoy busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    empty = summary.get("empty_wasm", {}).get("added_cpu_us_per_req")
    for v in vs:
        if v.name in broken:
            lines.append(f"| {v.name} | {broken[v.name].replace('|', '/')} | | | | | | | |")
            continue
        x = summary[v.name]
        ratio = f"{x['ratio']:.3f} ({x['ratio_min']:.2f}–{x['ratio_max']:.2f})"
        added = "" if v.name == "baseline" else fmt(x["added_cpu_us_per_req"], "+.1f")
        # The yardstick: added CPU as a multiple of the empty filter's (the V8 floor).
        times = ""
        if v.name != "baseline" and empty and empty > 0 and x["added_cpu_us_per_req"] is not None:
            times = f"{x['added_cpu_us_per_req'] / empty:.2f}"
        lines.append(
            f"| {v.name} | {x['rps']:.0f} | {ratio} | {fmt(x['p50_ms'], '.3f')} | {fmt(x['p99_ms'], '.3f')} | "
            f"{fmt(x['envoy_cpu_us_per_req'], '.1f')} | {added} | {times} | {fmt(x['envoy_busy_pct'], '.0f')}% |"
        )
    lines += ["", "Variants:", ""]
    for v in vs:
        lines.append(f"- `{v.name}` (envoy/bench/{v.config}): {v.what}; expects {v.status}"
                     + (f", identity `{v.identity}`" if v.identity else ""))
    warnings = []
    for v in vs:
        x = summary.get(v.name)
        if not x:
            continue
        if x["wrong_status"]:
            warnings.append(f"{v.name}: {x['wrong_status']} responses during the load had another status "
                            f"than {v.status}: its numbers are suspect")
        if x["socket_errors"]:
            warnings.append(f"{v.name}: {x['socket_errors']} socket errors (wrk)")
        if x["new_connections"] is not None and x["new_connections"] > 2 * meta["connections"]:
            warnings.append(f"{v.name}: {x['new_connections']:.0f} new connections per run: Envoy closed "
                            "connections, so this variant also measures connection setup")
        if x["other_process_pct"] > NOISY_PCT:
            warnings.append(f"{v.name}: other processes used {x['other_process_pct']:.0f}% of the CPUs during "
                            "its runs: the machine was not quiet, compare with care")
        elif x["envoy_core_busy_pct"] is not None and x["envoy_core_busy_pct"] < 90:
            warnings.append(f"{v.name}: the Envoy under test's CPU was busy only {x['envoy_core_busy_pct']:.0f}% "
                            "of the time: it was not the bottleneck (is the load generator's CPU saturated?)")
    if warnings:
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in warnings]
    lines += goals_markdown(summary, "added_cpu_us_per_req", "µs/req")
    lines += assertion_markdown(summary, "added_cpu_us_per_req", "µs/req")
    lines += side_by_side_markdown(
        summary, lambda x: f"{fmt(x['ratio'], '.3f')} × no filter, {fmt(x['added_cpu_us_per_req'], '+.1f')} µs/req")
    lines += [
        "",
        "How to read it: req/s, p50 and p99 are medians over the rounds. × baseline is the median over the "
        "rounds of the variant's req/s divided by baseline's req/s in the same round (each round runs every "
        "variant once, every other round in reverse order), with the lowest and highest round. Envoy CPU µs/req "
        "is the CPU time (user+system, all threads) the variant's Envoy used during a run divided by the "
        "requests completed; added µs/req is that minus baseline's in the same round (median). Envoy busy is "
        "that CPU time over the run's wall time (the kernel's loopback work, not charged to any process, takes "
        "a few % more of the same CPU). "
        "wrk connects from 127.0.0.1, so the outsider variants (devgate_bearer, devgate_cookie, devgate_deny) "
        "run devgate with a network allow list of 127.0.0.2/32 only: 127.0.0.1 is then an outsider, as "
        "127.0.0.77 would be.",
        "",
        "Requests/s per round: "
        + "; ".join(f"{v.name} {summary[v.name]['rps_rounds']}" for v in vs if v.name in summary),
        "",
    ]
    return "\n".join(lines)
