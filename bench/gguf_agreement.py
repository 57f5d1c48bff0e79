"""The GGUF of a model too large for this machine's memory, against transformers, on the CPU: a check that the
conversion (kochat.export.gguf) is right at a real shape, not only on the tiny run. From the repository root:

    python3 -m bench.random_model --model=EleutherAI/polyglot-ko-12.8b --tokenizer=DIR --out=/tmp/random-12.8b
    python3 -m bench.gguf_agreement --model=/tmp/random-12.8b --data=KOALPACA_1K.jsonl --out=RESULT.json

The GGUF (--quant) is written as export_ko.py writes it, then llama.cpp answers PROMPTS KoAlpaca questions greedily
(NEW_TOKENS each, the model mmapped: its weights are read from disk for every token when they exceed the memory).
transformers then reads the same token ids (prompt and llama.cpp's answer) in float32, one layer in memory at a
time, and the two are compared at every position: the cosine of the logit vectors, the share of positions whose
top token is the same, and how many of llama.cpp's greedy tokens transformers also picks (up to the first one it
does not). Random weights (bench/random_model.py) make near-ties common, so the cosine is the figure that says
whether the two compute the same function. GPT-NeoX models (polyglot-ko) only.
"""
import json
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from bench.gguf_cpu import machine
from kochat import cli, modeling, runs
from kochat.export import gguf, llamacpp
from kochat.prompts import Template
from kochat.records import read_records
from kochat.tokenization import encode_prompt

# ---- constants: override on the command line as --name=value ------------------------------------------
MODEL = ""          # a 16-bit GPT-NeoX model folder (safetensors); required
DATA = ""           # KoAlpaca-v1.1a rows (.jsonl), for real questions; required
OUT = ""            # the result JSON; required
WORK = "/tmp/gguf-agreement"  # the GGUFs go in WORK/<model folder's name>/ (kept: a second run reuses them)
QUANT = "f16"       # which GGUF: f16 (the conversion alone) or q8_0 / q4_k_m (llama.cpp's quantizer after it).
                    # llama.cpp mmaps the file: one larger than the memory is read from disk again for every
                    # token (a 24 GiB f16 on a 23.5 GiB machine: minutes a token), where a q8_0 stays in memory
PROMPTS = 2         # questions answered
NEW_TOKENS = 6      # greedy tokens each
THREADS = 0         # llama.cpp's threads; 0 = every core


def llama_greedy_with_logits(file: Path, prompts: list[list[int]]) -> list[tuple[list[int], np.ndarray]]:
    """Per prompt: llama.cpp's greedy tokens, and its logits at every position it read (the prompt, then each
    answer token but the last)."""
    model = llamacpp.llama_with_logits(file, max(len(p) for p in prompts) + NEW_TOKENS, THREADS)
    found = []
    try:
        for ids in prompts:
            model.reset()
            model.eval(ids)
            answer = []
            while True:
                answer.append(int(np.argmax(model.scores[model.n_tokens - 1])))
                if len(answer) == NEW_TOKENS:
                    break
                model.eval(answer[-1:])
            found.append((answer, np.array(model.scores[:model.n_tokens], dtype=np.float32)))
    finally:
        model.close()
    return found


def transformers_logits(folder: Path, sequences: list[list[int]]) -> list[torch.Tensor]:
    """Float32 logits at every position of each sequence, the model's layers loaded one at a time from its
    safetensors (mmapped), run and dropped: a 24 GiB model on a machine of 23.5 GiB."""
    config = modeling.load_config(str(folder))
    with torch.device("meta"):  # sdpa: causal where no mask is given, as every row here is (right-padded)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="sdpa").eval()
    core = model.gpt_neox
    index = json.loads((folder / "model.safetensors.index.json").read_text(encoding="utf-8"))["weight_map"] \
        if (folder / "model.safetensors.index.json").exists() else None
    files = {}

    def tensor(name):
        file = folder / (index.get(name) or index[name.replace("embed_out.", "lm_head.", 1)] if index
                         else "model.safetensors")
        handle = files.get(file) or files.setdefault(file, safe_open(file, framework="pt"))
        if name not in handle.keys():  # the output layer, by the name transformers gives it
            name = name.replace("embed_out.", "lm_head.", 1)
        return handle.get_tensor(name).float()

    def loaded(module, prefix):
        module.load_state_dict({k: tensor(prefix + k) for k in module.state_dict()}, assign=True)
        return module

    width = max(len(s) for s in sequences)
    ids = torch.tensor([s + [0] * (width - len(s)) for s in sequences])  # right-padded: causal rows ignore it
    positions = torch.arange(width)[None].expand(len(sequences), -1)
    with torch.inference_mode():
        hidden = loaded(core.embed_in, "gpt_neox.embed_in.")(ids)
        core.embed_in.to("meta")
        rotary = type(core.rotary_emb)(config=config)  # its buffers made on the CPU, not on meta
        cos_sin = rotary(hidden, positions)
        for i, layer in enumerate(core.layers):
            hidden = loaded(layer, f"gpt_neox.layers.{i}.")(hidden, position_ids=positions,
                                                             position_embeddings=cos_sin)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
            layer.to("meta")  # its weights freed before the next layer's load
        hidden = loaded(core.final_layer_norm, "gpt_neox.final_layer_norm.")(hidden)
        logits = loaded(model.lm_head, "embed_out.")(hidden)  # polyglot-ko's files call it embed_out
    return [logits[row, :len(s)] for row, s in enumerate(sequences)]


def compare(llama: np.ndarray, reference: torch.Tensor, prompt_length: int, answer: list[int]) -> dict:
    theirs, ours = torch.from_numpy(llama), reference
    cosine = torch.nn.functional.cosine_similarity(theirs, ours, dim=-1)
    same_top = (theirs.argmax(-1) == ours.argmax(-1)).float().mean().item()
    picks = ours[prompt_length - 1:].argmax(-1).tolist()  # transformers' pick after each prefix llama.cpp read
    agreed = next((i for i, (a, b) in enumerate(zip(picks, answer)) if a != b), len(answer))
    first_difference = None
    if agreed < len(answer):  # how near a tie it was: each side's logits of the two tokens
        at, pair = prompt_length - 1 + agreed, [answer[agreed], picks[agreed]]
        first_difference = {"answer_token": agreed, "tokens": pair,
                            "llama_cpp_logits": [round(float(theirs[at, t]), 5) for t in pair],
                            "transformers_logits": [round(float(ours[at, t]), 5) for t in pair]}
    return {"positions": len(ours), "first_difference": first_difference, "cosine_min": round(cosine.min().item(), 6),
            "cosine_mean": round(cosine.mean().item(), 6), "same_top_token_share": round(same_top, 4),
            "greedy_tokens_agreed": agreed, "greedy_tokens": len(answer),
            "logit_max_abs_diff": round((theirs - ours).abs().max().item(), 5),
            "logit_abs_max": round(ours.abs().max().item(), 5)}


def main(argv):
    cli.apply_command_line(globals(), argv, {}, {}, Path(__file__), __doc__)
    cli.require(globals(), "MODEL", "DATA", "OUT")
    folder = Path(MODEL)
    work = Path(WORK) / folder.resolve().name
    llamacpp.llama_cpp_or_advice("measuring a GGUF file")  # one line, before anything long, if llama.cpp is missing
    template = Template.load("koalpaca")
    tokenizer = modeling.load_tokenizer(str(folder))
    results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
               "versions": {**runs.versions(), **{p: version(p) for p in ("llama-cpp-python", "gguf")}},
               "command": " ".join(["python3 -m bench.gguf_agreement", *argv]), "model": MODEL,
               "parameters": modeling.parameter_count(modeling.load_config(str(folder)))}

    def save(key, value):
        results[key] = value
        print(f"{key}: {json.dumps(value, ensure_ascii=False)[:400]}", flush=True)
        runs.write_json(Path(OUT), results)

    start = time.perf_counter()
    f16, file = work / f"{work.name}-f16.gguf", work / f"{work.name}-{QUANT}.gguf"
    if not f16.exists():  # kept: each quant is made from it
        if not (folder / runs.TEMPLATE_FILE).exists():  # a bare model folder: answered in the KoAlpaca form
            runs.write_json(folder / runs.TEMPLATE_FILE, template.to_dict())
        gguf.write_gguf(folder, work, ["f16"], template)
    if not file.exists():
        gguf.quantize(f16, file, QUANT)
    save("gguf", {"file": str(file), "quant": QUANT, "gib": round(file.stat().st_size / 2**30, 2),
                  "seconds": round(time.perf_counter() - start, 1)})
    questions = [r.get("instruction") or r["text"].split("### 답변:")[0].removeprefix("### 질문:").strip()
                 for r in list(read_records(DATA))[:PROMPTS]]  # the question alone: the template adds its header
    prompts = [encode_prompt(tokenizer, template.prompt(q, "")) for q in questions]

    start = time.perf_counter()
    answered = llama_greedy_with_logits(file, prompts)
    save("llama_cpp", {"seconds": round(time.perf_counter() - start, 1), "answers": [a for a, _ in answered]})
    start = time.perf_counter()
    sequences = [p + answer[:-1] for p, (answer, _) in zip(prompts, answered)]  # what llama.cpp read
    reference = transformers_logits(folder, sequences)
    save("transformers_seconds", round(time.perf_counter() - start, 1))
    save("agreement", [compare(logits, ours, len(p), answer)
                       for p, (answer, logits), ours in zip(prompts, answered, reference)])


if __name__ == "__main__":
    sys.exit(cli.run(main))
