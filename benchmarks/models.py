"""Model-layer throughput: training, generation, and batched vs per-item path log-probs.

For each preset: train-step tokens/s (SFT on suite paths), greedy generation tokens/s, and the
speed of `sequence_logprobs` over N items in padded batches against a loop of one forward per
item (the ratio is measured in one run, on the same items; goal >= 5x).

Batching can only win what the per-item loop wastes. To say how much that is on the machine at
hand, the benchmark also counts the forward FLOPs of the scored sequences and measures the
machine's dense matmul rate (`peak_gflops`, one large fp32 `torch.mm` with the same threads):
`logprob_speedup_bound = peak_gflops / loop_gflops` is the most any batching could gain here.
On a CPU the per-item loop already runs at a large share of the peak, so the bound sits far
below 5x; on a GPU a single short sequence keeps most of the device idle and the bound is high.

    python benchmarks/models.py [--presets tiny-1m tiny-10m] [--items 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from common import make_console, write_result  # noqa: E402
from rich.table import Table  # noqa: E402

from lada.models.presets import load_model  # noqa: E402
from lada.models.training import sft_on_paths  # noqa: E402
from lada.models.wrapper import ReasoningModel  # noqa: E402
from lada.tasks.gym_suite import load_suite  # noqa: E402
from lada.tasks.prompts import gold_path, render_prompt  # noqa: E402


def forward_flops(model: ReasoningModel, lengths: list[int]) -> float:
    """Forward FLOPs of scoring sequences of these token lengths (multiply-add = 2 FLOPs).

    Every linear layer (the LM head included, input embeddings excluded) costs 2 x weights per
    token; causal attention adds QK^T and AV: 2 x hidden x L^2 per layer for a length-L sequence.
    """
    linear = sum(m.weight.numel() for m in model.model.modules() if isinstance(m, torch.nn.Linear))
    config = model.model.config
    layers = getattr(config, "num_hidden_layers", None) or config.n_layer
    hidden = getattr(config, "hidden_size", None) or config.n_embd
    return float(sum(2 * linear * n + 2 * layers * hidden * n * n for n in lengths))


def peak_gflops(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """Dense fp32 matmul rate of this device with the current thread count (best of repeats)."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def bench_preset(name: str, n_items: int, batch_size: int, device: str) -> dict:
    items = load_suite("default", n=n_items, seed=123)
    prompts = [render_prompt(it) for it in items]
    paths = [gold_path(it) for it in items]
    model = load_model(name, device=device, seed=0)
    path_tokens = sum(model.count_tokens(paths)) + len(paths)
    all_tokens = path_tokens + sum(model.count_tokens(prompts)) + len(prompts)

    sft_on_paths(
        model,
        prompts[:batch_size],
        paths[:batch_size],
        epochs=1,
        batch_size=batch_size,
        progress=False,
    )  # warm-up
    start = time.perf_counter()
    sft_on_paths(model, prompts, paths, epochs=1, batch_size=batch_size, progress=False)
    train_s = time.perf_counter() - start

    n_gen = min(64, n_items)
    start = time.perf_counter()
    generated = model.generate_paths(prompts[:n_gen], max_new_tokens=64, batch_size=n_gen)
    gen_s = time.perf_counter() - start
    gen_tokens = sum(model.count_tokens(generated)) + n_gen

    start = time.perf_counter()
    batched = model.sequence_logprobs(prompts, paths, batch_size=batch_size)
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    looped = torch.cat([model.sequence_logprobs([p], [q]) for p, q in zip(prompts, paths)])
    loop_s = time.perf_counter() - start
    max_diff = float((batched - looped).abs().max())
    lengths = [
        a + b + 1 + int(model.add_bos)
        for a, b in zip(model.count_tokens(prompts), model.count_tokens(paths), strict=True)
    ]
    gflop = forward_flops(model, lengths) / 1e9
    peak = peak_gflops(model.device)
    return {
        "preset": name,
        "parameters": model.num_parameters(),
        "items": n_items,
        "train_tokens_per_s": all_tokens / train_s,
        "train_path_tokens_per_s": path_tokens / train_s,
        "generation_tokens_per_s": gen_tokens / gen_s,
        "logprob_batched_s": batched_s,
        "logprob_loop_s": loop_s,
        "logprob_speedup": loop_s / batched_s,
        "logprob_max_abs_diff": max_diff,
        "logprob_gflop": gflop,
        "logprob_batched_gflops": gflop / batched_s,
        "logprob_loop_gflops": gflop / loop_s,
        "peak_gflops": peak,
        "logprob_speedup_bound": peak * loop_s / gflop,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny-1m", "tiny-2m", "tiny-10m"])
    parser.add_argument("--items", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: results/)")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [bench_preset(p, args.items, args.batch_size, args.device) for p in args.presets]

    table = Table(title=f"Model throughput ({args.items} suite items, batch {args.batch_size})")
    for col in (
        "preset",
        "params",
        "train tok/s",
        "gen tok/s",
        "logprob batched s",
        "logprob loop s",
        "speed-up",
        "loop GFLOP/s",
        "batched GFLOP/s",
        "matmul peak GFLOP/s",
        "speed-up bound",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["preset"],
            f"{r['parameters'] / 1e6:.1f}M",
            f"{r['train_tokens_per_s']:.0f}",
            f"{r['generation_tokens_per_s']:.0f}",
            f"{r['logprob_batched_s']:.2f}",
            f"{r['logprob_loop_s']:.2f}",
            f"{r['logprob_speedup']:.1f}x",
            f"{r['logprob_loop_gflops']:.1f}",
            f"{r['logprob_batched_gflops']:.1f}",
            f"{r['peak_gflops']:.1f}",
            f"{r['logprob_speedup_bound']:.1f}x",
        )
    make_console().print(table)
    payload = {"torch_threads": torch.get_num_threads(), "batch_size": args.batch_size}
    write_result("models", {**payload, "rows": rows}, args.out, started)


if __name__ == "__main__":
    main()
