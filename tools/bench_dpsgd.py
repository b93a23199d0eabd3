"""DP-SGD speed and memory: private vs non-private steps of DP-CGAN's discriminator and DPDM, per
``grad_sample_mode`` (Opacus ``hooks``, ``functorch``, and ``grouped``), plus speed options (TF32, bf16 autocast,
channels-last, ``torch.compile``) and projected GPU-hours of the paper configs (``configs/dpdm-*.yaml``).

    python tools/bench_dpsgd.py                      # CUDA when present, else CPU (small sizes, ~2-3 minutes)
    python tools/bench_dpsgd.py --device cpu --out bench.json --rounds 5

Prints Markdown tables and writes every measurement to ``--out`` (JSON). Each timed step is the training step:
forward, backward, ``optimizer.step()`` (clip + noise + Adam for the private ones); medians over ``--rounds``
after one warm-up step. Peak memory: on CUDA torch's allocator peak over one step minus what was allocated
before it; on CPU the resident-set high-water mark of one step in a fresh process (``--child`` mode). The
GPU-hours projection is (DP-SGD steps of the config) × (measured time of one step of that config's U-Net at
``--probe-batch`` examples, K of the config) × B / probe batch: training only, no sampling or evaluation.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
PRIVATE_MODES = ("hooks", "functorch", "grouped")
PAPER_UNET = {"channels": (32, 64, 64), "layers_per_block": 2, "norm_groups": 32, "attention_head_dim": 32,
              "label_dropout": 0.1}  # configs/dpdm-mnist.yaml's network (1.6M parameters at 28x28)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------- the steps


def gan_step(device: str, batch: int, mode: str, opts: frozenset[str]) -> tuple[Callable[[], None], int]:
    """DP-CGAN's 28x28 discriminator step (default width); returns (step, rows per step)."""
    from dpgen_bench import DatasetInfo
    from dpgen_bench.context import RunContext
    from dpgen_bench_baselines.dp_gan import DPCGAN, make_private_discriminator

    method = DPCGAN({"grad_sample_mode": mode if mode != "non-private" else "hooks"},
                    DatasetInfo("bench", 1, 28, 28, 10), seed=0, context=RunContext(device=device, progress=False))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(batch, 1, 28, 28, generator=g).to(device), torch.randint(0, 10, (batch,), generator=g).to(device)
    z = torch.randn(batch, method.config.z_dim, generator=g).to(device)
    torch.manual_seed(0)
    D = method.build_discriminator().to(device)
    if "channels_last" in opts:
        D = D.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(D.parameters(), lr=2e-4)
    if mode != "non-private":
        D, opt, _ = make_private_discriminator(D, opt, DataLoader(TensorDataset(x.cpu(), y.cpu()), batch_size=batch),
                                               noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=batch,
                                               grad_sample_mode=mode)
    elif "compile" in opts:
        D = torch.compile(D)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with _autocast(device, opts):
            method._d_backward(D, x, y, z, step=0)
        opt.step()

    return step, 2 * batch


def dpdm_step(device: str, batch: int, k: int, mode: str, opts: frozenset[str],
              net_config: dict[str, Any] | None = None, size: int = 28, channels: int = 1) -> tuple[Callable[[], None], int]:
    """One DPDM DP-SGD step (or the plain step) with ``net_config`` (None: the CPU default U-Net)."""
    from dpgen_bench import DatasetInfo
    from dpgen_bench.context import RunContext
    from dpgen_bench_baselines.dpdm import DPDM, make_private_denoiser

    cfg = {**(net_config or {}), "noise_multiplicity": k, "batch_size": batch,
           "grad_sample_mode": mode if mode != "non-private" else "hooks"}
    method = DPDM(cfg, DatasetInfo("bench", channels, size, size, 10), seed=0,
                  context=RunContext(device=device, progress=False))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, channels, size, size, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    draws = method.draws(batch, g)
    net = method.net.train()
    if "channels_last" in opts:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    if mode != "non-private":
        net, opt, _ = make_private_denoiser(net, opt, DataLoader(TensorDataset(x.cpu(), y.cpu()), batch_size=batch),
                                            noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=batch,
                                            grad_sample_mode=mode)
    elif "compile" in opts:
        method.net = torch.compile(net)
        net = method.net
    backward = method._backward if mode != "non-private" else method._plain_backward

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with _autocast(device, opts):
            backward(net, x, y, draws, 0)
        opt.step()

    return step, batch * k


def _autocast(device: str, opts: frozenset[str]):
    if "bf16" in opts:
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ------------------------------------------------------------------------------------------- measuring


def time_step(step: Callable[[], None], device: str, rounds: int) -> float:
    """Median seconds of ``rounds`` steps after one warm-up step."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step()
        _sync(device)
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            step()
            _sync(device)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cuda_peak_mb(step: Callable[[], None], device: str) -> float:
    """Allocator peak of one (warm) step above what was allocated before it, MiB."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        _sync(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def cpu_peak_mb(spec: dict[str, Any]) -> float:
    """Resident-memory high-water mark of one step above the resident set before it, in a fresh process, MiB."""
    out = subprocess.run([sys.executable, __file__, "--threads", str(torch.get_num_threads()), "--child",
                          json.dumps(spec)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _child(spec: dict[str, Any]) -> None:
    from dpgen_bench.runner.memory import peak_memory_mb, reset_peak_memory

    step, _ = build(spec, "cpu")

    def rss_mb() -> float:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024.0

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reset_peak_memory()
        before = rss_mb()
        step()
    print(peak_memory_mb() - before)


def build(spec: dict[str, Any], device: str) -> tuple[Callable[[], None], int]:
    opts = frozenset(spec.get("opts", ()))
    if spec["kind"] == "gan":
        return gan_step(device, spec["batch"], spec["mode"], opts)
    return dpdm_step(device, spec["batch"], spec["k"], spec["mode"], opts, spec.get("net"), spec.get("size", 28),
                     spec.get("channels", 1))


def measure(spec: dict[str, Any], device: str, rounds: int, memory: bool) -> dict[str, Any]:
    row = {**spec, "device": device}
    try:
        step, rows = build(spec, device)
        seconds = time_step(step, device, rounds)
        row.update(ms=1000 * seconds, rows_per_s=rows / seconds, examples_per_s=spec["batch"] / seconds)
        if memory and device.startswith("cuda"):
            row["peak_mb"] = cuda_peak_mb(step, device)
        del step
    except Exception as exc:  # noqa: BLE001 - a mode that cannot run (e.g. out of memory) is reported, not fatal
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    if memory and not device.startswith("cuda") and "error" not in row:
        try:
            row["peak_mb"] = cpu_peak_mb(spec)
        except subprocess.CalledProcessError as exc:
            row["error"] = f"memory child failed: {exc.stderr.strip().splitlines()[-1][:160]}"
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


# ------------------------------------------------------------------------------------------- the plan


def plan(device: str) -> dict[str, list[dict[str, Any]]]:
    """Cases per table; CPU sizes are reduced so the whole run takes a few minutes on 2 cores."""
    gpu = device.startswith("cuda")
    gan_batches = (64, 256, 1024) if gpu else (64, 256)
    dpdm_batches = (32, 256) if gpu else (32,)
    paper_batch = 256 if gpu else 2
    modes = ("non-private", *PRIVATE_MODES)
    ratio = [{"kind": "gan", "batch": b, "mode": m, "case": f"DP-CGAN D step 28x28, B={b}"}
             for b in gan_batches for m in modes]
    ratio += [{"kind": "dpdm", "batch": b, "k": 2, "mode": m, "case": f"DPDM CPU-default U-Net, K=2, B={b}"}
              for b in dpdm_batches for m in modes]
    ratio += [{"kind": "dpdm", "batch": paper_batch, "k": 32, "mode": m, "net": PAPER_UNET,
               "case": f"DPDM paper U-Net, K=32, B={paper_batch}"} for m in modes]
    memory = [{"kind": "dpdm", "batch": 32, "k": k, "mode": m, "case": f"DPDM CPU-default U-Net, B=32, K={k}"}
              for k in (2, 16) for m in ("non-private", "hooks", "grouped")]
    option_sets = (("tf32",), ("bf16",), ("channels_last",), ("compile",), ("tf32", "channels_last")) if gpu else (
        ("bf16",), ("channels_last",))
    options = []
    for base in ({"kind": "gan", "batch": 256 if gpu else 64, "case": "DP-CGAN D step"},
                 {"kind": "dpdm", "batch": 256 if gpu else 32, "k": 2, "case": "DPDM CPU-default, K=2"}):
        for mode in ("non-private", "grouped"):
            for opts in ((), *option_sets):
                if "compile" in opts and mode != "non-private":
                    continue  # Opacus's hooks and torch.compile: not attempted
                options.append({**base, "mode": mode, "opts": list(opts),
                                "case": f"{base['case']}, B={base['batch']}"})
    return {"ratio": ratio, "memory": memory, "options": options}


def paper_projection(device: str, rounds: int, probe_batch: int) -> list[dict[str, Any]]:
    """Training GPU-hours per ε of each configs/dpdm-*.yaml paper config, per mode, from a probe step."""
    from dpgen_bench.data import dataset_spec
    from dpgen_bench.data.splits import nominal_split_sizes
    from dpgen_bench.privacy.plans import dpsgd_steps

    rows = []
    for path in sorted((ROOT / "configs").glob("dpdm-*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        method_cfg = cfg["methods"][0].get("config") or {}
        if "batch_size" not in method_cfg:
            continue  # not a paper-scale config
        spec = dataset_spec(cfg["dataset"])
        n_hat, _ = nominal_split_sizes(spec.size, cfg.get("test_fraction", 0.2))
        batch, epochs, k = method_cfg["batch_size"], method_cfg["epochs"], method_cfg["noise_multiplicity"]
        steps = dpsgd_steps(n_hat, batch, epochs)
        net = {key: method_cfg[key] for key in ("channels", "layers_per_block", "norm_groups", "attention_head_dim",
                                                 "label_dropout", "conditional") if key in method_cfg}
        for mode in ("non-private", "hooks", "grouped"):
            probe = {"kind": "dpdm", "batch": probe_batch, "k": k, "mode": mode, "net": net,
                     "size": spec.info.height, "channels": spec.info.channels, "case": path.name}
            row = measure(probe, device, rounds, memory=False)
            row.update(config=path.name, steps=steps, batch_size=batch)
            if "ms" in row:
                row["hours_per_eps"] = steps * (row["ms"] / 1000) * batch / probe_batch / 3600
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------- reporting


def _ratio_table(rows: list[dict[str, Any]], title: str) -> str:
    lines = [f"### {title}", "", "| case | mode | opts | ms/step | ratio to non-private | rows/s | peak MiB |",
             "|---|---|---|---|---|---|---|"]
    base = {(r["case"], tuple(r.get("opts", ()))): r for r in rows if r["mode"] == "non-private" and "ms" in r}
    plain = {r["case"]: r for r in rows if r["mode"] == "non-private" and not r.get("opts") and "ms" in r}
    for r in rows:
        ref = base.get((r["case"], tuple(r.get("opts", ())))) or plain.get(r["case"])
        opts = "+".join(r.get("opts", ())) or "-"
        if "ms" not in r:
            lines.append(f"| {r['case']} | {r['mode']} | {opts} | failed: {r.get('error', '?')} | | | |")
            continue
        ratio = f"{r['ms'] / ref['ms']:.2f}" if ref else "-"
        peak = f"{r['peak_mb']:.0f}" if r.get("peak_mb") is not None else "-"
        lines.append(f"| {r['case']} | {r['mode']} | {opts} | {r['ms']:.1f} | {ratio} | {r['rows_per_s']:.0f} | {peak} |")
    return "\n".join(lines)


def _projection_table(rows: list[dict[str, Any]], device: str) -> str:
    unit = "GPU-hours" if device.startswith("cuda") else "CPU-hours (this machine)"
    lines = [f"### Projected training {unit} per ε (paper configs; training steps only)", "",
             "| config | steps | mode | probe ms/step | hours per ε |", "|---|---|---|---|---|"]
    for r in rows:
        if "ms" in r:
            lines.append(f"| {r['config']} | {r['steps']} | {r['mode']} | {r['ms']:.0f} (B={r['batch']}) | "
                         f"{r['hours_per_eps']:.1f} |")
        else:
            lines.append(f"| {r['config']} | {r['steps']} | {r['mode']} | failed: {r.get('error')} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--rounds", type=int, default=None, help="timed steps per case (default: 10 on CUDA, 3 on CPU)")
    p.add_argument("--out", default="bench_dpsgd.json", help="JSON file for every measurement")
    p.add_argument("--markdown", default=None, help="also write the tables to this file")
    p.add_argument("--only", default="ratio,memory,options,projection", help="comma-separated sections to run")
    p.add_argument("--probe-batch", type=int, default=None, help="examples per probe step of the projection "
                   "(default: 64 on CUDA, 2 on CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's; on a "
                   "shared CPU use 1: oversubscribed OpenMP threads wait on each other)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child is not None:
        _child(json.loads(args.child))
        return 0
    gpu = args.device.startswith("cuda")
    rounds = args.rounds or (10 if gpu else 3)
    sections = set(args.only.split(","))
    cases = plan(args.device)
    result: dict[str, Any] = {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
                              "gpu": torch.cuda.get_device_name(args.device) if gpu else None}
    tables = [f"## DP-SGD step benchmark on {result['gpu'] or 'CPU'} ({result['threads']} torch threads, torch "
              f"{torch.__version__}, median of {rounds})"]
    if "ratio" in sections:
        result["ratio"] = [measure(c, args.device, rounds, memory=gpu) for c in cases["ratio"]]
        tables.append(_ratio_table(result["ratio"], "Private / non-private per grad_sample_mode"))
    if "memory" in sections:
        result["memory"] = [measure(c, args.device, rounds, memory=True) for c in cases["memory"]]
        tables.append(_ratio_table(result["memory"], "Peak memory of one step, K = 2 vs 16"))
        tables.append(_memory_summary(result["memory"]))
    if "options" in sections:
        result["options"] = [measure(c, args.device, rounds, memory=gpu) for c in cases["options"]]
        tables.append(_ratio_table(result["options"], "Speed options (ratio to the same-options non-private step)"))
    if "projection" in sections:
        result["projection"] = paper_projection(args.device, max(2, rounds // 3), args.probe_batch or (64 if gpu else 2))
        tables.append(_projection_table(result["projection"], args.device))
    text = "\n\n".join(tables)
    print(text)
    Path(args.out).write_text(json.dumps(result, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


def _memory_summary(rows: list[dict[str, Any]]) -> str:
    peak = {(r["mode"], r["k"]): r.get("peak_mb") for r in rows}
    lines = ["| mode | step peak K=16 / K=2 | private − non-private, K=2 / K=16 (MiB) | private / non-private at K=16 |",
             "|---|---|---|---|"]
    for mode in ("hooks", "grouped"):
        try:
            lines.append(f"| {mode} | {peak[mode, 16] / peak[mode, 2]:.2f} | "
                         f"{peak[mode, 2] - peak['non-private', 2]:.0f} / {peak[mode, 16] - peak['non-private', 16]:.0f} | "
                         f"{peak[mode, 16] / peak['non-private', 16]:.2f} |")
        except (KeyError, TypeError, ZeroDivisionError):
            lines.append(f"| {mode} | missing | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
