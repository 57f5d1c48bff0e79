"""The one gen(): answer questions with the template the model was trained on.

Used by the training demo, chat and serving. Prompts are encoded exactly as in training, left-padded
into one batch and generated together; only new tokens are decoded. No token_type_ids ever reach the
model (GPT-NeoX rejects them). The token loop is transformers' generate() loop, kept in step with it by
tests, run so that the GPU never waits for Python (`decode`). Each row of a batch has its own token
limit, stop strings, stream and cancellation: a RowTracker (kochat/streaming.py) decides per row when it
is done, so a batch of different requests behaves as if each ran alone.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import torch
from transformers import DynamicCache, TemperatureLogitsWarper, TopPLogitsWarper

from . import decode_attention, dp4a_kernel, humming_kernel, row16_kernel, row_sums
from .fused_projections import fuse_projections
from .kv_cache import PooledCache, batch_cache
from .modeling import transformers_model
from .prompts import Template
from .streaming import RowTracker
from .tokenization import encode_prompt

GREEDY_BELOW = 1e-3  # temperatures under this are greedy: dividing logits by 1e-311 overflows them to inf


@dataclass
class Answer:
    question: str
    input: str
    text: str
    new_tokens: int
    seconds: float
    finish_reason: str  # "stop": end of text or a stop string; "length": the token limit; "cancelled"
    prompt_tokens: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "tokens_per_s": round(self.tokens_per_s, 2)}


def render(template: Template | None, item) -> tuple[str, str, str]:
    """(prompt text, question, input) for one item: a question, a (question, input) pair, a conversation
    (a list of {"role", "content"} messages), or, with no template, a raw prompt to continue."""
    if template is None:
        return item, item, ""
    if isinstance(item, list):
        return template.chat(item), item[-1]["content"], ""
    question, extra = (item, "") if isinstance(item, str) else item
    return template.prompt(question, extra), question, extra


def fast_mode(setting: bool | None, model) -> bool:
    """Whether gen() runs its fast mode: as set, or for "auto" (None) where it pays, a model with 16-bit or torchao
    int8/int4 weights (an export_ko.py folder) on a GPU; bitsandbytes 4-bit layers cannot be compiled into its graph."""
    if setting is not None:
        return setting
    return model.device.type == "cuda" and not getattr(model, "is_loaded_in_4bit", False)


def mode_line(model, fast: bool) -> str:
    """One line saying how answers are made: the weights, the device, the mode."""
    from .modeling import saved_quantization

    if getattr(model, "is_loaded_in_4bit", False):
        weights = "4-bit NF4 weights (bitsandbytes)"
    elif saved_quantization(model.config):
        weights = f"{saved_quantization(model.config)}-quantized weights"
        kind = getattr(model.config.quantization_config, "quant_type", None)
        if kind is not None and not isinstance(kind, (str, dict)):  # torchao: its config, e.g. Int8WeightOnlyConfig
            weights = f"{type(kind).__name__} weights (torchao)"
        if humming_kernel.on_humming(model):
            weights += " through humming's kernel"
        if dp4a_kernel.on_dp4a(model):
            weights += ", one row at a time through the dp4a kernel"
    else:
        weights = f"{str(model.dtype).removeprefix('torch.')} weights"
        if row16_kernel.on_row16(model):
            weights += ", one row at a time through kochat's bf16 kernel"
    return f"answering with {weights} on {model.device.type}, fast mode {'on' if fast else 'off'}"


CACHE_STEP = 128  # fast mode's static cache: prompt plus answer rounded up to this. Each new length compiles once;
                  # 256 left a batch of 16 short prompts with 256-token answers 1.6 GiB of unused cache at 12.8b


def gen(model, tokenizer, template: Template | None, questions, *, max_new_tokens=256, temperature: float = 0.0,
        top_p: float = 1.0, fast: bool = False, cache_8bit: bool | None = None, min_new_tokens: int = 0, stop=None,
        stream=None, cancelled=None) -> list[Answer]:
    """Answer each question: a string, a (question, input) pair, or a conversation (a list of messages).
    template None: each item is a raw prompt to continue. temperature 0 (or under GREEDY_BELOW) = greedy.

    max_new_tokens: one limit, or one per question. stop: strings that end an answer (not included), for
    all questions or a list per question. stream(i, text): called with each new piece of answer i.
    cancelled(i): True once question i's caller is gone; its row stops (finish_reason "cancelled").
    fast: a KV cache allocated up front (kochat/kv_cache.py: for a batch, each row's prompt and answer pooled
    without padding; for one row, static), and on a GPU the decode step compiled by transformers into CUDA
    graphs (for models not in 4-bit: load them with four_bit=False, or merge the adapter into a 16-bit base).
    The first calls compile (about a minute each at 12.8b): one row, then once for a batch of any size and
    length (kv_cache.PooledCache.step); one row's static cache compiles again for a longer prompt plus answer
    than any before (in steps of CACHE_STEP tokens). Later calls replay. Same greedy tokens as the default path,
    with the cache in the model's dtype. The model's attention switches to kochat/decode_attention.py's (the same
    for a prompt). Where it compiles, a Llama-family model's q/k/v and gate/up layers are fused in place first
    (kochat/fused_projections.py): the model is then for answering (its state_dict() changes); and under a
    compile with coordinate-descent tuning an ungated MLP's GELU is wrapped (kochat/row_sums.py: no backward).
    cache_8bit: fast mode's key/value cache in 8 bits (kv_cache.py), about half the memory, answers within its
    rounding; None (auto): only where the batch's cache in the model's dtype would not fit the GPU. The default
    path's cache, which grows with the answer, is always in the model's dtype.
    min_new_tokens: end of text is not allowed before this many tokens (benchmarks force full length)."""
    single = isinstance(questions, (str, tuple)) or (isinstance(questions, list) and questions
                                                      and isinstance(questions[0], dict))
    items = [questions] if single else list(questions)
    rendered = [render(template, item) for item in items]
    prompts = [encode_prompt(tokenizer, text) for text, _, _ in rendered]
    limits = list(max_new_tokens) if isinstance(max_new_tokens, (list, tuple)) else [max_new_tokens] * len(items)
    stops = [list(s) for s in stop] if stop and isinstance(stop[0], (list, tuple)) else [list(stop or [])] * len(items)
    asked = len(items)
    if fast:  # graphs are compiled per batch size: a server's batches of 1…16 rows reuse five (1, 2, 4, 8, 16),
        filler = (1 << (asked - 1).bit_length()) - asked  # padded with rows that stop after one token
        prompts, limits, stops = prompts + [prompts[0]] * filler, limits + [1] * filler, stops + [[]] * filler
        stream = (lambda i, text, stream=stream: i < asked and stream(i, text)) if stream else None
        cancelled = (lambda i, cancelled=cancelled: i < asked and cancelled(i)) if cancelled else None
    width = max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id
    device = model.get_input_embeddings().weight.device
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    warpers = [] if temperature < GREEDY_BELOW else [TemperatureLogitsWarper(temperature)] + (
        [TopPLogitsWarper(top_p)] if top_p < 1 else [])
    tracker = RowTracker(tokenizer, limits, stops, stream, cancelled)

    start = time.perf_counter()
    with torch.inference_mode():
        new_ids = decode(model, input_ids, attention_mask, tracker, eos=tokenizer.eos_token_id, pad=pad,
                         min_new_tokens=min_new_tokens, warpers=warpers, fast=fast, cache_8bit=cache_8bit)
    tracker.finish(new_ids)
    seconds = time.perf_counter() - start
    return [Answer(q, i, tracker.text(row).strip(), tracker.tokens[row], seconds, tracker.reason[row] or "length",
                   len(prompts[row]))
            for row, (_, q, i) in enumerate(rendered)]


def decode(model, input_ids, attention_mask, tracker: RowTracker, *, eos: int, pad: int, min_new_tokens: int,
           warpers: list, fast: bool, cache_8bit: bool | None = None) -> list[list[int]]:
    """The token loop behind gen(), as transformers' generate() runs it for greedy search and sampling
    (same positions, masks, float32 scores, warpers, padding of finished rows: the same greedy tokens),
    with one difference: the GPU is never made to wait for Python. Each step's tokens travel to the host
    while the next step runs, and are looked at one step late; generate() instead stops the GPU every token
    to check whether all rows are done, which left ~3.7 ms of host time per token at the 12.8b shape
    (bench/RESULTS.md). Returns each row's generated ids (finished rows continue with padding)."""
    core = transformers_model(model)
    batch, width = input_ids.shape
    steps = max(tracker.limits)
    if steps < 1:
        return [[] for _ in range(batch)]
    length = -(-(width + steps) // CACHE_STEP) * CACHE_STEP if fast else width + steps
    if fast:  # sized in steps so that calls of nearby lengths reuse one graph; pooled where it can be
        forward = compiled_forward(core)
        cache = batch_cache(core, attention_mask, tracker.limits, length, cache_8bit)
    else:
        cache, forward = DynamicCache(config=core.config), core
    with row_sums.one_row_tuning(core, batch if forward is not core else 0):  # compiled for one row: tuned
        mask = torch.ones(batch, length, dtype=attention_mask.dtype, device=input_ids.device)
        mask[:, :width] = attention_mask
        position = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
        pooled = isinstance(cache, PooledCache)  # attends the prompt as the default path does
        logits = core(input_ids=input_ids, attention_mask=mask if fast and not pooled else attention_mask,
                      position_ids=position, past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        position = position[:, -1:]
        limits = torch.tensor(tracker.limits, device=input_ids.device)
        done = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
        out = torch.full((batch, steps), pad, dtype=torch.long, device=input_ids.device)
        host = StepsToHost(batch, input_ids.device)
        last = -1  # the newest step whose tokens were picked
        for step in range(steps):
            # float32 scores on the first GPU, as generate() makes them (a model split over GPUs ends on another)
            scores = logits.to(dtype=torch.float32, device=input_ids.device, copy=True)
            if step < min_new_tokens:
                scores[:, eos] = -float("inf")
            for warp in warpers:
                scores = warp(None, scores)
            token = (torch.multinomial(scores.softmax(-1), 1).squeeze(1) if warpers else scores.argmax(-1))
            token = token.masked_fill(done, pad)
            out[:, step] = token
            done |= (token == eos) | (limits <= step + 1)
            host.send(step, token, done)
            last = step
            if step + 1 < steps:  # queue the next step before looking at this one: the GPU keeps busy
                position = position + 1
                if forward is not core:
                    torch.compiler.cudagraph_mark_step_begin()
                seen = cache.step(position) if pooled else mask if fast else mask[:, :width + step + 1]
                ids = token[:, None]
                if pooled:  # one compiled step for any batch (PooledCache.step)
                    torch._dynamo.maybe_mark_dynamic(ids, 0)
                logits = forward(input_ids=ids, attention_mask=seen, position_ids=position,
                                 past_key_values=cache, use_cache=True).logits[:, -1]
            if step > 0 and looked_at(host, step - 1, tracker, done):
                break
        else:
            looked_at(host, last, tracker, done)
        return out[:, :last + 1].tolist()


def looked_at(host: "StepsToHost", step: int, tracker: RowTracker, done) -> bool:
    """Read one step's tokens on the host; True once every row is done."""
    tokens, all_done = host.receive(step)
    if tracker.per_step:
        ended = tracker.see(tokens)
        if ended:
            done[ended] = True
        return tracker.all_done
    return all_done


class StepsToHost:
    """Each step's tokens and whether all rows are done, copied to pinned host memory without waiting;
    receive(step) waits for that step's copy only. Two slots: a step is received before the step two
    later is sent."""

    def __init__(self, batch: int, device):
        cuda = device.type == "cuda"
        self.slots = torch.empty(2, batch + 1, dtype=torch.long, pin_memory=cuda)
        self.events = [torch.cuda.Event(), torch.cuda.Event()] if cuda else None

    def send(self, step: int, token, done) -> None:
        self.slots[step % 2].copy_(torch.cat([token, done.all().long()[None]]), non_blocking=True)
        if self.events:
            self.events[step % 2].record()

    def receive(self, step: int) -> tuple[list[int], bool]:
        if self.events:
            self.events[step % 2].synchronize()
        values = self.slots[step % 2].tolist()
        return values[:-1], bool(values[-1])


def compiles(model) -> bool:
    """Whether gen()'s fast mode compiles the decoding step of `model` (as generate() would): a GPU, weights that
    compile (not bitsandbytes 4-bit), nothing offloaded. Elsewhere it runs its cache uncompiled."""
    core = transformers_model(model)
    quantizer = getattr(core, "hf_quantizer", None)
    places = set(getattr(core, "hf_device_map", {}).values())
    return core.device.type == "cuda" and (quantizer is None or quantizer.is_compileable) and \
        not places & {"cpu", "disk"}


def compiled_forward(core):
    """transformers' own compiled forward (torch.compile, CUDA graphs) where compiles(core), else the plain forward.
    Compiled as step_compile_config() says (the model's own compile_config, as generate() compiles it, else
    transformers' default and launch_options()), after the projections that read one input are fused
    (kochat/fused_projections.py: fewer, larger products a token), one new token a row attends through
    kochat/decode_attention.py (a batch's pool, each row its own slots, a grouped-query model's cache without widening
    it; one row's static cache on kochat/one_row_attention.py's kernel), and, where the compile makes one-row products
    sums (int8 weights: decode() compiles one row with torchao's settings), the MLP's GELU is kept out of them
    (kochat/row_sums.py)."""
    if not compiles(core):
        return core
    fuse_projections(core)
    decode_attention.use_for_decoding(core)
    config = step_compile_config(core)
    if row_sums.row_products_are_sums(config) or row_sums.holds_int8(core):
        row_sums.keep_apart(core)  # int8: its one-row compile is tuned (row_sums.one_row_tuning)
    return core.get_compiled_call(config)


def step_compile_config(core):
    """How the decoding step compiles: the model's generation_config.compile_config where it has one, else
    transformers' default (reduce-overhead: CUDA graphs) and launch_options()."""
    from transformers import CompileConfig

    if core.generation_config.compile_config is not None:
        return core.generation_config.compile_config
    return CompileConfig(mode=None, options={"triton.cudagraphs": True, **launch_options(core.device)})


def launch_options(device: torch.device) -> dict:
    """Inductor's programmatic dependent launch (triton.enable_pdl) where the GPU has it (NVIDIA, compute capability
    9.0 and newer: Hopper, Blackwell): each of the step's Triton kernels is launched while the one before it ends,
    and waits there only for what it reads of it. A step at one row is ~500 short kernels, and the GPU idled ~1 µs
    between each: measured at the Qwen3-8B shape on an H200 (bench/RESULTS.md, 2026-12-03), one row answered at
    204.9-208.3 tokens/s with it against 195.8-202.7 without, on one machine. kochat's own kernels (NVRTC) launch as
    before. {} elsewhere, where this PyTorch has no such option, or where TORCHINDUCTOR_ENABLE_PDL=0 turns it off."""
    import torch._inductor.config as inductor

    if (device.type == "cuda" and torch.version.hip is None and hasattr(inductor.triton, "enable_pdl")
            and os.environ.get("TORCHINDUCTOR_ENABLE_PDL") != "0"
            and torch.cuda.get_device_capability(device)[0] >= 9):
        return {"triton.enable_pdl": True}
    return {}
