"""The model behind the server: one worker thread answering queued requests in batches with gen().

Requests wait in one first-in-first-out queue. The worker takes the oldest request and every other
waiting request with the same sampling settings (up to max_batch) and answers them together with
gen(), each row with its own token limit, stop strings, stream and cancellation. The last batch's clients
send their next requests as their answers arrive, a few milliseconds apart: for a short while after a batch
(gather_share of its time, at most gather_max_s: a batch that compiled took a minute), the worker waits for
them, beside those that were already waiting, before it starts the next. Without that, the first few made a
batch of their own and the rest waited for it to finish, a whole batch. A request hears back
through its Job's event queue, on the event loop it came from. Nothing here knows HTTP.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from ..batch_kernels import holds_two_copies
from ..errors import UserError
from ..generation import gen
from ..modeling import context_length

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One request as the worker sees it. Events to the requester: ("delta", text) for each streamed
    piece, then ("done", Answer) or ("error", message)."""
    prompt: str                       # the full prompt text, rendered once (routes.prompt_text)
    max_tokens: int
    temperature: float
    top_p: float
    stop: list[str]
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: bool = False           # set by the requester when its client leaves; the row stops
    finished: bool = False            # answered (or failed, or dropped): no longer counted as in flight

    def send(self, kind: str, value) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))


class Busy(Exception):
    """max_concurrent requests are already waiting or being answered."""


class Engine:
    """One model, one worker thread, a fair queue, batches of waiting requests with equal sampling. It also
    says what the model is, for the routes: its name, tokenizer, template (chat prompts) and context."""

    def __init__(self, model, tokenizer, template, model_name: str, max_batch: int = 16,
                 max_concurrent: int = 64, fast: bool = False, log_prompts: bool = False,
                 gather_share: float = 0.1, gather_max_s: float = 0.5):
        self.model, self.tokenizer, self.template, self.model_name = model, tokenizer, template, model_name
        self.max_batch, self.max_concurrent, self.fast, self.log_prompts = max_batch, max_concurrent, fast, log_prompts
        self.gather_share, self.gather_max_s = gather_share, gather_max_s
        self.expected = 0  # requests the next batch waits for: those waiting at the running batch's first answer,
                           # and the batch's own clients
        self.running: list[Job] = []  # the running batch's live rows: those not cancelled by then come back
        self.first_answer = True  # the running batch has answered no one yet
        self.gather_until = 0.0  # time.monotonic() until which the next batch waits for the expected requests
        self.context = context_length(model.config)
        self.waiting: deque[Job] = deque()
        self.in_flight = 0
        self.batch_sizes: Counter = Counter()  # how many batches of each size were generated
        self.lock = threading.Condition()
        self.worker = threading.Thread(target=self.work, name="kochat-generate", daemon=True)
        self.worker.start()

    def submit(self, job: Job) -> None:
        """Queue a job, or raise Busy."""
        with self.lock:
            if self.in_flight >= self.max_concurrent:
                raise Busy()
            self.in_flight += 1
            self.waiting.append(job)
            self.lock.notify()

    def status(self) -> dict:
        with self.lock:
            return {"waiting": len(self.waiting), "in_flight": self.in_flight,
                    "batch_sizes": dict(sorted(self.batch_sizes.items()))}

    def warm_up(self, prompt: str, max_tokens: int, progress: bool = True) -> list[int]:
        """Answer `prompt` in a batch of each size fast mode pads to (1, 2, 4 … up to max_batch, or max_concurrent
        if fewer), through the queue and the worker as requests go (CUDA graphs belong to the thread that records
        them), so that the decoding step is compiled before the first client: torch compiles it for one row and
        once for a batch of any size and pool length (about a minute each at 12.8b on a GPU); the sizes after two
        rows then only record their CUDA graphs. One row's static cache covers answers
        whose prompt plus max_tokens round to the same length as `prompt`'s (gen() sizes it in steps of 128
        tokens); a longer one, such as a prompt with document passages, compiles when it first comes. Returns the
        sizes answered; the batch counts of status() start again."""
        from tqdm.auto import tqdm

        biggest = min(self.max_batch, self.max_concurrent)
        sizes = sorted({min(1 << i, biggest) for i in range((biggest - 1).bit_length() + 1)})
        max_tokens = max(max_tokens, 2)  # one token is the prompt's forward alone: the decoding step would not run

        async def answer_together(size: int) -> list[str]:
            jobs = [Job(prompt, max_tokens, 0.0, 1.0, [], asyncio.get_running_loop()) for _ in range(size)]
            with self.lock:  # queued at once: the worker takes them as one batch
                self.in_flight += size
                self.waiting.extend(jobs)
                self.lock.notify()
            errors = []
            for job in jobs:  # every row's last event, before this loop closes: the worker sends to it until then
                kind = "delta"
                while kind == "delta":
                    kind, value = await job.events.get()
                if kind == "error":
                    errors.append(value)
            return errors
        for size in tqdm(sizes, desc="compiling the decoding step", unit="batch size", disable=not progress):
            errors = asyncio.run(answer_together(size))
            if errors:
                advice = "--fast=false answers without compiling"
                if "OutOfMemoryError" in errors[0]:
                    advice = "lower --max_batch or --max_tokens" + (
                        ", or --batch_kernel=exact holds the int4 weights once" if holds_two_copies(self.model) else "")
                raise UserError(f"warming up, a batch of {size} failed ({errors[0]}): {advice}, or skip this with "
                                "--warmup=false")
        with self.lock:
            self.batch_sizes.clear()
            self.expected = 0  # the first client does not wait for the warm-up's
        return sizes

    def work(self) -> None:
        while True:
            batch = self.next_batch()
            live = [job for job in batch if not job.cancelled]
            self.batch_sizes[len(live)] += 1
            started = time.monotonic()
            with self.lock:  # a batch whose every row was cancelled answers no one: the last window stands
                self.running, self.first_answer = live, bool(live)
            try:
                if live:
                    self.generate(live)
            except Exception as e:  # a failed batch fails its requests, never the server
                log.exception("generation failed")
                for job in live:
                    if not job.finished:
                        self.finish(job, "error", f"generation failed: {type(e).__name__}")
            finally:
                for job in batch:
                    if not job.finished:  # cancelled before its batch began
                        self.finish(job, None, None)
                if live:
                    ended = time.monotonic()
                    self.gather_until = ended + min(self.gather_share * (ended - started), self.gather_max_s)

    def finish(self, job: Job, kind: str | None, value) -> None:
        """The job stops counting against max_concurrent before its requester hears back: a client that sends its
        next request on hearing is not refused for a batch still finishing others' answers."""
        with self.lock:
            self.in_flight -= 1
            if self.first_answer:  # counted before any of this batch's clients hears back and sends again
                clients = sum(not j.cancelled for j in self.running)
                self.expected, self.first_answer = len(self.waiting) + clients, False
        job.finished = True
        if kind is not None:
            job.send(kind, value)

    def next_batch(self) -> list[Job]:
        """Wait for a job, and until gather_until for those expected (see the module's docstring); take the oldest
        and the later waiting jobs with its sampling settings, oldest first."""
        with self.lock:
            while not self.waiting:
                self.lock.wait()
            while len(self.waiting) < min(self.expected, self.max_batch) and \
                    (left := self.gather_until - time.monotonic()) > 0:
                self.lock.wait(left)
            first = self.waiting.popleft()
            batch = [first]
            for job in list(self.waiting):  # same sampling, so one gen() call
                if len(batch) >= self.max_batch:
                    break
                if (job.temperature, job.top_p) == (first.temperature, first.top_p):
                    self.waiting.remove(job)
                    batch.append(job)
            return batch

    def generate(self, jobs: list[Job]) -> None:
        answers = gen(self.model, self.tokenizer, None, [j.prompt for j in jobs],
                      max_new_tokens=[j.max_tokens for j in jobs], temperature=jobs[0].temperature,
                      top_p=jobs[0].top_p, stop=[j.stop for j in jobs], fast=self.fast,
                      stream=lambda i, text: jobs[i].send("delta", text), cancelled=lambda i: jobs[i].cancelled)
        for job, answer in zip(jobs, answers):
            if self.log_prompts:
                log.info("prompt=%r answer=%r", job.prompt, answer.text)
            self.finish(job, "done", answer)
