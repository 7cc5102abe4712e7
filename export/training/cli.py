"""`oss-edge train`: argument parsing and user-facing output (torch is imported only when it runs)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from export.errors import OptionError
from export.training.defaults import DEFAULT_SEED, DEFAULT_STEPS, DEFAULT_THREADS


def register(subparsers: Any) -> None:
    train = subparsers.add_parser(
        "train",
        help="train the stand-in: a small gpt-oss-architecture model learned here from the standard library",
        description="Train a small model of gpt-oss's exact architecture on the running Python's standard library "
        "(tests and a published list of held-out modules excluded), on completion and explanation samples in "
        "the product's own prompt layouts, and write it as a checkpoint in the official gpt-oss format (MXFP4 "
        "experts, bf16 elsewhere, harmony tokenizer) that `oss-edge export` takes. The folder appears only "
        "when complete. docs/standin.md says what it is and how well it does.",
    )
    train.add_argument("out", type=Path, help="checkpoint folder to create")
    train.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="optimizer steps of 8 samples each")
    train.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the same seed gives the same checkpoint")
    train.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help="torch threads; part of what makes a run reproducible (default %(default)s)",
    )
    train.add_argument(
        "--stdlib", type=Path, help="the standard library's source folder (default: the running interpreter's)"
    )
    train.add_argument("--json", action="store_true", help="print the training report as JSON")
    train.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    if args.steps < 1 or args.threads < 1 or args.seed < 0:
        raise OptionError("--steps and --threads must be at least 1, --seed at least 0")
    from export.progress import Progress
    from export.training.loop import TrainOptions, run_training

    options = TrainOptions(args.out, steps=args.steps, seed=args.seed, threads=args.threads, stdlib=args.stdlib)
    report = run_training(options, Progress())
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        held = report["held_out"]
        print(
            f"wrote the stand-in checkpoint {args.out}: {report['parameters'] / 1e6:.1f} M parameters, "
            f"{report['tokens_seen']:,} tokens seen at {report['tokens_per_second']:.0f} tok/s, "
            f"held-out loss {held['loss']:.3f} (answers {held['answer_loss']:.3f})"
        )
    return 0
