"""Where the time goes, at a real shape on one GPU: torch.profiler tables for packed training steps under
three precision set-ups, and for answering steps of gen(fast=True) on the merged bf16 model.

    python3 -m bench.profile_steps --model=/tmp/random-polyglot-ko-12.8b --data=KOALPACA_1K.jsonl --out_dir=DIR

Training set-ups, one loaded 4-bit model, LoRA r=8 on query_key_value, packed 4,096 tokens, flex attention:
  fp32-upcast   peft's prepare_model_for_kbit_training (embeddings, norms, biases to fp32) + Trainer bf16 autocast
  bf16-autocast the same parameters kept in bf16 (LoRA weights fp32) + Trainer bf16 autocast
  bf16-pure     the same parameters kept in bf16 (LoRA weights fp32), no autocast
  compiled      fp32-upcast with each decoder layer wrapped in torch.compile (fuses casts, rotary, LoRA epilogue)
For each: dtype reaching attention, real tokens/s and peak memory (10 steps after 3 warm-up, all layers
checkpointed, then half and none), and a profile of two more steps. The setups run one after another on
the same adapter, which trains as they go: the loss of one fixed packed batch, recorded before each, shows
training progress, not a precision comparison.
Writes DIR/profile.json and DIR/<name>.txt (the tables).
"""
import json
import sys
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from torch.profiler import ProfilerActivity, profile
from transformers import Trainer, TrainingArguments

import finetune_ko as defaults  # the recipe's default settings: its constants block
from bench.speed import CountingCollator, ProfileSteps, StepClock, attempt, load_rows_tokenized, table
from kochat import cli, estimate, modeling, packing, recipe, runs
from kochat.generation import gen
from kochat.prompts import load_template

# ---- constants: override on the command line as --name=value ------------------------------------------
MODEL = ""                          # a model folder (bench/random_model.py writes one of a real shape); required
DATA = ""                           # KoAlpaca-v1.1a rows (.jsonl), for real row lengths; required
OUT_DIR = ""                        # where profile.json and the tables go; required
PART = "all"                        # train, gen or all
SETUPS = "fp32-upcast,bf16-autocast,bf16-pure,compiled"  # training set-ups to run, in this order
CHECKPOINT_SHARES = "1,0.5,0"       # shares of the layers checkpointed, per set-up
WARMUP = 3                          # untimed steps first
TIMED = 10                          # timed steps
PROFILED = 2                        # profiled steps after the timed ones


def cast_base(model, dtype):
    """Every non-4-bit base parameter (embeddings, norms, biases) to `dtype`; LoRA weights stay as they are."""
    for name, p in model.named_parameters():
        if "lora_" not in name and p.__class__.__name__ != "Params4bit" and p.is_floating_point():
            p.data = p.data.to(dtype)


def attention_dtype(model, batch):
    seen = []
    layer = model.base_model.model.gpt_neox.layers[0].attention.query_key_value
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(str(o.dtype)))
    with torch.no_grad():
        model(**batch, use_cache=False)
    handle.remove()
    return seen[0]


def run(model, tokenizer, rows, name, autocast, checkpoint_layers, out_dir, compiled=False):
    layers = model.base_model.model.gpt_neox.layers
    for i, layer in enumerate(layers):
        layer.gradient_checkpointing = i < checkpoint_layers
        if compiled:
            layer.compile()
    train = packing.pack_rows(rows, defaults.PACK_TOKENS)
    collator = CountingCollator(packing.PackedCollator(tokenizer.pad_token_id, defaults.PACK_TOKENS))
    clock, prof = StepClock(), ProfileSteps(WARMUP + TIMED)
    args = TrainingArguments(output_dir=str(out_dir / "trainer"), per_device_train_batch_size=1,
                             max_steps=WARMUP + TIMED + PROFILED, learning_rate=defaults.LEARNING_RATE,
                             optim=defaults.OPTIM,
                             bf16=autocast, logging_steps=1000, save_strategy="no", report_to=[], seed=0,
                             disable_tqdm=True)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    Trainer(model=model, args=args, train_dataset=train, data_collator=collator, callbacks=[clock, prof]).train()
    seconds = clock.ends[WARMUP + TIMED - 1] - clock.ends[WARMUP - 1]
    tokens = sum(collator.real_tokens[WARMUP:WARMUP + TIMED])
    (out_dir / f"{name}.txt").write_text(table(prof.prof))
    return {"real_tok_s": round(tokens / seconds, 1),
            "peak_gib": round(torch.cuda.max_memory_allocated() / estimate.GIB, 2),
            "checkpointed_layers": f"{checkpoint_layers}/{len(layers)}", "profile": f"{name}.txt"}


def fixed_batch_loss(model, tokenizer, rows, autocast):
    budget = defaults.PACK_TOKENS
    batch = packing.PackedCollator(tokenizer.pad_token_id, budget)(list(packing.pack_rows(rows.select(range(16)), budget))[:1])
    batch = {k: v.cuda() for k, v in batch.items()}
    model.eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        loss = model(**batch, use_cache=False).loss.item()
        dtype = attention_dtype(model, batch)
    model.train()
    return loss, dtype


def profile_gen(model, tokenizer, template, questions, out_dir):
    """Per answering step: wall time against GPU kernel time, for gen(fast=True) and plain generate()."""
    found = {}
    for batch in (1, 16):
        qs = questions[:batch]
        gen(model, tokenizer, template, qs, max_new_tokens=256, min_new_tokens=256, fast=True)  # compile at this size
        torch.cuda.synchronize()
        start = time.perf_counter()
        gen(model, tokenizer, template, qs, max_new_tokens=256, min_new_tokens=256, fast=True)
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            gen(model, tokenizer, template, qs, max_new_tokens=64, min_new_tokens=64, fast=True)
            torch.cuda.synchronize()
        (out_dir / f"gen-fast-batch{batch}.txt").write_text(table(prof))
        kernel_us = sum(e.self_device_time_total for e in prof.key_averages())
        found[f"batch {batch}"] = {"tok_s": round(batch * 256 / wall, 1), "ms_per_step": round(wall / 256 * 1e3, 2),
                                   "gpu_kernel_ms_per_step_profiled": round(kernel_us / 64 / 1e3, 2),
                                   "plain_generate_tok_s": plain_generate_tok_s(model, tokenizer, template, qs)}
    return found


def plain_generate_tok_s(model, tokenizer, template, questions, new_tokens=256):
    """The same static-cache generate() without gen()'s per-row tracker: what gen() adds per step."""
    tokenizer.padding_side = "left"
    enc = tokenizer([template.prompt(q, "") for q in questions], return_tensors="pt", padding=True,
                    return_token_type_ids=False).to(model.device)
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, cache_implementation="static",
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    with torch.inference_mode():
        model.generate(**enc, **kwargs)
        torch.cuda.synchronize()
        start = time.perf_counter()
        model.generate(**enc, **kwargs)
        torch.cuda.synchronize()
    return round(len(questions) * new_tokens / (time.perf_counter() - start), 1)


def main(argv):
    cli.apply_command_line(globals(), argv, {}, {}, Path(__file__), __doc__)
    cli.require(globals(), "MODEL", "DATA", "OUT_DIR")
    out_dir = Path(OUT_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"device": torch.cuda.get_device_name(), "versions": runs.versions(),
               "command": " ".join(["python3 -m bench.profile_steps", *argv])}
    tokenizer = modeling.load_tokenizer(MODEL)
    template = load_template(defaults.TEMPLATE, tokenizer)
    loaded, rows = load_rows_tokenized(DATA, tokenizer, template)
    adapter = "/tmp/profile-adapter"

    if PART in ("train", "all"):
        model = modeling.load_model(MODEL, tokenizer, four_bit=True, trainable=True, attention="flex_attention")
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        targets = modeling.lora_targets(model.config, defaults.LORA_TARGETS)
        model = get_peft_model(model, LoraConfig(r=defaults.LORA_R, lora_alpha=defaults.LORA_ALPHA,
                                                 lora_dropout=recipe.lora_dropout(defaults.LORA_DROPOUT, targets),
                                                 target_modules=targets, task_type="CAUSAL_LM"))
        n = len(model.base_model.model.gpt_neox.layers)
        train = {}
        setups = {"fp32-upcast": (torch.float32, True), "bf16-autocast": (torch.bfloat16, True),
                  "bf16-pure": (torch.bfloat16, False), "compiled": (torch.float32, True)}
        for name in SETUPS.split(","):  # "compiled" last: the layers stay compiled
            base_dtype, autocast = setups[name]
            cast_base(model, base_dtype)
            loss, dtype = fixed_batch_loss(model, tokenizer, rows, autocast)
            train[name] = {"fixed_batch_loss": loss, "qkv_output_dtype": dtype}
            for ckpt in (round(n * float(share)) for share in CHECKPOINT_SHARES.split(",")):
                attempt(train[name], f"checkpointed {ckpt}/{n}",
                        lambda: run(model, tokenizer, rows, f"train-{name}-ckpt{ckpt}", autocast, ckpt, out_dir,
                                    compiled=name == "compiled"))
        results["train"] = train
        model.save_pretrained(adapter)
        del model
        torch.cuda.empty_cache()

    if PART in ("gen", "all"):
        questions = [r["instruction"] or r["text"].split("### 답변:")[0] for r in loaded[:16]]
        merged = modeling.load_model(MODEL, tokenizer, four_bit=False, adapter=adapter, merge=True).eval()
        attempt(results, "gen", lambda: profile_gen(merged, tokenizer, template, questions, out_dir))
    (out_dir / "profile.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(cli.run(main))
