"""How noisy is the validation loss, next to the loss differences a sweep must resolve?

Trains one model size at a few learning rates (x2 apart) and several seeds, then reports at every checkpoint:
the validation loss's relative standard error (fixed clips, noise and timesteps), the spread of the loss over
training seeds of one config, the loss gap between neighbouring learning rates, the paired standard error of
that gap (both models scored on the same examples), and the spread of the gap over seeds: a sweep trains
every cell with one seed, so it is the gap's noise, not the loss's, that decides whether it finds the optimum.
Prints a table and writes JSON.

    python benchmarks/val_noise.py [--size micro] [--lrs 1e-3,2e-3,4e-3] [--seeds 0,1,2] [--tokens 1000000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from replicate.config import TrainConfig, model_config, token_checkpoints
from replicate.provenance import provenance
from replicate.training.diffusion import ValidationSet, example_losses, stratified_mean_se
from replicate.training.step import resolve_device
from replicate.training.train import train


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="micro")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lrs", default="1e-3,2e-3,4e-3")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--val-examples", type=int, default=4096)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/val_noise.json"))
    args = parser.parse_args()
    device = resolve_device(args.device)
    lrs = [float(x) for x in args.lrs.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    model = model_config(args.size)
    val = ValidationSet.build(model.clip, args.val_examples, device=device)
    checkpoints = token_checkpoints(args.tokens, span=8.0, ratio=2.0)
    loss: dict[tuple[float, int], list[float]] = {}
    per_example: dict[tuple[float, int], list] = {}  # per-example losses at each checkpoint
    rel_se: list[float] = []
    for lr in lrs:
        for seed in seeds:
            cfg = TrainConfig(
                model,
                batch_clips=args.batch_size,
                lr=lr,
                tokens=args.tokens,
                seed=seed,
                checkpoints=checkpoints,
                val_examples=args.val_examples,
            )
            per_example[lr, seed] = []

            def keep(record, model, ema, key=(lr, seed)):
                per_example[key].append(example_losses(model, val)[0])

            record = train(cfg, device=str(device), val=val, on_checkpoint=keep)
            loss[lr, seed] = [c.val_loss for c in record.checkpoints]
            rel_se += [c.val_loss_se / c.val_loss for c in record.checkpoints]
            print(f"lr {lr:g} seed {seed}: " + " ".join(f"{v:.5f}" for v in loss[lr, seed]), flush=True)
    rows = []
    header = ("tokens", "rel SE", "seed std", "lr gap (min)", "paired SE", "gap std")
    print("\n{:>9} {:>8} {:>9} {:>13} {:>10} {:>10}  (relative to the loss)".format(*header))
    for i, tokens in enumerate(c.tokens for c in record.checkpoints):
        means = {lr: statistics.mean(loss[lr, s][i] for s in seeds) for lr in lrs}
        seed_std = statistics.mean(statistics.stdev(loss[lr, s][i] for s in seeds) / means[lr] for lr in lrs)
        neighbours = list(zip(lrs, lrs[1:], strict=False))
        gaps = [abs(means[a] - means[b]) / means[a] for a, b in neighbours]
        paired = statistics.mean(
            stratified_mean_se(per_example[a, s][i] - per_example[b, s][i])[1] / means[a]
            for a, b in neighbours
            for s in seeds
        )
        gap_std = statistics.mean(
            statistics.stdev((loss[a, s][i] - loss[b, s][i]) / means[a] for s in seeds) for a, b in neighbours
        )
        rows.append(
            {
                "tokens": tokens,
                "seed_std_rel": seed_std,
                "lr_gap_rel_min": min(gaps),
                "lr_gap_rel": gaps,
                "paired_se_rel": paired,
                "gap_seed_std_rel": gap_std,
                "mean_loss": means,
            }
        )
        print(
            f"{tokens:>9,} {statistics.mean(rel_se):>8.3%} {seed_std:>9.3%} {min(gaps):>13.3%} {paired:>10.3%}"
            f" {gap_std:>10.3%}"
        )
    result = {
        "size": args.size,
        "batch_size": args.batch_size,
        "val_examples": args.val_examples,
        "val_rel_se_mean": statistics.mean(rel_se),
        "val_rel_se_max": max(rel_se),
        "rows": rows,
        "runs": {f"lr={lr:g},seed={s}": v for (lr, s), v in loss.items()},
        **provenance(device),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
