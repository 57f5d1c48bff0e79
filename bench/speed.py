"""Training and answering speed at a real shape on one GPU: the seed recipe and the project's settings in
one process, through the project's own loader, steps 1-3 (kochat.recipe.prepare), packing and gen().
From the repository root:

    python3 -m bench.speed --model=/tmp/random-polyglot-ko-12.8b --data=KOALPACA_1K.jsonl --out=RESULT.json
    python3 -m bench.speed ... --part=train      # or --part=gen
    python3 -m bench.speed ... --part=train --settings=2 --profile=true  # and the GPU kernels of 2 more steps

--model is a model folder (bench/random_model.py writes one of any known shape); --data gives real row
lengths (KoAlpaca-v1.1a rows, tokenized with the model's tokenizer). The recipe's settings (LoRA, optimizer,
learning rate, MAX_LEN, PACK_TOKENS, checkpointing, compiling) are read from finetune_ko.py's constants. Each
measurement runs in its own try block: one failure is recorded in the JSON and the rest still run.
Over 250 lines on purpose: the seed and the project's settings are measured in one process on one loaded
model (the only fair comparison), so training and answering live in one script.
"""
import json
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from torch.profiler import ProfilerActivity, profile
from transformers import TrainerCallback, TrainingArguments

import finetune_ko as defaults  # the recipe's default settings: its constants block
from kochat import cli, estimate, modeling, packing, recipe, runs, tokenization
from kochat.errors import UserError
from kochat.generation import gen
from kochat.loss import ChunkedLossTrainer
from kochat.prompts import load_template

# ---- constants: override on the command line as --name=value ------------------------------------------
MODEL = ""                          # a model folder (bench/random_model.py writes one of a real shape); required
DATA = ""                           # KoAlpaca-v1.1a rows (.jsonl), for real row lengths; required
OUT = ""                            # the result JSON; required
PART = "all"                        # train, gen or all
STEPS = 20                          # timed optimizer steps per training setting, after WARMUP_STEPS
WARMUP_STEPS = 3                    # untimed steps first (compiling, allocator warm-up)
ADAPTER_DIR = "/tmp/bench-adapter"  # the adapter trained by the train part, merged by the gen part
SETTINGS = ""                       # training settings to run, by number (0-4, see TRAIN_SETTINGS); "" = all
ATTENTION = "auto"                  # as finetune_ko.py's ATTENTION: auto, sdpa, flex_attention
LORA_DROPOUT = defaults.LORA_DROPOUT  # as finetune_ko.py's (auto: resolved for the model, kochat.recipe)
GEN_MODES = "all"                   # all, or fast: only the merged bf16 fast mode (no 4-bit and eager runs)
PROFILE = False                     # profile PROFILED_STEPS more steps of each setting (a kernel table beside OUT;
                                    # its peak and train loss then include them, its tokens/s does not)
PROFILED_STEPS = 2

_SHARE = ("the auto-chosen share of the" if defaults.GRADIENT_CHECKPOINTING == "auto" else  # resolved per model
          {1.0: "all", 0.5: "half the", 0.0: "none of the"}.get(defaults.GRADIENT_CHECKPOINTING,
                                                                f"{defaults.GRADIENT_CHECKPOINTING:.0%} of the"))
NAMES = {"seed": "seed: batch 2, pad to longest, all layers checkpointed",  # the keys results/*.json use
         "default": f"packed {defaults.PACK_TOKENS}, {_SHARE} layers checkpointed, "
                    f"{'compiled' if defaults.COMPILE else 'eager'} (finetune_ko.py's defaults)"}
# (name, PACK_TOKENS, BATCH_SIZE, GRADIENT_CHECKPOINTING, compiled), chosen by number with --settings. The seed
# keeps peft's fp32 embeddings and head; the others have them in 16-bit, as finetune_ko.py (modeling.embeddings_in).
TRAIN_SETTINGS = (
    (NAMES["seed"], 0, 2, 1.0, False),
    (f"packed {defaults.PACK_TOKENS}, all layers checkpointed", defaults.PACK_TOKENS, 1, 1.0, False),
    (NAMES["default"], defaults.PACK_TOKENS, defaults.BATCH_SIZE, defaults.GRADIENT_CHECKPOINTING, defaults.COMPILE),
    (f"packed {defaults.PACK_TOKENS}, all layers checkpointed, compiled", defaults.PACK_TOKENS, 1, 1.0, True),
    (f"packed {defaults.PACK_TOKENS}, no checkpointing, compiled", defaults.PACK_TOKENS, 1, 0.0, True),
)


class StepClock(TrainerCallback):
    def __init__(self):
        self.ends = []

    def on_step_end(self, args, state, control, **kwargs):
        torch.cuda.synchronize()
        self.ends.append(time.perf_counter())


class ProfileSteps(TrainerCallback):
    """torch.profiler over the optimizer steps from step `first` to the end of training."""

    def __init__(self, first):
        self.first, self.prof = first, None

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.first:
            self.prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
            self.prof.__enter__()

    def on_train_end(self, args, state, control, **kwargs):
        if self.prof is not None:
            torch.cuda.synchronize()
            self.prof.__exit__(None, None, None)


def table(prof, rows=40):
    return prof.key_averages().table(sort_by="self_device_time_total", row_limit=rows, max_name_column_width=90)


class CountingCollator:
    """The real collator, noting how many real (non-padding) tokens each batch holds, in step order."""

    def __init__(self, inner):
        self.inner, self.real_tokens = inner, []

    def __call__(self, features):
        self.real_tokens.append(sum(len(f["input_ids"]) for f in features))
        return self.inner(features)


def load_rows_tokenized(path, tokenizer, template):
    """The data file's rows as loaded, and tokenized as finetune_ko.py's steps 1-3 do (rows over its MAX_LEN
    dropped, no eval split), shuffled."""
    prepared = recipe.prepare(path, tokenizer, template, max_chars=defaults.MAX_CHARS, max_len=defaults.MAX_LEN)
    return prepared.rows, prepared.train.shuffle(seed=0)


def train_speed(model, tokenizer, rows, *, name, steps, pack_tokens, batch_size, checkpointed, compiled, attention,
                out_dir):
    """Real tokens/s over `steps` optimizer steps after warm-up, and peak memory, for one setting."""
    attention = modeling.training_attention(attention, packed=bool(pack_tokens))
    model.set_attn_implementation(attention)
    seed_style = name == "setting0"
    modeling.embeddings_in(model, torch.float32 if seed_style else torch.bfloat16)
    layers = modeling.language_layers(model)
    checkpoint_layers = modeling.checkpoint_layers(model, checkpointed)  # as finetune_ko.py step 5
    modeling.compile_layers(model, on=compiled)
    if pack_tokens:
        train = packing.pack_rows(rows, pack_tokens)
        collator = CountingCollator(packing.PackedCollator(tokenizer.pad_token_id, pack_tokens))
    else:
        train, collator = rows, CountingCollator(tokenization.make_collator(tokenizer))
    clock, profiled = StepClock(), ProfileSteps(WARMUP_STEPS + steps)
    args = TrainingArguments(output_dir=str(out_dir / name), per_device_train_batch_size=batch_size,
                             max_steps=steps + WARMUP_STEPS + (PROFILED_STEPS if PROFILE else 0),
                             learning_rate=defaults.LEARNING_RATE, optim=defaults.OPTIM,
                             bf16=torch.cuda.is_available(), logging_steps=1000, save_strategy="no", report_to=[], seed=0,
                             disable_tqdm=True)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    # the seed's loss is transformers' own; the project's runs the head in chunks (finetune_ko.py's LOSS_CHUNK)
    trainer = ChunkedLossTrainer(model=model, args=args, train_dataset=train, data_collator=collator, callbacks=[clock],
                                 loss_chunk=0 if seed_style else defaults.LOSS_CHUNK)
    if PROFILE:
        trainer.add_callback(profiled)
    result = trainer.train()
    if profiled.prof is not None:  # beside the result JSON: <OUT stem>-<setting>-profile.txt
        Path(OUT).with_name(f"{Path(OUT).stem}-{name}-profile.txt").write_text(table(profiled.prof))
    seconds = clock.ends[WARMUP_STEPS + steps - 1] - clock.ends[WARMUP_STEPS - 1]
    tokens = sum(collator.real_tokens[WARMUP_STEPS:WARMUP_STEPS + steps])
    step_s = [b - a for a, b in zip(clock.ends[WARMUP_STEPS - 1:], clock.ends[WARMUP_STEPS:WARMUP_STEPS + steps])]
    return {"name": name, "attention": attention, "pack_tokens": pack_tokens, "batch_size": batch_size,
            "embeddings": "fp32" if seed_style else "bf16", "loss_chunk": trainer.loss_chunk,
            "checkpointed_layers": f"{checkpoint_layers}/{len(layers)}", "compiled": compiled, "steps": steps,
            "real_tokens": tokens, "seconds": round(seconds, 3), "real_tok_s": round(tokens / seconds, 1),
            "step_s_min_max": [round(min(step_s), 3), round(max(step_s), 3)],
            "peak_gib": round(torch.cuda.max_memory_allocated() / estimate.GIB, 2),
            "train_loss": round(result.training_loss, 4)}


def packed_loss_check(model, tokenizer, rows, n_rows=8, budget=defaults.PACK_TOKENS):
    """A packed sequence's loss against the token-weighted mean of the same rows run one by one."""
    some = rows.select(range(n_rows))
    packed = packing.pack_rows(some, budget)
    model.eval()
    with torch.no_grad():
        batch = {k: v.cuda() for k, v in packing.PackedCollator(tokenizer.pad_token_id, budget)(list(packed)).items()}
        packed_loss = model(**batch, use_cache=False).loss.item()
        total = count = 0
        for ex in some:
            labels = torch.tensor([ex["labels"]]).cuda()
            loss = model(input_ids=torch.tensor([ex["input_ids"]]).cuda(), labels=labels, use_cache=False).loss.item()
            n = int((labels[:, 1:] != tokenization.IGNORE).sum())
            total, count = total + loss * n, count + n
    model.train()
    return {"rows": n_rows, "sequences": len(packed), "packed_loss": packed_loss, "rows_loss": total / count,
            "relative_difference": abs(packed_loss - total / count) / (total / count)}


def gen_speed(model, tokenizer, template, questions, *, name, fast, new_tokens=256, repeats=2, cache_8bit=None):
    """tokens/s of gen() at full length (end of text suppressed), best of `repeats` after one warm-up; first_s: the
    warm-up's seconds, which in fast mode include compiling for this batch size (what the first answer waits).
    peak_gpu_gib and peak_reserved_gib: the most memory allocated, and held by PyTorch (allocated plus its cache, the
    CUDA context not included), over the whole call, compiling included; warm_peak_gpu_gib: the most allocated
    while the timed answers ran, once compiled."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    gen(model, tokenizer, template, questions, max_new_tokens=new_tokens, min_new_tokens=new_tokens, fast=fast,
        cache_8bit=cache_8bit)
    torch.cuda.synchronize()
    first = time.perf_counter() - start
    # the warm-up's peak, compiling included; then the compiled answers' own
    peak, peak_reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    torch.cuda.reset_peak_memory_stats()
    best = None
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        answers = gen(model, tokenizer, template, questions, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                      fast=fast, cache_8bit=cache_8bit)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        best = seconds if best is None else min(best, seconds)
    tokens = sum(a.new_tokens for a in answers)
    return {"name": name, "batch": len(questions), "new_tokens_each": new_tokens, "seconds": round(best, 3),
            "tok_s": round(tokens / best, 1), "first_s": round(first, 1),
            "peak_gpu_gib": round(max(peak, torch.cuda.max_memory_allocated()) / estimate.GIB, 2),
            "peak_reserved_gib": round(max(peak_reserved, torch.cuda.max_memory_reserved()) / estimate.GIB, 2),
            "warm_peak_gpu_gib": round(torch.cuda.max_memory_allocated() / estimate.GIB, 2)}


def greedy_tokens(model, tokenizer, template, questions, fast, new_tokens=64):
    answers = gen(model, tokenizer, template, questions, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                  fast=fast)
    return [tokenizer(a.text, add_special_tokens=False)["input_ids"] for a in answers]


def share_equal(a, b):
    same = total = 0
    for x, y in zip(a, b):
        for i in range(max(len(x), len(y))):  # tokens up to the first difference count as matching
            if i >= len(x) or i >= len(y) or x[i] != y[i]:
                break
            same += 1
        total += max(len(x), len(y))
    return round(same / total, 4) if total else None


def attempt(results, key, fn):
    try:
        results[key] = fn()
    except Exception as e:  # a benchmark records its failure and goes on
        results[key] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
    print(f"{key}: {json.dumps(results[key], ensure_ascii=False)[:600]}", flush=True)


def main(argv):
    cli.apply_command_line(globals(), argv, {}, {}, Path(__file__), __doc__)
    cli.require(globals(), "MODEL", "DATA", "OUT")
    if PART not in ("train", "gen", "all") or GEN_MODES not in ("all", "fast"):
        raise UserError(f"--part is train, gen or all and --gen_modes all or fast (got {PART!r}, {GEN_MODES!r})")
    out_dir = Path(OUT).parent
    results = {"device": torch.cuda.get_device_name(), "attention": ATTENTION,
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": runs.versions(),
               "model": MODEL, "command": " ".join(["python3 -m bench.speed", *argv])}
    t0 = time.perf_counter()
    tokenizer = modeling.load_tokenizer(MODEL)
    template = load_template(defaults.TEMPLATE, tokenizer)
    model = modeling.load_model(MODEL, tokenizer, four_bit=True, trainable=True)
    torch.cuda.synchronize()
    results["model_load_s"] = round(time.perf_counter() - t0, 1)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                            gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    targets = modeling.lora_targets(model.config, defaults.LORA_TARGETS)
    lora_config = LoraConfig(r=defaults.LORA_R, lora_alpha=defaults.LORA_ALPHA, task_type="CAUSAL_LM",
                             lora_dropout=recipe.lora_dropout(LORA_DROPOUT, targets), target_modules=targets)
    results["lora_dropout"] = lora_config.lora_dropout
    counts = estimate.count_parameters(*estimate.meta_model_with_lora(model.config, lora_config))
    default_batch = recipe.batch_size(  # finetune_ko.py's, "auto" resolved as there
        defaults.BATCH_SIZE, targets, model.config, counts, seq_len=defaults.PACK_TOKENS, optim=defaults.OPTIM,
        compiled=defaults.COMPILE, loss_chunk=defaults.LOSS_CHUNK, lora_dropout=lora_config.lora_dropout)
    default_share = recipe.checkpointing_share(
        defaults.GRADIENT_CHECKPOINTING, model.config, counts,
        batch=default_batch, seq_len=defaults.PACK_TOKENS, optim=defaults.OPTIM, compiled=defaults.COMPILE,
        loss_chunk=defaults.LOSS_CHUNK, lora_dropout=lora_config.lora_dropout)
    model = get_peft_model(model, lora_config)
    loaded, rows = load_rows_tokenized(DATA, tokenizer, template)
    lengths = sorted(len(x) for x in rows["input_ids"])
    results["row_tokens"] = {"rows": len(lengths), "mean": round(sum(lengths) / len(lengths), 1),
                             "median": lengths[len(lengths) // 2], "max": lengths[-1]}

    if PART in ("train", "all"):
        train = {}
        chosen = [int(i) for i in SETTINGS.split(",")] if SETTINGS else range(len(TRAIN_SETTINGS))
        for i in chosen:
            name, pack, batch, share, compiled = TRAIN_SETTINGS[i]
            share = default_share if share == "auto" else share
            batch = default_batch if batch == "auto" else batch
            attempt(train, name, lambda: train_speed(model, tokenizer, rows, name=f"setting{i}", steps=STEPS,
                                                    pack_tokens=pack, batch_size=batch, checkpointed=share,
                                                    compiled=compiled, attention=ATTENTION,
                                                    out_dir=out_dir / "trainer"))
        modeling.compile_layers(model, on=False)
        results["train"] = train
        attempt(results, "packed_loss_check", lambda: packed_loss_check(model, tokenizer, rows))
        model.set_attn_implementation("sdpa")  # answering uses SDPA, as finetune_ko.py's demo does
        model.save_pretrained(ADAPTER_DIR)

    if PART in ("gen", "all"):
        questions = [r["instruction"] or r["text"].split("### 답변:")[0] for r in loaded[:16]]
        generation = {}
        model.eval()
        model.config.use_cache = True
        all_modes = GEN_MODES == "all"
        if all_modes:
            attempt(generation, "4-bit + LoRA, batch 1", lambda: gen_speed(model, tokenizer, template, questions[:1],
                                                                           name="4bit", fast=False))
            attempt(generation, "4-bit + LoRA, batch 16", lambda: gen_speed(model, tokenizer, template, questions,
                                                                            name="4bit", fast=False))
            unmerged = greedy_tokens(model, tokenizer, template, questions[:4], fast=False)
        if not Path(ADAPTER_DIR, "adapter_config.json").exists():
            model.save_pretrained(ADAPTER_DIR)
        del model
        torch.cuda.empty_cache()
        t0 = time.perf_counter()
        merged = modeling.load_model(MODEL, tokenizer, four_bit=False, adapter=ADAPTER_DIR, merge=True).eval()
        results["merged_load_s"] = round(time.perf_counter() - t0, 1)
        # before any fast answer: fast mode fuses a Llama-family model's projections in place, and the default
        # path's tokens are to come from the model as loaded
        eager = greedy_tokens(merged, tokenizer, template, questions[:4], fast=False)
        if all_modes:
            attempt(generation, "merged bf16, batch 1", lambda: gen_speed(merged, tokenizer, template, questions[:1],
                                                                          name="bf16", fast=False))
        attempt(generation, "merged bf16 fast, batch 1", lambda: gen_speed(merged, tokenizer, template, questions[:1],
                                                                           name="bf16-fast", fast=True))
        attempt(generation, "merged bf16 fast, batch 16", lambda: gen_speed(merged, tokenizer, template, questions,
                                                                            name="bf16-fast", fast=True))

        def agreement():
            fast = greedy_tokens(merged, tokenizer, template, questions[:4], fast=True)
            found = {"fast_vs_eager_same_weights": share_equal(fast, eager)}
            if all_modes:
                found["merged_bf16_vs_unmerged_4bit"] = share_equal(eager, unmerged)
            return found
        attempt(generation, "greedy agreement (share of matching tokens, 4 prompts × 64)", agreement)
        results["generation"] = generation
    Path(OUT).write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(cli.run(main))
