"""KoAlpaca QLoRA recipe: polyglot-ko in 4-bit NF4 + LoRA, fine-tuned on Korean questions and answers.

Edit the constants below and run `python3 finetune_ko.py`, or override any of them on the command
line with the same name in lower case:
    python3 finetune_ko.py --max_steps=50 --data=./my_qa.csv
    python3 finetune_ko.py --preset tiny      # offline wiring check of every step on a CPU, < 2 minutes
    python3 finetune_ko.py --dry-run          # parameters and GPU memory estimate, no weights downloaded
Steps 0-8 below run top to bottom, like the notebook this came from.
"""
import time

process_start = time.time()  # for the startup figure: start to first training step

import json
import sys
from pathlib import Path

import kochat  # noqa: F401  first: it quiets a misleading bitsandbytes CPU warning before bitsandbytes loads
import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from transformers import BitsAndBytesConfig, TrainingArguments, set_seed

from kochat import checkpoints, cli, data, estimate, modeling, packing, processes, recipe, runs, tiny, tokenization
from kochat.documents import store, training
from kochat.documents.retrieval import Searcher
from kochat.errors import UserError
from kochat.generation import gen
from kochat.loss import ChunkedLossTrainer, chunked_loss_off  # the Trainer, its loss without the full logits
from kochat.prompts import load_questions, load_template

# ---- constants: edit here, or override on the command line as --name=value -------------------
# model and data
MODEL_ID = "EleutherAI/polyglot-ko-12.8b"   # hub id or local folder (config, weights, tokenizer)
DATA = "beomi/KoAlpaca-v1.1a"               # hub dataset id, a folder, or a .jsonl/.json/.csv/.tsv/.parquet file;
                                            # rows of question/answer columns, or conversations in a 'messages'
                                            # (OpenAI) or 'conversations' (ShareGPT) column
QUESTION_COLUMN = "instruction"             # column with the question
INPUT_COLUMN = "input"                      # optional column with extra input for the question
ANSWER_COLUMN = "output"                    # column with the answer
TEXT_COLUMN = "text"                        # column of rows already rendered in the template's form
TEMPLATE = "auto"                           # auto: the tokenizer's chat template if it has one, else koalpaca;
                                            # chat_template; prompts/<name>.json (koalpaca, alpaca_ko); a .json path
MAX_CHARS = 20_000                          # rows longer than this many characters are skipped
MAX_LEN = 1024                              # rows (conversations) longer than this many tokens are skipped, never cut
PACK_TOKENS = 4096                          # pack whole rows into sequences of this many tokens; 0 = pad batches of rows
ATTENTION = "auto"                          # auto (flex_attention for packed rows on a GPU, else sdpa), sdpa, eager
EVAL_FRACTION = 0.01                        # share of rows held out for the eval loss; 0 = no eval
TRAIN_ON_PROMPT = False                     # False: loss on the answers and their end of turn only
GROUNDED_ROWS = False                       # True: a row's input becomes a numbered passage among distractors, as
                                            # answers from an index (chat_ko.py --index) will see it
GROUNDED_DISTRACTORS = 2                    # passages beside the row's own in a grounded row
GROUNDED_INDEX = ""                         # an index folder (index_ko.py) to draw distractors from; "" = other rows
# LoRA
LORA_R = 8                                  # rank of the adapter matrices
LORA_ALPHA = 32                             # adapter updates are scaled by LORA_ALPHA / LORA_R
LORA_DROPOUT = "auto"                       # dropout on the adapter's input; auto: 0.05 (the KoAlpaca recipe's) where
                                            # LoRA adapts one layer a block, 0 where several (each keeps a copy)
LORA_TARGETS = "auto"                       # auto: query_key_value for GPT-NeoX (the KoAlpaca recipe), every
                                            # attention and MLP linear layer for others; or names: a,b,c; all-linear
# training
BATCH_SIZE = "auto"                         # packed sequences per step (rows per step when PACK_TOKENS = 0); auto:
                                            # 1 where LoRA adapts one layer a block (GPT-NeoX), else 2 where they
                                            # fit (Qwen3-8B: 24 % faster; each update then holds twice the tokens)
GRAD_ACCUM = 1                              # steps per optimizer update (effective batch = BATCH_SIZE × this)
LEARNING_RATE = 1e-4                        # peak learning rate
LR_SCHEDULER = "linear"                     # linear, cosine or constant
WARMUP_STEPS = 0                            # optimizer updates of linear warm-up
EPOCHS = 1.0                                # passes over the training rows (when MAX_STEPS is -1)
MAX_STEPS = -1                              # optimizer updates to run; -1 = EPOCHS
OPTIM = "paged_adamw_8bit"                  # a transformers optimizer name, e.g. adamw_torch
GRADIENT_CHECKPOINTING = "auto"             # share of layers recomputed in backward: 1 = least memory, 0 = fastest;
                                            # auto: half, or more where the estimate would not fit a 24 GB card
COMPILE = True                              # torch.compile each decoder layer on a GPU: +23 % tokens/s, less memory
LOSS_CHUNK = 1024                           # the loss's output head runs over this many positions at a time,
                                            # so the full logits never exist (kochat/loss.py); 0 = all at once
LOGGING_STEPS = 10                          # log the train loss every this many updates
EVAL_STEPS = 200                            # eval loss every this many updates, and at the end
SAVE_STEPS = 500                            # checkpoint every this many updates
KEEP_CHECKPOINTS = 2                        # newest checkpoints kept; at least 2, so a crash mid-save leaves one
RESUME = "auto"                             # auto: continue from the newest complete checkpoint; never; or its path
SEED = 42                                   # data order, eval split, adapter initialisation
# output and demo
RUN_NAME = "polyglot-ko-12.8b-koalpaca"     # the run folder's name under outputs/
OUTPUT_DIR = None                           # None = outputs/<RUN_NAME>
OVERWRITE = False                           # True: replace a finished run (or checkpoints of other settings) there
MERGED_DIR = ""                             # also write the adapter merged into a 16-bit base here (for vLLM); "" = no
DEMO_QUESTIONS = "prompts/demo_questions.txt"  # questions for the gen() demo; "" = no demo
MAX_NEW_TOKENS = 256                        # longest demo answer, in tokens
TEMPERATURE = 0.7                           # demo sampling temperature; 0 = greedy
TOP_P = 0.9                                 # demo nucleus sampling
EVAL_TASKS = ""                             # score the finished run base vs adapter as eval_ko.py does, into
                                            # <run>/eval/: "kobest=DIR[@split]", comma-separated; "" = no

# A rerun continues an unfinished run's checkpoints only if every constant is as it was, except these: how the
# run is watched, saved, sped up or demoed. Every other constant decides what is trained on and how.
RESUME_MAY_CHANGE = {"LOGGING_STEPS", "EVAL_STEPS", "SAVE_STEPS", "KEEP_CHECKPOINTS", "RESUME", "OVERWRITE", "EVAL_TASKS",
                     "OUTPUT_DIR", "RUN_NAME", "MERGED_DIR", "DEMO_QUESTIONS", "MAX_NEW_TOKENS", "TEMPERATURE",
                     "TOP_P", "COMPILE", "GRADIENT_CHECKPOINTING", "ATTENTION", "LOSS_CHUNK"}

# --preset NAME applies these first; explicit --name=value overrides still win.
PRESETS = {
    # The embedded default: every step of the recipe, the real 4-bit path included, offline on a CPU,
    # with a 2-layer GPT-NeoX the project builds and briefly pretrains on its own 212-row Korean sample
    # (kochat/tiny.py). It proves the wiring; its answers are fragments of those rows. A one-minute check is
    # run again as it was first run, so it replaces its own earlier run (an interrupted one still continues).
    "tiny": dict(MODEL_ID=tiny.MODEL_ID, DATA=str(tiny.DATA_FILE), RUN_NAME="tiny", OVERWRITE=True, MAX_LEN=256,
                 PACK_TOKENS=256, EVAL_FRACTION=0.1, BATCH_SIZE="2", LEARNING_RATE=3e-3, WARMUP_STEPS=5, MAX_STEPS=60,
                 LOGGING_STEPS=5, EVAL_STEPS=20, SAVE_STEPS=60, MAX_NEW_TOKENS=24, TEMPERATURE=0.0),
    # The same check for a chat model: a 2-layer Qwen3 whose tokenizer has a chat template (ChatML), trained on
    # the project's 73 Korean conversations (63 of several turns, 22 with a system message) through that template.
    "tiny_chat": dict(MODEL_ID=tiny.CHAT_MODEL_ID, DATA=str(tiny.CHAT_DATA_FILE), RUN_NAME="tiny_chat", OVERWRITE=True,
                      MAX_LEN=512, PACK_TOKENS=512, EVAL_FRACTION=0.1, BATCH_SIZE="2", LEARNING_RATE=3e-3,
                      WARMUP_STEPS=5, MAX_STEPS=60, LOGGING_STEPS=5, EVAL_STEPS=20, SAVE_STEPS=60, MAX_NEW_TOKENS=24,
                      TEMPERATURE=0.0),
}
FLAGS = {"dry-run": "count parameters and estimate GPU memory from the config; load no weights"}


def main(argv):
    given = cli.apply_command_line(globals(), argv, PRESETS, FLAGS, Path(__file__), __doc__)
    output_folder = OUTPUT_DIR or f"outputs/{RUN_NAME}"
    if "preset" in given and "OVERWRITE" not in given["constants"]:  # it replaces its own earlier run, no other
        own = Path("outputs") / PRESETS[given["preset"]]["RUN_NAME"]
        globals()["OVERWRITE"] = Path(output_folder).resolve() == own.resolve()
    cli.require(globals(), "MODEL_ID", "DATA")  # given empty (an unset shell variable): one line, not a lookup of ""
    constants = {name: globals()[name] for name in cli.constant_names(globals())}

    # 0. Set up: model config, every constant checked, LoRA config, output folder, tokenizer, template -
    config = modeling.load_config(MODEL_ID, use_known_table="dry-run" in given)
    targets = recipe.check_constants(constants, config)  # a value a library would refuse is one line, up front
    lora_dropout = recipe.lora_dropout(LORA_DROPOUT, targets)  # auto: 0.05 on one layer a block, else 0
    lora_config = LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=lora_dropout,
                             target_modules=targets, bias="none", task_type="CAUSAL_LM")
    launch = processes.launch()  # one process; or several (torchrun, accelerate launch): DDP, or FSDP to shard
    meta_model, would_quantize = estimate.meta_model_with_lora(config, lora_config)  # no weights: for the estimate
    counts = estimate.count_parameters(meta_model, would_quantize)
    tokens_per_row = PACK_TOKENS or MAX_LEN  # a packed sequence, or a row padded to at most MAX_LEN
    batch_size = recipe.batch_size(  # auto: 1 on one layer a block; else 2, where 2 fit a 24 GB card
        BATCH_SIZE, targets, config, counts, seq_len=tokens_per_row, optim=OPTIM, compiled=COMPILE,
        loss_chunk=LOSS_CHUNK, lora_dropout=lora_dropout, launch=launch)
    constants.update(LORA_DROPOUT=lora_dropout, BATCH_SIZE=batch_size)  # saved, and compared on resume, as trained
    checkpoint_share = recipe.checkpointing_share(  # auto: half the layers, more if a 24 GB card needs it
        GRADIENT_CHECKPOINTING, config, counts, batch=batch_size, seq_len=tokens_per_row, optim=OPTIM,
        compiled=COMPILE, loss_chunk=LOSS_CHUNK, lora_dropout=lora_dropout, launch=launch)
    if "dry-run" in given:  # under the launcher, the estimate is per GPU for that launch
        if processes.is_main():
            print("\n".join(estimate.report(MODEL_ID, config, counts, batch_size, tokens_per_row,
                                             checkpoint_share, OPTIM, compiled=COMPILE, loss_chunk=LOSS_CHUNK,
                                             lora_dropout=lora_dropout, launch=launch)))
        return
    modeling.check_machine_can_run(config)
    if launch.fsdp and not torch.cuda.is_available():
        raise UserError("FSDP shards the model across GPUs and this machine has none: launch several CPU processes "
                        "with torchrun --nproc_per_node=N finetune_ko.py (data parallel) instead")
    launched = processes.start()  # the processes' shared state: the main one prints and saves
    output_dir = runs.prepare_output_dir(output_folder, OVERWRITE)
    if MERGED_DIR:
        runs.check_merged_dir(MERGED_DIR)
    tokenizer = modeling.load_tokenizer(MODEL_ID)
    modeling.check_tokenizer_fits(tokenizer, config)
    template = load_template(TEMPLATE, tokenizer)  # auto: the tokenizer's chat template, else koalpaca
    eos_id = tokenizer.eos_token_id  # <|endoftext|> (id 2) for polyglot-ko, whatever its files say; a chat
                                     # template's end of turn (e.g. <|im_end|>) for a chat model
    questions = load_questions(DEMO_QUESTIONS) if DEMO_QUESTIONS else []  # read now: a bad path fails before training
    if EVAL_TASKS:  # folders, files and columns checked now, not after training
        from kochat.evaluation import steps as evaluation  # lm-eval is imported only when asked for
        evaluation.check_spec(EVAL_TASKS)
    set_seed(SEED)
    print(f"[0] model {MODEL_ID} ({config.model_type}) | end of text {tokenizer.eos_token!r} = id {eos_id} | pad id "
          f"{tokenizer.pad_token_id} | template {template.name} | LoRA on {', '.join(targets) if isinstance(targets, list) else targets}"
          f", dropout {lora_dropout:g} | {checkpoint_share:.0%} of layers checkpointed | output {output_dir}")

    # 1. Load the data: a hub id or a local file; every row validated, bad ones and duplicates skipped and counted
    columns = data.Columns(QUESTION_COLUMN, INPUT_COLUMN, ANSWER_COLUMN, TEXT_COLUMN)
    rows, report = data.load_rows(DATA, columns, template, MAX_CHARS)
    print(f"[1] data {DATA}: {len(rows):,} usable rows")
    if GROUNDED_ROWS:  # learn to answer from given passages: the gold among distractors, numbered [1], [2], …
        searcher = Searcher(store.open_index(GROUNDED_INDEX)) if GROUNDED_INDEX else None
        rows, grounded = training.ground_rows(rows, GROUNDED_DISTRACTORS, SEED, searcher)
        print(f"    grounded {grounded:,} rows with an input among {GROUNDED_DISTRACTORS} distractors "
              f"from {GROUNDED_INDEX or 'other rows'}")
        example = next((r for r in rows if r.get("input")), None)
        if example:
            print(f"    e.g. {example['instruction']!r} with the input:\n      " + example["input"].replace("\n", "\n      "))

    # 2. Map rows to text with the template: prompt "### 질문: …\n\n### 답변:", answer " …<|endoftext|>" ----
    #    (or the model's chat template); each answer's span comes from rendering the conversation's prefixes
    texts = recipe.render(rows, template, report)
    print(f"[2] example:\n{''.join(texts[0]['texts'])}")

    # 3. Tokenize in batches; labels only on the answer and its end of text; hold out an eval split --
    tokenized = recipe.tokenize(texts, tokenizer, MAX_LEN, TRAIN_ON_PROMPT, report)  # rows over MAX_LEN: dropped
    print("[3] " + "\n    ".join(report.lines()))
    train_rows, eval_rows = recipe.split(tokenized, EVAL_FRACTION, SEED, report)  # by prompt: none on both sides
    print(f"    train {len(train_rows):,} rows, eval {len(eval_rows or []):,} rows, "
          f"{report.counts['eval prompts also trained on']} eval prompts also in training; trained-on tokens in ⟦ ⟧:")
    print("    " + tokenization.show_trained_span(train_rows[0], tokenizer))
    if PACK_TOKENS:  # whole rows into fixed-size sequences; each row attends only to itself (kochat/packing.py)
        rows_in = len(train_rows)
        train_rows = packing.pack_rows(train_rows, PACK_TOKENS)
        eval_rows = packing.pack_rows(eval_rows, PACK_TOKENS) if eval_rows is not None else None
        collator = packing.PackedCollator(tokenizer.pad_token_id, PACK_TOKENS)
        fill = sum(map(len, train_rows["input_ids"])) / (len(train_rows) * PACK_TOKENS)
        print(f"    packed {rows_in:,} rows into {len(train_rows):,} sequences of {PACK_TOKENS} tokens ({fill:.0%} filled)")
    else:
        collator = tokenization.make_collator(tokenizer)

    # 4. Load the base model in 4-bit NF4 with double quantization (bitsandbytes), device_map="auto" --
    load_start = time.time()
    dtype = modeling.compute_dtype()  # bf16 on GPUs that have it, fp16 on older GPUs, fp32 on a CPU
    bnb_config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_use_double_quant=True, bnb_4bit_quant_type="nf4",
                                    bnb_4bit_compute_dtype=dtype,
                                    bnb_4bit_quant_storage=dtype if launch.fsdp else torch.uint8)  # FSDP shards
    attention = modeling.training_attention(ATTENTION, packed=bool(PACK_TOKENS))  # flex for packed rows on a GPU
    model = modeling.load_model(MODEL_ID, tokenizer, quantization_config=bnb_config, trainable=True,
                                attention=attention, device_map=processes.device_map(launched))
    model_load_s = round(time.time() - load_start, 1)
    load_peak_gib = round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None
    gpu = f", GPU memory peak {load_peak_gib} GiB" if load_peak_gib is not None else ""
    print(f"[4] loaded {type(model).__name__} in 4-bit in {model_load_s} s, compute dtype {model.dtype}, {attention} attention{gpu}")

    # 5. Prepare for k-bit training, gradient checkpointing, attach LoRA, compile the layers ------------
    checkpointing = {"use_reentrant": False}
    if not launch.fsdp:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpoint_share > 0,
                                                gradient_checkpointing_kwargs=checkpointing)
    elif checkpoint_share > 0:  # FSDP flattens a layer's weights into one tensor of one dtype: peft's fp32
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing)  # upcast would split it
    modeling.embeddings_in(model, dtype)  # peft made them fp32; frozen, they need only the compute dtype
    model.config.use_cache = False  # no KV cache in training (packed rows need none to stay apart); step 8 turns it on
    model = get_peft_model(model, lora_config)
    checkpointed = modeling.checkpoint_layers(model, checkpoint_share)
    compiled = COMPILE and torch.cuda.is_available() and not launch.fsdp  # a CPU: costs more than it saves;
    if compiled:                                                            # FSDP: its flat weights are not traced
        modeling.compile_layers(model)
    counts = estimate.count_parameters(model)
    print("[5] " + counts.line())
    print(f"    {checkpointed}/{len(modeling.language_layers(model))} layers checkpointed, "
          f"layers {'' if compiled else 'not '}compiled" + (" (FSDP)" if launch.fsdp and COMPILE else ""))
    loss_off = chunked_loss_off(model.config, launch.processes)
    if LOSS_CHUNK and loss_off:
        print(f"    LOSS_CHUNK={LOSS_CHUNK} not used: {loss_off}")
    optim = processes.optimizer(launch, OPTIM)  # FSDP cannot checkpoint paged 8-bit Adam's state
    if optim != OPTIM:
        print(f"    optimizer {optim}: FSDP cannot checkpoint {OPTIM}'s state (the LoRA's state is small either way)")

    # 6. Train with the Hugging Face Trainer: progress bar, train/eval loss, TensorBoard in logs/ -------
    #    Checkpoints are sealed when complete; rerunning the same command continues from the newest one.
    checkpoints.check_disk_space(output_dir, counts, KEEP_CHECKPOINTS, OPTIM, merged=bool(MERGED_DIR))
    resume = processes.from_main(launched, lambda: recipe.resume_point(  # None: a fresh start; the main process
        output_dir, constants, RESUME, OVERWRITE, RESUME_MAY_CHANGE))     # alone clears what a rerun replaces
    checkpoints.check_same_launch(resume, launch.fsdp)
    args = TrainingArguments(
        output_dir=str(output_dir / "checkpoints"), per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size, gradient_accumulation_steps=GRAD_ACCUM,
        learning_rate=LEARNING_RATE, lr_scheduler_type=LR_SCHEDULER, warmup_steps=WARMUP_STEPS,
        num_train_epochs=EPOCHS, max_steps=MAX_STEPS, optim=optim, logging_steps=LOGGING_STEPS,
        eval_strategy="steps" if eval_rows is not None else "no", eval_steps=EVAL_STEPS,
        save_strategy="steps", save_steps=SAVE_STEPS, save_total_limit=KEEP_CHECKPOINTS, seed=SEED,
        prediction_loss_only=True,  # evaluation needs the loss only; keeping a 4,096 × vocab logits tensor costs GiBs
        bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16, use_cpu=not torch.cuda.is_available(),
        ddp_find_unused_parameters=False,  # every LoRA weight takes part in every step
        include_num_input_tokens_seen="non_padding",  # real tokens trained on, all processes: the speed at the end
        dataloader_pin_memory=torch.cuda.is_available(), report_to=[])
    print(f"[6] effective batch {batch_size * GRAD_ACCUM * launched.num_processes} "
          f"{'sequences' if PACK_TOKENS else 'rows'} an update ({batch_size} × {GRAD_ACCUM} accumulated × "
          f"{launched.num_processes} process{'es' if launched.num_processes > 1 else ''}, {launch.strategy}); "
          f"learning rate {LEARNING_RATE:g}, "
          f"{LR_SCHEDULER} after {WARMUP_STEPS} warm-up updates")
    callbacks = recipe.Callbacks(output_dir / "logs", process_start,  # TensorBoard, first-step timer, seals, Ctrl-C
                                 tensorboard=launched.is_main_process,  # FSDP: the adapter gathered into each checkpoint
                                 before_seal=[processes.SaveShardedAdapter(model, launched)] if launch.fsdp else [])
    trainer = ChunkedLossTrainer(model=model, args=args, train_dataset=train_rows, eval_dataset=eval_rows,
                                 data_collator=collator, callbacks=callbacks, loss_chunk=LOSS_CHUNK,
                                 processing_class=tokenizer)  # its pad id: what the token count leaves out
    try:
        train_result = recipe.train(trainer, resume, callbacks, sharded=launch.fsdp)  # then the eval loss
    except torch.OutOfMemoryError:
        raise UserError(estimate.out_of_memory_hint(config, counts, batch_size, PACK_TOKENS or MAX_LEN,
                                                    checkpoint_share, OPTIM, compiled, LOSS_CHUNK,
                                                    lora_dropout, launch)) from None
    if callbacks.stop.received:
        print(f"[6] stopped by {callbacks.stop.received} at step {trainer.state.global_step} of "
              f"{trainer.state.max_steps}; checkpoint in {args.output_dir}/. Run the same command again to continue.")
        return callbacks.stop.exit_status
    peak_gib = None
    if torch.cuda.is_available():  # the fullest GPU's
        peak_gib = processes.largest_across(torch.cuda.max_memory_allocated() >> 20, launched.device) / 1024
    speed = callbacks.step_timer.real_tok_s
    print(f"[6] trained {trainer.state.global_step} steps, final train loss {train_result.training_loss:.4f}"
          + (f", {speed:,.0f} real tokens/s after the first step" if speed else "")
          + (f", peak GPU memory {peak_gib:.2f} GiB" + (" (the fullest GPU)" if launched.num_processes > 1 else "")
             if peak_gib is not None else ""))
    if launch.fsdp:  # the adapter is sharded across the processes: gathered whole, written by the main one
        processes.save_sharded_adapter(model, output_dir, launched)
    if not launched.is_main_process:
        return 0  # steps 7 and 8 belong to the run: the main process does them, once

    # 7. Save the adapter, tokenizer, template, generation config, constants, and the loss plot --------
    runs.save_run(output_dir, model, tokenizer, template, constants, adapter_saved=launch.fsdp, extra={
        "preset": given.get("preset"), "data_report": report.to_dict(), "lora_targets": targets,
        "gradient_checkpointing": checkpoint_share,
        "end_of_text": {"token": tokenizer.eos_token, "id": eos_id}, "attention": attention,
        "quantization": bnb_config.to_dict(),
        "processes": launched.num_processes, "strategy": launch.strategy, "optimizer": optim,
        "timing": {"model_load_s": model_load_s, "first_step_s": callbacks.step_timer.first_step_s,
                   "real_tok_s_after_first_step": speed},
        "gpu_peak_gib": {"after_load": load_peak_gib, "after_first_step": callbacks.step_timer.peak_gib,
                         "after_training": peak_gib},
        "train": {"steps": trainer.state.global_step, "log_history": trainer.state.log_history}})
    runs.plot_loss(trainer.state.log_history, output_dir / "loss.png")
    print(f"[7] saved the run to {output_dir}/ (adapter, tokenizer, template.json, run_config.json, README.md, "
          f"loss.png)")
    if MERGED_DIR:
        print(f"    merged into a 16-bit copy of the base: {runs.save_merged(output_dir, MERGED_DIR, tokenizer, template)}/")

    # 8. gen() demo: inference mode, the same template, stop at end of text, new tokens only ------------
    if launch.fsdp and (questions or EVAL_TASKS):  # the trained model is sharded across ended processes: reload
        del trainer, model
        torch.cuda.empty_cache()
        from kochat import answering  # the run folder opened as chat_ko.py opens it

        model = answering.load_for_answering(str(output_dir), device_map={"": launched.device}).model
    if questions:
        model.eval()
        model.config.use_cache = True
        model.set_attn_implementation("sdpa")  # flex attention serves packed training; answering uses SDPA
        modeling.compile_layers(model, on=False)  # answering shapes change every token: eager layers
        # trained under autocast, as the Trainer runs it: peft left the norms in fp32 beside 16-bit embeddings
        with (torch.autocast(model.device.type, dtype=dtype, enabled=model.device.type == "cuda"),
              open(output_dir / "demo.jsonl", "w", encoding="utf-8") as demo):
            for question in questions:
                answer = gen(model, tokenizer, template, question, max_new_tokens=MAX_NEW_TOKENS,
                             temperature=TEMPERATURE, top_p=TOP_P)[0]
                print(f"[8] Q: {answer.question} {answer.input}\n    A: {answer.text}\n    "
                      f"({answer.new_tokens} tokens in {answer.seconds:.2f} s, {answer.tokens_per_s:.1f} tokens/s)")
                demo.write(json.dumps(answer.to_dict(), ensure_ascii=False) + "\n")

    # 9. Score the finished run, base vs adapter, with eval_ko.py's code (EVAL_TASKS) --------------------
    if EVAL_TASKS:
        model.eval()
        model.set_attn_implementation("sdpa")
        modeling.compile_layers(model, on=False)  # lm-eval's batches change shape: eager layers
        with torch.autocast(model.device.type, dtype=dtype, enabled=model.device.type == "cuda"):
            evaluation.after_training(output_dir, model, tokenizer, EVAL_TASKS)
    print(f"done. Talk to it: python3 chat_ko.py --adapter {output_dir}")


if __name__ == "__main__":
    sys.exit(cli.run(main))
