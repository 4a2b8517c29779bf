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

A second table checks how close the project's training path comes to what the hardware and a
plain torch loop allow, on the same `--train-steps` batches (drawn as `sft_on_paths` draws them:
length-bucketed, `cycled_batches`, seed 0) from the same starting weights:

- `project tok/s` / `bare tok/s`: non-padding tokens per second of `sft_on_paths`
  (`score_paths` + `train_step`: AdamW, gradient clipping) and of a bare loop on a copy of the
  weights over pre-tokenised right-padded batches (`model(...).logits`, token cross-entropy on
  the path tokens, backward, clip, step). `proj/bare` is the ratio (goal >= 0.9x); the bare
  loop's losses must match the project's (`train_loss_max_abs_diff`), so both did the same work.
  The arms run in the order project, bare, bf16, bf16, bare, project, so a load drifting on a
  shared machine tilts no ratio.
- `pad bucketed` / `pad random`: padded positions / all positions of the training batches as the
  project draws them, and with plain shuffled batches for reference (mean over 20 epochs).
  Padding costs compute that trains nothing; bucketing is what keeps it low.
- `train GFLOP/s`, `% of peak`: the project path's useful training FLOP rate (fwd+bwd = 3x
  `forward_flops` on the non-padding tokens) against `peak_gflops` from the same run: what is
  left to gain from any kernel or layout change at this model size.
- `bf16/fp32`, `bf16 loss diff`: the same project steps under
  `torch.autocast("cpu", dtype=torch.bfloat16)`: speed against fp32, and the largest relative
  difference of the per-step losses from the same start (`bf16 ok`: within `BF16_LOSS_RTOL`).
  Autocast's weight cache is off (see `project_arm`). A measurement only: the project trains
  in fp32 on CPUs.

    python benchmarks/models.py [--presets tiny-1m tiny-10m] [--items 128] [--threads 2]
        [--train-steps 8]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import make_console, write_result  # noqa: E402
from rich.table import Table  # noqa: E402

from lada.models.presets import load_model  # noqa: E402
from lada.models.training import (  # noqa: E402
    cycled_batches,
    length_bucketed_batches,
    sequence_tokens,
    sft_on_paths,
)
from lada.models.wrapper import ReasoningModel  # noqa: E402
from lada.tasks.gym_suite import load_suite  # noqa: E402
from lada.tasks.prompts import gold_path, render_prompt  # noqa: E402

#: Largest relative difference of a step's loss under bf16 autocast from fp32 called a match.
BF16_LOSS_RTOL = 1e-2
#: Shuffled epochs the padding shares are averaged over.
PAD_EPOCHS = 20
#: Phases of a bare training step, timed separately (CPU only: CUDA runs asynchronously).
PHASES = ("forward_loss", "backward", "clip", "optimizer")


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


def padding_share(tokens: Sequence[int], batches: Iterable[Sequence[int]]) -> float:
    """Padded positions / all positions of right-padded batches of sequences this long."""
    padded = total = 0
    for rows in batches:
        width = max(tokens[i] for i in rows)
        total += width * len(rows)
        padded += width * len(rows) - sum(tokens[i] for i in rows)
    return padded / total if total else 0.0


def padding_shares(
    model: ReasoningModel, prompts: Sequence[str], paths: Sequence[str], batch_size: int
) -> tuple[float, float]:
    """Padding share of length-bucketed batches (as `sft_on_paths` draws them) and of random ones.

    Both are averaged over `PAD_EPOCHS` shuffled epochs; buckets are formed on the same lengths
    `sft_on_paths` sorts by, padding is counted on the tokens `pack` builds.
    """
    tokens = sequence_tokens(model, prompts, paths)
    lengths = [len(p) + len(q) for p, q in zip(prompts, paths, strict=True)]
    rng = np.random.default_rng(0)
    bucketed = [
        batch
        for _ in range(PAD_EPOCHS)
        for batch in length_bucketed_batches(lengths, batch_size, rng)
    ]
    rng = np.random.default_rng(0)
    shuffled = []
    for _ in range(PAD_EPOCHS):
        order = rng.permutation(len(tokens)).tolist()
        shuffled.extend(order[lo : lo + batch_size] for lo in range(0, len(order), batch_size))
    return padding_share(tokens, bucketed), padding_share(tokens, shuffled)


def training_batches(
    prompts: Sequence[str], paths: Sequence[str], batch_size: int, steps: int
) -> list[list[int]]:
    """The batches `sft_on_paths(..., steps=steps, seed=0)` trains on, in its order."""
    lengths = [len(p) + len(q) for p, q in zip(prompts, paths, strict=True)]
    return list(
        itertools.islice(cycled_batches(lengths, batch_size, np.random.default_rng(0)), steps)
    )


def project_arm(
    model: ReasoningModel,
    prompts: Sequence[str],
    paths: Sequence[str],
    batch_size: int,
    steps: int,
    *,
    bf16: bool = False,
) -> tuple[float, list[float]]:
    """Seconds and per-step losses of `sft_on_paths` on a copy of `model` (fresh optimizer).

    With `bf16`, the whole call runs under autocast with its weight cache off: the cache keeps
    the first bf16 copy of each weight until the outermost autocast region ends, so around a
    loop of optimizer steps every forward pass after the first would see stale weights.
    """
    twin = model.clone()
    autocast = (
        torch.autocast(twin.device.type, dtype=torch.bfloat16, cache_enabled=False)
        if bf16
        else contextlib.nullcontext()
    )
    start = time.perf_counter()
    with autocast:
        losses = sft_on_paths(
            twin, prompts, paths, steps=steps, batch_size=batch_size, seed=0, progress=False
        )
    return time.perf_counter() - start, losses


def pretokenise(
    model: ReasoningModel, prompts: Sequence[str], paths: Sequence[str], batches: list[list[int]]
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Right-padded input ids, attention mask and next-token labels (-100 off the path)."""
    packed = []
    for rows in batches:
        ids, attention, targets = model.pack([prompts[i] for i in rows], [paths[i] for i in rows])
        packed.append((ids, attention, ids[:, 1:].masked_fill(targets == 0, -100)))
    return packed


def bare_arm(
    model: ReasoningModel,
    packed: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    phases: dict[str, float] | None = None,
) -> tuple[float, list[float]]:
    """Seconds and per-step losses of a plain torch loop on a copy of `model`'s weights.

    Same optimizer settings as `ReasoningModel.train_step` (AdamW at the model's rate and weight
    decay, gradient-norm clipping). With `phases`, the seconds of each phase are added there.
    """
    net = copy.deepcopy(model.model)
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=model.learning_rate, weight_decay=model.weight_decay)
    losses = []
    marks = [0.0] * (len(PHASES) + 1)
    start = time.perf_counter()
    for input_ids, attention, labels in packed:
        marks[0] = time.perf_counter()
        logits = net(input_ids=input_ids, attention_mask=attention).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=-100
        )
        marks[1] = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        marks[2] = time.perf_counter()
        if model.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, model.grad_clip)
        marks[3] = time.perf_counter()
        optimizer.step()
        losses.append(float(loss.detach()))
        marks[4] = time.perf_counter()
        if phases is not None:
            for k, phase in enumerate(PHASES):
                phases[phase] = phases.get(phase, 0.0) + marks[k + 1] - marks[k]
    return time.perf_counter() - start, losses


def bench_training(
    model: ReasoningModel,
    prompts: Sequence[str],
    paths: Sequence[str],
    batch_size: int,
    steps: int,
) -> dict:
    """The project's training path against a bare loop and against itself under bf16 autocast.

    Every arm trains a copy of `model` from the same weights on the same batches. After one
    warm-up step each, the arms run as project, bare, bf16, bf16, bare, project: each arm's time
    is the sum of its two runs, so a load that drifts linearly cancels out of the ratios.
    """
    batches = training_batches(prompts, paths, batch_size, steps)
    packed = pretokenise(model, prompts, paths, batches)
    start = time.perf_counter()
    pretokenise(model, prompts, paths, batches)
    pack_s = time.perf_counter() - start
    lengths = [int(n) for _, attention, _ in packed for n in attention.sum(-1).tolist()]
    tokens = sum(lengths)
    path_tokens = sum(int((labels != -100).sum()) for _, _, labels in packed)
    positions = sum(attention.numel() for _, attention, _ in packed)

    project_arm(model, prompts, paths, batch_size, 1)  # warm-up
    bare_arm(model, packed[:1])
    project_arm(model, prompts, paths, batch_size, 1, bf16=True)
    phases: dict[str, float] = {}
    project_s, project_losses = project_arm(model, prompts, paths, batch_size, steps)
    bare_s, bare_losses = bare_arm(model, packed, phases)
    bf16_s, bf16_losses = project_arm(model, prompts, paths, batch_size, steps, bf16=True)
    seconds, _ = project_arm(model, prompts, paths, batch_size, steps, bf16=True)
    bf16_s += seconds
    seconds, _ = bare_arm(model, packed, phases)
    bare_s += seconds
    seconds, _ = project_arm(model, prompts, paths, batch_size, steps)
    project_s += seconds

    runs = 2 * tokens  # tokens over both timed runs of an arm
    flop = 2 * 3 * forward_flops(model, lengths)  # fwd + bwd ~ 3x forward, two runs
    fp32 = torch.tensor(project_losses)
    bf16_diff = (torch.tensor(bf16_losses) - fp32).abs()
    bf16_rel = float((bf16_diff / fp32.abs().clamp(min=1e-12)).max())
    bare_phase_s = sum(phases.values())
    return {
        "train_steps": steps,
        "train_batch_tokens": tokens,
        "train_batch_path_tokens": path_tokens,
        "train_pad_share_timed": 1 - tokens / positions,
        "train_project_tokens_per_s": runs / project_s,
        "train_bare_tokens_per_s": runs / bare_s,
        "train_project_vs_bare": bare_s / project_s,
        "train_loss_max_abs_diff": float((torch.tensor(bare_losses) - fp32).abs().max()),
        "train_pack_share": 2 * pack_s / project_s,
        "train_bare_phase_shares": (
            {k: v / bare_phase_s for k, v in phases.items()}
            if model.device.type == "cpu" and bare_phase_s
            else None
        ),
        "train_gflops": flop / project_s / 1e9,
        "train_bare_gflops": flop / bare_s / 1e9,
        "bf16_tokens_per_s": runs / bf16_s,
        "bf16_vs_fp32": project_s / bf16_s,
        "bf16_losses": bf16_losses,
        "fp32_losses": project_losses,
        "bf16_loss_max_abs_diff": float(bf16_diff.max()),
        "bf16_loss_max_rel_diff": bf16_rel,
        "bf16_loss_rtol": BF16_LOSS_RTOL,
        "bf16_within_rtol": bf16_rel <= BF16_LOSS_RTOL,
    }


def bench_preset(
    name: str, n_items: int, batch_size: int, device: str, train_steps: int = 8
) -> dict:
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
    training = bench_training(model, prompts, paths, batch_size, train_steps)
    pad_bucketed, pad_random = padding_shares(model, prompts, paths, batch_size)
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
        **training,
        "train_pad_share_bucketed": pad_bucketed,
        "train_pad_share_random": pad_random,
        "train_peak_share": training["train_gflops"] / peak,
        "train_bare_peak_share": training["train_bare_gflops"] / peak,
    }


def training_table(rows: list[dict], batch_size: int) -> Table:
    steps = rows[0]["train_steps"] if rows else 0
    table = Table(
        title=f"Training path vs bare torch loop ({steps} steps x 2 runs, batch {batch_size})"
    )
    for col in (
        "preset",
        "project tok/s",
        "bare tok/s",
        "proj/bare",
        "loss diff",
        "pad bucketed",
        "pad random",
        "train GFLOP/s",
        "% of peak",
        "bf16/fp32",
        "bf16 loss diff",
        "bf16 ok",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["preset"],
            f"{r['train_project_tokens_per_s']:.0f}",
            f"{r['train_bare_tokens_per_s']:.0f}",
            f"{r['train_project_vs_bare']:.2f}x",
            f"{r['train_loss_max_abs_diff']:.1e}",
            f"{100 * r['train_pad_share_bucketed']:.1f}%",
            f"{100 * r['train_pad_share_random']:.1f}%",
            f"{r['train_gflops']:.1f}",
            f"{100 * r['train_peak_share']:.0f}%",
            f"{r['bf16_vs_fp32']:.2f}x",
            f"{r['bf16_loss_max_rel_diff']:.1e}",
            "yes" if r["bf16_within_rtol"] else "no",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny-1m", "tiny-2m", "tiny-10m"])
    parser.add_argument("--items", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--train-steps",
        type=int,
        default=8,
        help="optimizer steps per run of the project / bare / bf16 training comparison",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: results/)")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [
        bench_preset(p, args.items, args.batch_size, args.device, args.train_steps)
        for p in args.presets
    ]

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
    console = make_console()
    console.print(table)
    console.print(training_table(rows, args.batch_size))
    payload = {
        "torch_threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "train_steps": args.train_steps,
    }
    write_result("models", {**payload, "rows": rows}, args.out, started)


if __name__ == "__main__":
    main()
