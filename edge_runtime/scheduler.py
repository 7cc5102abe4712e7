"""One engine thread runs every generation, one token step at a time, in priority order.

Completions come first: a queued completion pauses a running explanation between two steps (or two prompt
chunks); the explanation keeps its KV-cache slot while other slots serve the completions, and carries on where
it stopped. Only when every slot is needed does it lose its cache, and then it re-reads its own tokens on resume.
A completion for a document supersedes the same client's earlier completion for that document. Cancellation
(by request, supersession or disconnect) is seen at the next step or chunk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_runtime.engine import Engine, KvSlot, Sampler, StopStrings
from edge_runtime.errors import RuntimeFault
from edge_runtime.harmony import ChannelParser, DecodeText, RenderedPrompt

log = logging.getLogger("oss_edge.scheduler")

RECENT = 32  # requests kept for the status figures
# Kinds a newer completion for the same document replaces, and kinds that give way to any waiting completion.
SAME_DOCUMENT = ("complete", "warm")
BACKGROUND = ("explain", "warm")
MAX_REMEMBERED_CLIENTS = 256


@dataclass(eq=False)
class Job:
    kind: str  # "complete", "explain" or "warm" (a completion's prompt read into the cache, nothing written)
    client: int
    request_id: int
    prompt: RenderedPrompt
    max_new_tokens: int
    time_budget_s: float | None
    sampler: Sampler
    stops: list[str]
    emit: Callable[[str, str], None]
    done: Callable[[dict[str, Any] | RuntimeFault], None]
    document: str | None = None
    lead: str = ""  # text in place before the output, for stop strings that span the boundary
    ignore_eos: bool = False
    # explain: analysis tokens after which the analysis is closed and the final channel opened, so that a model
    # that reasons on and on still answers within max_new_tokens
    answer_after: int | None = None
    answer_forced: bool = False
    received: float = field(default_factory=time.perf_counter)
    cancel_reason: str | None = None
    cancel_requested: float | None = None
    # progress, kept across pauses
    slot: KvSlot | None = None
    logits: np.ndarray | None = None
    generated: list[int] = field(default_factory=list)
    texts: dict[str, list[str]] = field(default_factory=dict)
    parser: ChannelParser | None = None
    decoder: DecodeText | None = None
    stopper: StopStrings | None = None
    cached_tokens: int | None = None
    prefill_s: float = 0.0
    first_token: float | None = None
    decode_started: float | None = None
    preemptions: int = 0

    @property
    def sequence(self) -> list[int]:
        return self.prompt.ids + self.generated

    def cancel(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
            self.cancel_requested = time.perf_counter()


class Scheduler:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.lock = threading.Condition()
        self.completions: deque[Job] = deque()
        self.explains: deque[Job] = deque()
        self.running: Job | None = None
        self.stopping = False
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.worst_cancel_ms = 0.0
        self.totals = {"requests": 0, "prompt_tokens": 0, "cached_tokens": 0, "generated_tokens": 0}
        self.finish_reasons: dict[str, int] = {}
        self.served: dict[int, int] = {}  # client -> when a completion of its last started (round-robin)
        self.serving = 0
        self.thread = threading.Thread(target=self._loop, name="oss-edge-engine", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            for job in self._jobs():
                self._cancel_job(job, "shutdown")
            self.lock.notify_all()
        self.thread.join(timeout=30)

    def submit(self, job: Job) -> None:
        with self.lock:
            for other in self._jobs():
                if other.client == job.client and self._replaces(job, other):
                    self._cancel_job(other, "superseded")
            self._queue(job).append(job)
            self.lock.notify_all()

    @staticmethod
    def _replaces(newer: Job, older: Job) -> bool:
        """A completion replaces the older completion or warming for its document. A warming replaces every older
        warming of its client, whatever the document (the cursor rests in one place at a time), and never a
        completion, which the user waits for."""
        if newer.kind == "warm":
            return older.kind == "warm"
        return (
            newer.kind == "complete"
            and newer.document is not None
            and older.kind in SAME_DOCUMENT
            and older.document == newer.document
        )

    def _queue(self, job: Job) -> deque[Job]:
        """Completions go first; explanations and cache warming run when no completion waits."""
        return self.completions if job.kind == "complete" else self.explains

    def cancel(self, client: int, request_id: int | None, reason: str = "cancelled") -> int:
        """Cancel one request of a client, or all of them when `request_id` is None. Returns how many."""
        count = 0
        with self.lock:
            for job in self._jobs():
                if job.client == client and request_id in (None, job.request_id) and job.cancel_reason is None:
                    self._cancel_job(job, reason)
                    count += 1
            self.lock.notify_all()
        return count

    def _cancel_job(self, job: Job, reason: str) -> None:
        """Under the lock: a waiting or paused job ends at once; the running one at its next step or chunk."""
        job.cancel(reason)
        if job is not self.running:
            queue = self._queue(job)
            if job in queue:
                queue.remove(job)
                self._finish(job, None)

    def _jobs(self) -> list[Job]:
        return [*self.completions, *self.explains, *([self.running] if self.running else [])]

    def status(self) -> dict[str, Any]:
        with self.lock:
            running = self.running
            queue = {
                "complete": len(self.completions),
                "explain": sum(job.kind == "explain" for job in self.explains),
                "warm": sum(job.kind == "warm" for job in self.explains),
                "running": {"kind": running.kind, "id": running.request_id} if running else None,
            }
            waiting = [
                {"kind": job.kind, "id": job.request_id, "client": job.client, "document": job.document}
                for job in (*self.completions, *self.explains)
                if job is not running
            ]
        recent = list(self.recent)
        decode = [r["tokens_per_s"] for r in recent if r.get("tokens_per_s")]
        totals = dict(self.totals)
        prompt = totals["prompt_tokens"]
        return {
            "queue": queue,
            "waiting": waiting,
            "cache": {
                "slots": [{"tokens": len(s.ids)} for s in self.engine.slots],
                "kv_bytes_per_slot": self.engine.kv_bytes_per_token() * self.engine.max_length,
                "reuse_ratio": round(totals["cached_tokens"] / prompt, 4) if prompt else None,
                **totals,
            },
            "finish_reasons": dict(self.finish_reasons),
            "throughput": {
                "decode_tokens_per_s": round(float(np.median(decode)), 2) if decode else None,
                "prefill_tokens_per_s": (
                    round(self.engine.prefill_tokens / self.engine.prefill_seconds, 1)
                    if self.engine.prefill_seconds
                    else None
                ),
                "chunk_tokens": self.engine.chunk_tokens,
                "worst_cancel_latency_ms": round(self.worst_cancel_ms, 2),
            },
        }

    # --- the engine thread ---------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self.lock:
                job = self._next()
                while job is None and not self.stopping:
                    self.lock.wait()
                    job = self._next()
                if job is None:
                    return
                self.running = job
            try:
                finished = self._advance(job)
            except RuntimeFault as exc:
                finished = True
                job.done(exc)
            except Exception as exc:  # keep serving: one failed request must not take the daemon down
                log.exception("request %s failed", job.request_id)
                finished = True
                job.done(RuntimeFault(f"generation failed: {exc.__class__.__name__}: {exc}"))
            with self.lock:
                self.running = None
                if finished:
                    queue = self._queue(job)
                    if job in queue:
                        queue.remove(job)

    def _next(self) -> Job | None:
        """A completion, else the first explanation; cancelled queued jobs end here without running. Among
        completions, the oldest of the client served least recently: a client that queues many (another editor,
        a script) cannot make one that asks for a single suggestion wait behind all of them."""
        if self.completions:
            order = {id(job): n for n, job in enumerate(self.completions)}
            job = min(self.completions, key=lambda j: (self.served.get(j.client, -1), order[id(j)]))
            self.serving += 1
            self.served[job.client] = self.serving
            if len(self.served) > MAX_REMEMBERED_CLIENTS:
                waiting = {j.client for j in self.completions}
                self.served = {c: t for c, t in self.served.items() if c in waiting}
            return job
        return self.explains[0] if self.explains else None

    def _completion_waiting(self) -> bool:
        return any(job.cancel_reason is None for job in self.completions)

    def _should_yield(self, job: Job) -> bool:
        return job.cancel_reason is not None or (job.kind in BACKGROUND and self._completion_waiting())

    def _advance(self, job: Job) -> bool:
        """Run `job` until it ends (True) or a completion pre-empts it (False)."""
        engine = self.engine
        if job.parser is None:
            single = job.kind == "complete"
            job.parser = ChannelParser(
                engine.codec.special,
                "final" if single else "analysis",
                single_message=single,
                ignore_eos=job.ignore_eos,
            )
            job.decoder = DecodeText(engine.tokenizer)
            job.stopper = StopStrings(job.stops, job.lead)
        if job.slot is None or job.slot.owner is not job or job.logits is None:
            if job.cancel_reason:
                return self._finish(job, None)
            busy = {id(j.slot) for j in self.explains if j is not job and j.slot is not None}
            job.slot = engine.pick_slot(job.sequence, job, avoid=lambda s: id(s) in busy)
            result = engine.prefill(job.slot, job.sequence, lambda: self._should_yield(job))
            job.prefill_s += result.seconds
            if job.cached_tokens is None:
                job.cached_tokens = result.reused
            if result.logits is None:
                if job.cancel_reason:
                    return self._finish(job, None)
                job.preemptions += 1
                return False
            job.logits = result.logits
        if job.kind == "warm":
            return self._finish(job, "warmed")  # the prompt is in the cache: nothing to write
        return self._decode(job)

    def _decode(self, job: Job) -> bool:
        engine = self.engine
        assert job.slot is not None and job.parser is not None and job.decoder is not None
        assert job.stopper is not None
        if job.decode_started is None:
            job.decode_started = time.perf_counter()
        while True:
            if job.cancel_reason:
                return self._finish(job, None)
            if job.kind == "explain" and self._completion_waiting():
                job.preemptions += 1
                return False
            if len(job.generated) >= job.max_new_tokens:
                return self._finish(job, "length")
            if job.time_budget_s is not None and time.perf_counter() - job.decode_started > job.time_budget_s:
                return self._finish(job, "time_budget")
            if len(job.slot.ids) + 1 >= engine.max_length:
                return self._finish(job, "context_full")
            if self._must_answer(job):
                self._open_final(job)
            assert job.logits is not None
            token = job.sampler(job.logits)
            if job.first_token is None:
                job.first_token = time.perf_counter()
            for event in job.parser.feed(token, job.decoder):
                if event.finish:
                    return self._finish(job, event.finish)
                assert event.token is not None
                text = job.decoder.step(event.channel, event.token)
                if event.channel == "final":
                    text = job.stopper.push(text)
                self._emit(job, event.channel, text)
                if job.stopper.hit:
                    return self._finish(job, "stop_string")
            job.generated.append(token)
            job.logits = engine.step(job.slot, token)

    @staticmethod
    def _must_answer(job: Job) -> bool:
        parser = job.parser
        assert parser is not None
        return (
            job.answer_after is not None
            and not job.answer_forced
            and len(job.generated) >= job.answer_after
            and parser.in_content
            and parser.channel != "final"
        )

    def _open_final(self, job: Job) -> None:
        """Close the message being reasoned and open the final channel's, as if the model had written it; the
        tokens go into the cache in one read, and the answer is sampled from there."""
        assert job.slot is not None and job.parser is not None and job.decoder is not None
        codec = self.engine.codec
        forced = [codec.special.end, *codec.header("assistant", "final")]
        for token in forced:
            job.parser.feed(token, job.decoder)
        job.generated += forced
        job.answer_forced = True
        job.logits = self.engine.prefill(job.slot, job.sequence, lambda: False).logits

    def _emit(self, job: Job, channel: str, text: str) -> None:
        if not text:
            return
        job.texts.setdefault(channel, []).append(text)
        job.emit(channel, text)

    def _finish(self, job: Job, reason: str | None) -> bool:
        now = time.perf_counter()
        if reason is None:
            reason = job.cancel_reason or "cancelled"
        if job.stopper is not None and reason not in ("stop_string",) and not job.cancel_reason:
            self._emit(job, "final", job.stopper.flush())
        decode_s = now - job.decode_started if job.decode_started else 0.0
        result: dict[str, Any] = {
            "text": "".join(job.texts.get("final", [])),
            "finish_reason": reason,
            "prompt_tokens": len(job.prompt.ids),
            "cached_tokens": job.cached_tokens or 0,
            "generated_tokens": len(job.generated),
            "truncated": job.prompt.truncated,
            "queued_ms": round(((job.decode_started or now) - job.received - job.prefill_s) * 1000, 2),
            "prefill_ms": round(job.prefill_s * 1000, 2),
            "ttft_ms": round((job.first_token - job.received) * 1000, 2) if job.first_token else None,
            "tokens_per_s": round(len(job.generated) / decode_s, 2) if decode_s > 0 and job.generated else None,
            "preemptions": job.preemptions,
        }
        if job.kind == "explain":
            result["analysis"] = "".join(job.texts.get("analysis", []))
            result["analysis_cut"] = job.answer_forced
        if job.cancel_requested is not None:
            latency = (now - job.cancel_requested) * 1000
            result["cancel_latency_ms"] = round(latency, 2)
            self.worst_cancel_ms = max(self.worst_cancel_ms, latency)
        if job.slot is not None and job.slot.owner is job:
            job.slot.owner = None
        # the cache's figures count the prompts that were read: one cancelled while it queued was never looked up
        read = job.cached_tokens is not None
        for key, value in (
            ("requests", 1),
            ("prompt_tokens", len(job.prompt.ids) if read else 0),
            ("cached_tokens", job.cached_tokens or 0),
            ("generated_tokens", len(job.generated)),
        ):
            self.totals[key] += value
        self.finish_reasons[reason] = self.finish_reasons.get(reason, 0) + 1
        self.recent.append(result)
        job.done(result)
        return True
