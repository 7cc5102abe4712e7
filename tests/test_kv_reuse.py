"""KV prefix reuse is exactly equivalent to a fresh generator, whatever the user does between requests.

Runs the real engine on an fp32 export of the tiny synthetic model (int4 is not token-exact on random weights).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.engine import Engine, KvSlot, open_model_folder
from edge_runtime.harmony import CompletionContext, render_completion_prompt

WORDS = ["value", "total", "count", "(", ")", ":", " = ", " + ", "\n", "    ", "return ", "def ", "x", "1", "é", "漢"]


@pytest.fixture(scope="module")
def engine(tiny_fp32: Path) -> Engine:
    return Engine(open_model_folder(tiny_fp32), max_length=2048, slots=2)


class Document:
    def __init__(self, path: str, text: str, rng: random.Random) -> None:
        self.path, self.text, self.rng = path, text, rng
        self.cursor = len(text)

    def edit(self) -> str:
        op = self.rng.choice(["type", "type", "type", "delete", "move", "paste"])
        if op == "type":
            self.text = self.text[: self.cursor] + self.rng.choice(WORDS) + self.text[self.cursor :]
            self.cursor += 1
        elif op == "delete" and self.cursor:
            n = self.rng.randint(1, min(8, self.cursor))
            self.text = self.text[: self.cursor - n] + self.text[self.cursor :]
            self.cursor -= n
        elif op == "move":
            self.cursor = self.rng.randint(0, len(self.text))
        else:
            block = "".join(self.rng.choice(WORDS) for _ in range(30))
            self.text = self.text[: self.cursor] + block + self.text[self.cursor :]
            self.cursor += len(block)
        return op

    def context(self) -> CompletionContext:
        return CompletionContext(self.text[: self.cursor], self.text[self.cursor :], self.path, "python")


def fresh_logits(engine: Engine, prompt: list[int], steps: list[int]) -> list[np.ndarray]:
    slot = KvSlot(-1)
    out = [engine.prefill(slot, prompt, lambda: False).logits]
    out += [engine.step(slot, token) for token in steps]
    return [x for x in out if x is not None]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reused_cache_gives_the_logits_of_a_fresh_generator(engine: Engine, seed: int) -> None:
    rng = random.Random(seed)
    documents = [
        Document("a.py", "def area(w, h):\n    return w * h\n\n" * 6, rng),
        Document("b.py", "import math\n\nclass Circle:\n    r = 1\n" * 5, rng),
    ]
    clients = [engine.slots[0], engine.slots[1]]
    worst, reused = 0.0, 0
    total = 0
    for step in range(30):
        document = rng.choice(documents)  # switching files
        document.edit()
        slot = clients[step % 2] if seed != 2 else engine.slots[0]  # seed 2: one slot shared by everything
        prompt = render_completion_prompt(engine.codec, document.context(), 1800, "2026-01-01").ids
        result = engine.prefill(slot, prompt, lambda: False)
        assert result.logits is not None
        greedy = [int(np.argmax(result.logits))]
        cached = [result.logits]
        for _ in range(3):
            cached.append(engine.step(slot, greedy[-1]))
            greedy.append(int(np.argmax(cached[-1])))
        reference = fresh_logits(engine, prompt, greedy[:3])
        worst = max(worst, *(float(np.max(np.abs(a - b))) for a, b in zip(cached, reference, strict=True)))
        reused += result.reused
        total += len(prompt)
    assert worst <= 1e-5
    assert reused / total > 0.5  # the cache was actually used, not rebuilt each time


def test_prefill_stops_between_chunks_and_resumes_where_it_stopped(engine: Engine) -> None:
    rng = random.Random(7)
    prompt = [rng.randrange(2000) for _ in range(1500)]
    slot = engine.slots[0]
    engine.reset(slot)
    engine.adaptive_chunks, engine.chunk_tokens = False, 64
    calls = 0

    def stop_after_three() -> bool:
        nonlocal calls
        calls += 1
        return calls > 3

    stopped = engine.prefill(slot, prompt, stop_after_three)
    assert stopped.logits is None
    assert 0 < len(slot.ids) < len(prompt)
    resumed = engine.prefill(slot, prompt, lambda: False)
    assert resumed.reused == stopped.appended
    reference = fresh_logits(engine, prompt, [])[0]
    assert resumed.logits is not None
    assert float(np.max(np.abs(resumed.logits - reference))) <= 1e-5
