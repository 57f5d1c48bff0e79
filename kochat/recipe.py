"""What finetune_ko.py's steps call besides the libraries, kept here so the script reads like the notebook:

- step 0: `check_constants`, every constant's value checked before anything loads, one line each;
- steps 1-3 as functions (`render`, `tokenize`, `split`), which the script calls one by one and `prepare`
  calls in a row, for the tests and bench/ that need rows exactly as the recipe makes them;
- step 6: the one resume helper (`resume_point`), the one list of callbacks (`Callbacks`: TensorBoard, the
  step timer (first step, then speed), checkpoint sealing, stop on Ctrl-C/SIGTERM) and `train`, which also
  finishes a run stopped after its last checkpoint.

The recipe's default settings stay where the user edits them, in finetune_ko.py's constants block; bench/
imports them from there.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from transformers import TrainerCallback
from transformers.training_args import OptimizerNames

from . import checkpoints, conversations, data, estimate, modeling, runs, tokenization
from .cli import auto_or_number, flag
from .errors import UserError
from .prompts import TemplateRefused

ATTENTIONS = ("auto", "sdpa", "eager", "flex_attention")
# transformers' schedulers that need nothing beyond the warm-up and the number of steps
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt")


# ---- step 0 --------------------------------------------------------------------------------------------
def check_constants(c: dict, config) -> list[str] | str:
    """Each constant that would reach a library unchecked (and fail there with a traceback, or later, after
    the model has loaded) is checked here, with a line naming its option and what it may be. Returns the
    LoRA targets, "auto" resolved for this model (kochat.modeling.lora_targets)."""

    def need(ok: bool, name: str, what: str) -> None:
        if not ok:
            raise UserError(f"{flag(name)} must be {what}, not {c[name]!r}")

    saved = modeling.saved_quantization(config)  # bitsandbytes 4-bit as saved loads as the recipe's (and trains)
    if saved and saved != "bitsandbytes":  # transformers would refuse it, after the data is read
        raise UserError(f"{flag('MODEL_ID', c['MODEL_ID'])} is saved quantized ({saved}; an int8/int4 export is, "
                        f"for answering): train from the 16-bit model, or from a merged export "
                        f"(export_ko.py --format=merged)")

    def number(name: str) -> bool:
        return isinstance(c[name], (int, float)) and not isinstance(c[name], bool) and math.isfinite(c[name])

    def auto_or_in(name: str, low: float, high: float, high_included: bool, whole: bool = False) -> bool:
        try:  # "auto", or a number in range (a whole one if `whole`)
            value = auto_or_number(name, c[name])
        except UserError:
            return False
        return value is None or ((low <= value < high or (high_included and value == high)) and
                                 (value.is_integer() or not whole))

    for name in ("MAX_CHARS", "MAX_LEN", "LORA_R", "GRAD_ACCUM", "LOGGING_STEPS", "EVAL_STEPS", "SAVE_STEPS"):
        need(c[name] >= 1, name, "at least 1")
    need(auto_or_in("BATCH_SIZE", 1, math.inf, False, whole=True), "BATCH_SIZE", "auto or a whole number, at least 1")
    for name in ("PACK_TOKENS", "WARMUP_STEPS", "MAX_NEW_TOKENS", "GROUNDED_DISTRACTORS", "LOSS_CHUNK"):
        need(c.get(name, 0) >= 0, name, "0 or more")
    need(c["MAX_STEPS"] == -1 or c["MAX_STEPS"] >= 1, "MAX_STEPS", "-1 (run EPOCHS) or at least 1")
    need(0 <= c["SEED"] < 2**32, "SEED", "a whole number from 0 to 4294967295")  # numpy's seeds, set by set_seed
    for name in ("LEARNING_RATE", "LORA_ALPHA", "EPOCHS"):
        need(number(name) and c[name] > 0, name, "a number above 0")
    need(auto_or_in("LORA_DROPOUT", 0, 1, False), "LORA_DROPOUT", "auto or from 0 up to (not including) 1")
    need(number("EVAL_FRACTION") and 0 <= c["EVAL_FRACTION"] < 1, "EVAL_FRACTION",
         "a share from 0 (no eval) up to (not including) 1")
    need(auto_or_in("GRADIENT_CHECKPOINTING", 0, 1, True), "GRADIENT_CHECKPOINTING",
         "auto or a share of the layers, from 0 (none) to 1 (all)")
    need(number("TEMPERATURE") and 0 <= c["TEMPERATURE"] <= 2, "TEMPERATURE", "from 0 (greedy) to 2")
    need(number("TOP_P") and 0 < c["TOP_P"] <= 1, "TOP_P", "above 0 and at most 1")
    need(c["KEEP_CHECKPOINTS"] >= 2, "KEEP_CHECKPOINTS",
         "at least 2 (a crash while one is saved leaves the other)")
    need(c["ATTENTION"] in ATTENTIONS, "ATTENTION", "one of " + ", ".join(ATTENTIONS))
    need(c["ATTENTION"] != "flex_attention" or torch.cuda.is_available(), "ATTENTION",
         "auto or sdpa on a machine without a CUDA GPU (flex_attention trains on a GPU only)")
    need(c["LR_SCHEDULER"] in LR_SCHEDULERS, "LR_SCHEDULER", "one of " + ", ".join(LR_SCHEDULERS))
    optimizers = [o.value for o in OptimizerNames]
    need(c["OPTIM"] in optimizers, "OPTIM", "a transformers optimizer name, e.g. paged_adamw_8bit or adamw_torch")
    need(bool(c["RUN_NAME"]) and "/" not in c["RUN_NAME"], "RUN_NAME",
         f"a folder name ({flag('OUTPUT_DIR')} takes a path)")
    if c["PACK_TOKENS"] and c["MAX_LEN"] > c["PACK_TOKENS"]:
        raise UserError(f"{flag('MAX_LEN')} ({c['MAX_LEN']}) is longer than {flag('PACK_TOKENS')} "
                        f"({c['PACK_TOKENS']}): a row must fit a sequence")
    if c["RESUME"] not in ("auto", "never"):
        checkpoints.resume_point(Path(), c["RESUME"])  # a path: it must be a complete checkpoint
    return modeling.lora_targets(config, c["LORA_TARGETS"])  # "auto" resolved, names checked


SEED_LORA_DROPOUT = 0.05  # the KoAlpaca recipe's, on GPT-NeoX's one adapted layer a block


def lora_dropout(setting, targets: list[str] | str) -> float:
    """LORA_DROPOUT, "auto" resolved: the KoAlpaca recipe's 0.05 where LoRA adapts one layer of each block
    (GPT-NeoX's query_key_value), 0 where it adapts several: each adapted layer keeps a dropout copy of its input
    for backward, and all 7 of Qwen3-8B's cost 4.8 GiB at 4,096 tokens and 5 % of the speed (bench/RESULTS.md)."""
    chosen = auto_or_number("LORA_DROPOUT", setting)
    if chosen is not None:
        return chosen
    return 0.0 if adapts_several(targets) else SEED_LORA_DROPOUT


def batch_size(setting, targets: list[str] | str, config, counts: estimate.ParamCount, *, seq_len: int, optim: str,
               compiled: bool, loss_chunk: int, lora_dropout: float,
               launch: estimate.Launch = estimate.ONE_PROCESS) -> int:
    """BATCH_SIZE, "auto" resolved: 2 sequences a step where LoRA adapts several layers of each block and 2 fit a
    24 GB card at some checkpointed share (the estimate, for this launch), else 1 (GPT-NeoX's query_key_value:
    the KoAlpaca recipe's). Each adapted layer is a few launches from Python on every call, forward, recomputed
    and backward, however many tokens it is given: at one 4,096-token sequence a step Qwen3-8B's 7 a block left
    the H200 waiting a quarter of each step; 2 a step trained 24 % faster, in less memory (auto checkpointing takes
    more layers), while GPT-NeoX's one was 1.7 % slower at 2 (bench/RESULTS.md). Measured on Qwen3-8B only."""
    chosen = auto_or_number("BATCH_SIZE", setting)
    if chosen is not None:
        return int(chosen)
    if not adapts_several(targets):
        return 1
    two = estimate.estimate_training_gib(config, counts, 2, seq_len, 1.0, optim, compiled, loss_chunk, lora_dropout,
                                         launch)
    return 2 if sum(two.values()) <= estimate.FITS_GIB else 1


def adapts_several(targets: list[str] | str) -> bool:
    """Whether LoRA on `targets` adapts several layers of each block."""
    if isinstance(targets, str):  # PEFT's all-linear, or a pattern (modeling.decoder_pattern): one alternative a module
        return targets == "all-linear" or "|" in targets
    return len(targets) > 1


def checkpointing_share(setting, config, counts: estimate.ParamCount, *, batch: int, seq_len: int, optim: str,
                        compiled: bool, loss_chunk: int, lora_dropout: float,
                        launch: estimate.Launch = estimate.ONE_PROCESS) -> float:
    """GRADIENT_CHECKPOINTING, "auto" resolved from the model's config and parameter counts alone (a meta model:
    no weights are loaded): the share of layers that keeps the estimate within a 24 GB card
    (kochat.estimate.checkpointing_to_fit)."""
    chosen = auto_or_number("GRADIENT_CHECKPOINTING", setting)
    if chosen is not None:
        return chosen
    return estimate.checkpointing_to_fit(config, counts, batch, seq_len, optim, compiled, loss_chunk, lora_dropout,
                                        launch)


# ---- steps 1-3 -----------------------------------------------------------------------------------------
def render(rows: list[dict], template, report: data.SkipReport) -> Dataset:
    """Step 2: validated rows as examples of (text, trained) pieces in the template's form (columns "texts",
    "trained", "prompt_key", and "row": which row each came from). A conversation the template refuses is skipped
    and counted in the report; what each rendered row holds (answers, conversations…) is counted there too."""
    texts, trained, keys, of_row = [], [], [], []
    for index, row in enumerate(rows):
        try:
            made, per_answer = conversations.examples(template, row)
        except ValueError as e:  # counted by reason: a template's in its own words, others without the row's details
            report.skip(str(e) if isinstance(e, TemplateRefused) else str(e).split(":")[0])
            continue
        report.count(index, {**data.row_counts(row), "split per answer": per_answer})
        key = conversations.prompt_key(made[0])  # every example of one conversation goes to the same split
        for pieces in made:
            texts.append([text for text, _ in pieces])
            trained.append([flag for _, flag in pieces])
            keys.append(key)
            of_row.append(index)
    if not texts:
        raise UserError("the template refused every row; " + "; ".join(report.lines()[1:3]))
    return Dataset.from_dict({"texts": texts, "trained": trained, "prompt_key": keys, "row": of_row})


def tokenize(texts: Dataset, tokenizer, max_len: int, train_on_prompt: bool, report: data.SkipReport) -> Dataset:
    """Step 3: input ids and labels (only the answers and their end of turn trained on, unless
    train_on_prompt); a row with an example over max_len tokens is dropped whole, never cut, and counted in the
    report (its answers and conversation no longer among what the kept rows hold)."""
    tokenized = tokenization.tokenize_examples(texts, tokenizer, train_on_prompt)
    tokenized, too_long = tokenization.drop_too_long(tokenized, max_len)
    report.skip(f"longer than MAX_LEN ({max_len} tokens)", count=len(too_long))
    report.uncount(too_long)
    if len(tokenized) == 0:
        raise UserError(f"every row is longer than MAX_LEN={max_len} tokens; raise {flag('MAX_LEN')}")
    return tokenized.remove_columns("row")


def split(tokenized: Dataset, eval_fraction: float, seed: int,
          report: data.SkipReport | None = None) -> tuple[Dataset, Dataset | None]:
    """Step 3: (train rows, eval rows or None), the eval share drawn with the seed by prompt: rows that share
    a prompt (the same question with another answer, the examples of one conversation) go to the same side,
    so the eval loss is never measured on a prompt trained on. With a report, the evidence goes in it: how many
    eval rows' prompt tokens are also a training row's (`overlap`)."""
    keys = tokenized["prompt_key"]
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    train, held_out = tokenized, None
    if eval_fraction > 0 and len(groups) >= 2:
        order = list(groups)
        random.Random(seed).shuffle(order)
        wanted, rows = min(max(1, round(eval_fraction * len(keys))), len(keys) - 1), []  # some stay for training
        for key in order:
            if len(rows) + len(groups[key]) <= wanted:  # a prompt with many rows never swallows the split
                rows += groups[key]
        if rows:
            train = tokenized.select(sorted(set(range(len(keys))) - set(rows)))
            held_out = tokenized.select(sorted(rows))
    if report is not None:
        report.counts["eval prompts also trained on"] = overlap(train, held_out)
    plain = ["prompt_key", "prompt_len"]  # what training and the collators read, no more
    return train.remove_columns(plain), None if held_out is None else held_out.remove_columns(plain)


def overlap(train: Dataset, held_out: Dataset | None) -> int:
    """Eval rows whose prompt tokens (before the first answer token, "prompt_len") are a training row's prompt too:
    0 for `split`'s, counted in the data report as the evidence."""
    if held_out is None:
        return 0

    def prompts(rows):
        return [tuple(ids[:n]) for ids, n in zip(rows["input_ids"], rows["prompt_len"])]

    trained = set(prompts(train))
    return sum(prompt in trained for prompt in prompts(held_out))


@dataclass
class Prepared:
    rows: list[dict]          # step 1: the usable rows
    report: data.SkipReport   # what was read, kept and skipped, and why
    texts: Dataset            # step 2
    train: Dataset            # step 3
    eval: Dataset | None


def prepare(source: str, tokenizer, template, *, max_chars: int, max_len: int, columns: data.Columns = data.Columns(),
            train_on_prompt: bool = False, eval_fraction: float = 0.0, seed: int = 42) -> Prepared:
    """Steps 1-3 as finetune_ko.py runs them, in one call (pass its constants for its settings), without the
    grounded rows of step 1 (GROUNDED_ROWS, off by default)."""
    rows, report = data.load_rows(source, columns, template, max_chars)
    texts = render(rows, template, report)
    train, held_out = split(tokenize(texts, tokenizer, max_len, train_on_prompt, report), eval_fraction, seed, report)
    return Prepared(rows, report, texts, train, held_out)


# ---- step 6 --------------------------------------------------------------------------------------------
def resume_point(output_dir: Path, constants: dict, resume: str, overwrite: bool, may_change) -> str | None:
    """The checkpoint this run continues from, or None to start afresh; the one resume helper of step 6.

    With `overwrite`, a finished run in the folder, or checkpoints made with other settings (or any, with
    RESUME "never"), are removed first: the run starts over. Checkpoints of the same settings are continued
    either way, which ends where starting over would. Half-saved checkpoints are removed. The run's constants
    are recorded beside its checkpoints; `may_change` names those a rerun may change (RESUME_MAY_CHANGE)."""
    folder = output_dir / "checkpoints"
    if overwrite and (runs.holds_finished_run(output_dir) or resume == "never"
                      or checkpoints.changed_settings(folder, constants, may_change)):
        reports = runs.clear_run(output_dir)
        print(f"    the earlier run in {output_dir} removed (--overwrite)"
              + (f", with its {reports} eval report files (eval/cache kept)" if reports else ""))
    point = checkpoints.resume_point(folder, resume)
    checkpoints.check_same_settings(folder, constants, point, may_change)
    return point


class StepTimer(TrainerCallback):
    """Prints, once, how long the run took from the process start to its first finished training step; then
    measures the training speed: real (non-padding) tokens a second, all processes together (the Trainer counts
    them: include_num_input_tokens_seen="non_padding"), over the steps after the first (which compiles the
    layers), evaluations and checkpoint saves left out."""

    def __init__(self, started: float):
        self.started, self.first_step_s, self.peak_gib, self.real_tok_s = started, None, None, None
        self.step_began = self.tokens_before = None
        self.seconds = self.tokens = 0

    def on_step_begin(self, args, state, control, **kwargs):
        self.step_began, self.tokens_before = time.time(), state.num_input_tokens_seen

    def on_step_end(self, args, state, control, **kwargs):
        now = time.time()
        if self.first_step_s is None:
            self.first_step_s = round(now - self.started, 1)
            gpu = ""
            if torch.cuda.is_available():
                self.peak_gib = round(torch.cuda.max_memory_allocated() / 2**30, 2)
                gpu = f", GPU memory peak so far {self.peak_gib} GiB"
            print(f"\n    first training step done {self.first_step_s} s after start{gpu}", flush=True)
            return
        self.seconds += now - self.step_began
        self.tokens += state.num_input_tokens_seen - self.tokens_before
        self.real_tok_s = round(self.tokens / self.seconds, 1)


class Callbacks(list):
    """The Trainer's callbacks in finetune_ko.py: TensorBoard events in `logs`, the step timer, sealing of
    each checkpoint (after the callbacks in `before_seal` have added to it), and a clean stop on Ctrl-C or SIGTERM.
    A list, with the two the script reads after training by name."""

    def __init__(self, logs: Path, process_start: float, tensorboard: bool = True, before_seal=()):
        from transformers.integrations import TensorBoardCallback

        self.step_timer, self.stop = StepTimer(process_start), checkpoints.StopOnSignal()
        board = []
        if tensorboard:  # the main process's only
            board = [TensorBoardCallback()]
            # its folder, not a writer: it closes its writer when training ends and opens another for the eval
            # loss after, in this folder (a writer given to it would be replaced by one in checkpoints/runs/)
            board[0].logging_dir = str(logs)
        super().__init__([*board, self.step_timer, *before_seal, checkpoints.SealCheckpoints(), self.stop])


def train(trainer, resume: str | None, callbacks: Callbacks, sharded: bool = False):
    """trainer.train(), continued from `resume`; a run stopped after its last checkpoint is taken from it
    without training again (the Trainer, resumed there, would run one step more). Then the eval loss, unless
    a signal stopped the run. Returns the Trainer's TrainOutput. sharded (FSDP): the Trainer restores the
    optimizer's shards but not the adapter (processes.SaveShardedAdapter), loaded here before FSDP wraps it."""
    if checkpoints.finished_training(resume):
        print(f"[6] training had finished at {resume}")
        result = checkpoints.restore_finished(trainer, resume)
    else:
        if resume:
            print(f"[6] resuming from {resume}")
            if sharded:
                checkpoints.load_adapter(trainer.model, resume)
        result = trainer.train(resume_from_checkpoint=resume)
    stopped = callbacks.stop.agree(trainer.args)  # a signal during the last save: every process skips the evaluation
    if trainer.eval_dataset is not None and not stopped:
        trainer.evaluate()
    return result
