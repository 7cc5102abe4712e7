"""The training run: data, a sparse-MoE model, AdamW with warmup and cosine decay, quantization-aware training
of the experts at the end, held-out evaluation, and the checkpoint written atomically in the release's format.

Deterministic from the seed on one machine kind: the samples come from a seeded generator, torch runs its
deterministic algorithms on a fixed number of threads. An interrupted run leaves no checkpoint behind (the files
are written into a hidden staging folder that is renamed into place only when everything is there).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch.nn import functional as F
from torch.nn.utils import parametrize

from edge_runtime.harmony import HARMONY_SPECIAL_TOKENS, HarmonyCodec
from export.pipeline import remove_stale_partials
from export.progress import Progress
from export.synth import make_config, publish, staged_folder, write_checkpoint
from export.tokenizer_synth import write_tokenizer_files
from export.training.corpus import HOLD_OUT, load_corpus
from export.training.defaults import DEFAULT_SEED, DEFAULT_STEPS, DEFAULT_THREADS, SAMPLING
from export.training.fixture import write_sums
from export.training.model import (
    STAND_IN,
    build_model,
    checkpoint_plans,
    end_quantization_aware,
    start_quantization_aware,
)
from export.training.samples import Sample, SampleStream

TRAINING_FORMAT_VERSION = 1


@dataclass
class TrainOptions:
    out: Path
    steps: int = DEFAULT_STEPS
    seed: int = DEFAULT_SEED
    samples_per_step: int = 8
    max_tokens: int = 1536  # the longest sample: about the product's default context (1536 tokens)
    learning_rate: float = 2e-3
    warmup_steps: int = 20
    quantization_aware_share: float = 0.2  # the last fifth of the steps trains the experts in MXFP4
    router_balance: float = 0.01
    eval_samples: int = 48
    threads: int = DEFAULT_THREADS
    stdlib: Path | None = None

    def __post_init__(self) -> None:
        self.out = Path(self.out)


@dataclass
class Meter:
    tokens: int = 0
    loss_sum: float = 0.0
    loss_tokens: int = 0
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


def learning_rate(options: TrainOptions, step: int) -> float:
    if step < options.warmup_steps:
        return options.learning_rate * (step + 1) / options.warmup_steps
    progress = (step - options.warmup_steps) / max(1, options.steps - options.warmup_steps)
    return options.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def sample_loss(model: Any, sample: Sample, target_only: bool = False) -> tuple[torch.Tensor, int]:
    """Summed next-token loss over the sample's scored tokens (or its answer's), and how many there were."""
    ids = torch.tensor([sample.ids])
    out = model(input_ids=ids, output_router_logits=model.training, use_cache=False)
    first = max(1, sample.target_from if target_only else sample.scored_from)
    logits = out.logits[0, first - 1 : -1]
    loss = F.cross_entropy(logits.float(), ids[0, first:], reduction="sum")
    if model.training and getattr(out, "aux_loss", None) is not None:
        loss = loss + model.router_balance * out.aux_loss * logits.shape[0]
    return loss, logits.shape[0]


def evaluate(model: Any, samples: list[Sample]) -> dict[str, float]:
    model.eval()
    totals = {"loss": [0.0, 0], "answer_loss": [0.0, 0]}
    with torch.no_grad():
        for sample in samples:
            for key, target_only in (("loss", False), ("answer_loss", True)):
                loss, count = sample_loss(model, sample, target_only)
                totals[key][0] += float(loss)
                totals[key][1] += count
    model.train()
    return {key: round(total / max(1, count), 4) for key, (total, count) in totals.items()}


def train_step(model: Any, optimizer: Any, stream: SampleStream, options: TrainOptions, meter: Meter) -> float:
    started = time.perf_counter()
    batch = [next(stream) for _ in range(options.samples_per_step)]
    scored = sum(len(s.ids) - max(1, s.scored_from) for s in batch)
    total = 0.0
    for sample in batch:
        loss, _ = sample_loss(model, sample)
        (loss / scored).backward()
        total += float(loss.detach())
        meter.tokens += len(sample.ids)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    meter.loss_sum += total
    meter.loss_tokens += scored
    meter.seconds += time.perf_counter() - started
    return total / scored


def _seed_everything(options: TrainOptions) -> None:
    torch.manual_seed(options.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(options.threads)


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so that the staging folder is removed either way."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_training(options: TrainOptions, progress: Progress) -> dict[str, Any]:
    """Train the stand-in and write it to options.out; returns the training report (also in training.json)."""
    _seed_everything(options)
    corpus = load_corpus(options.stdlib)
    progress.stage(
        f"data: {len(corpus.train)} standard-library files of Python {sys.version.split()[0]} "
        f"({corpus.train_bytes / 1e6:.1f} MB), {len(HOLD_OUT)} modules held out"
    )
    remove_stale_partials(options.out)  # left by a run that was killed
    staging = staged_folder(options.out)
    try:
        (staging / "pid").write_text(str(os.getpid()))
        with _terminate_as_interrupt():
            report = _train_into(staging, corpus, options, progress)
        (staging / "pid").unlink()
        write_sums(staging)
        publish(staging, options.out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


def _train_into(staging: Path, corpus: Any, options: TrainOptions, progress: Progress) -> dict[str, Any]:
    shape = STAND_IN
    token_ids = write_tokenizer_files(staging, shape.tokenizer_vocab, (f.text for f in corpus.train))
    codec = HarmonyCodec(Tokenizer.from_file(str(staging / "tokenizer.json")))
    config = make_config(shape, token_ids["vocab_size"], token_ids["<|return|>"], token_ids["<|endoftext|>"], "mxfp4")
    model = build_model(config, options.seed)
    model.router_balance = options.router_balance
    model.train()
    stream = SampleStream(codec, list(corpus.train), options.seed, options.max_tokens)
    held_stream = SampleStream(codec, list(corpus.held_out), options.seed + 1, options.max_tokens)
    held_out = [next(held_stream) for _ in range(options.eval_samples)]
    meter = _fit(model, stream, held_out, options, progress)
    progress.stage("held-out evaluation")
    final = evaluate(model, held_out)
    end_quantization_aware(model)
    write_checkpoint(staging, config, token_ids, checkpoint_plans(model), sampling=SAMPLING)
    report = _report(options, corpus, meter, final, token_ids, model)
    (staging / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    progress.note(
        f"{report['tokens_seen']:,} tokens in {report['train_seconds']:.0f} s ({report['tokens_per_second']:.0f} "
        f"tok/s); held-out loss {final['loss']:.3f}, on the answers alone {final['answer_loss']:.3f}"
    )
    return report


def _fit(model: Any, stream: SampleStream, held_out: list[Sample], options: TrainOptions, progress: Progress) -> Meter:
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.learning_rate, betas=(0.9, 0.95), weight_decay=0.1)
    meter = Meter()
    quantized_from = int(options.steps * (1 - options.quantization_aware_share))
    progress.stage(f"training: {options.steps} steps of {options.samples_per_step} samples, seed {options.seed}")
    bar = progress.bar("train", options.steps, "step")
    for step in range(options.steps):
        if step == quantized_from:
            start_quantization_aware(model)
            progress.note(f"step {step}: the experts train in MXFP4 from here on")
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(options, step)
        with parametrize.cached():
            loss = train_step(model, optimizer, stream, options, meter)
        bar.update()
        if (step + 1) % max(1, options.steps // 10) == 0 or step + 1 == options.steps:
            figures = evaluate(model, held_out[:16])
            meter.history.append({"step": step + 1, "train_loss": round(loss, 4), "tokens": meter.tokens, **figures})
            progress.note(
                f"step {step + 1}/{options.steps}: train loss {loss:.3f}, held-out {figures['loss']:.3f} "
                f"(answers {figures['answer_loss']:.3f}), {meter.tokens / meter.seconds:.0f} tok/s"
            )
    bar.close()
    return meter


def _report(
    options: TrainOptions, corpus: Any, meter: Meter, final: dict[str, float], token_ids: dict[str, int], model: Any
) -> dict[str, Any]:
    settings = asdict(options)
    settings.update(out=None, stdlib=None)
    return {
        "generator": "oss-edge train",
        "version": TRAINING_FORMAT_VERSION,
        "shape": asdict(STAND_IN),
        "parameters": sum(p.numel() for p in model.parameters()),
        "options": settings,
        "torch": torch.__version__,
        "corpus": {**corpus.summary(), "root": None},
        "tokens_seen": meter.tokens,
        "train_seconds": round(meter.seconds, 1),
        "tokens_per_second": round(meter.tokens / max(meter.seconds, 1e-9), 1),
        "held_out": final,
        "history": meter.history,
        "special_tokens": {t: token_ids[t] for t in HARMONY_SPECIAL_TOKENS},
    }
