"""The run folder's README.md: a model card that says what was trained, on what, with which constants, under
which licences, and how to use it. It replaces the empty card PEFT writes (whose base_model would be a
local cache path).

Licences are stated only for what the project knows (the base models in kochat/known_models.py, KoAlpaca,
the tiny presets' own models and data); for anything else the card says so and points to the source's own terms.
"""
from __future__ import annotations

from pathlib import Path

from . import PROJECT_ROOT, tiny
from .known_models import KNOWN_MODELS

# (a substring of MODEL_ID or DATA, lower case) -> its licence, as the card states it
BASE_LICENCES = {"polyglot-ko": ("apache-2.0", "Apache-2.0 (EleutherAI's polyglot-ko): commercial use allowed")}
DATA_LICENCES = {"koalpaca": ("cc-by-nc-4.0", "CC BY-NC 4.0 (KoAlpaca data): non-commercial use only, and an "
                                              "adapter trained on it, or a model it is merged into, inherits that "
                                              "restriction")}
TINY_BASE = "a 2-layer model that kochat builds from its own sample (kochat/tiny.py); it ships with the project"
TINY_DATA = "written for kochat (data/); it ships with the project"
LICENCES_HEADING = "## Licences"
EXPORT_MARK = "Written by kochat's `export_ko.py`"  # export_ko.py --overwrite replaces only folders so marked
TINY_MODELS, TINY_DATA_FILES = (tiny.MODEL_ID, tiny.CHAT_MODEL_ID), (tiny.DATA_FILE.name, tiny.CHAT_DATA_FILE.name)
SHOWN = ["MODEL_ID", "DATA", "TEMPLATE", "MAX_LEN", "PACK_TOKENS", "TRAIN_ON_PROMPT", "LORA_R", "LORA_ALPHA",
         "LORA_DROPOUT", "LORA_TARGETS", "BATCH_SIZE", "GRAD_ACCUM", "LEARNING_RATE", "LR_SCHEDULER",
         "WARMUP_STEPS", "EPOCHS", "MAX_STEPS", "OPTIM", "GRADIENT_CHECKPOINTING", "SEED"]


def licence(source: str, known: dict, tiny_text: str, is_tiny: bool) -> tuple[str | None, str]:
    """(the model hub's licence id or None, a sentence) for a base model or data set."""
    if is_tiny:
        return None, tiny_text
    if source in KNOWN_MODELS:
        model = KNOWN_MODELS[source]
        allowed = "commercial use allowed" if model.commercial else "no commercial use"
        return ("apache-2.0" if model.licence == "Apache-2.0" else "other"), \
            f"{model.licence}: {allowed} ({model.terms})"
    for key, (spdx, sentence) in known.items():
        if key in source.lower():
            return spdx, sentence
    return None, f"not known to kochat: see the terms of {source} before you share what was trained on it"


def in_project(source: str) -> str:
    """A path inside the project as its path there: the embedded data as "data/ko_tiny_qa.jsonl", not the folders
    of the machine that trained (a path outside the project is the user's to name, and stays as given)."""
    try:
        return Path(source).relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return source


def licences(constants: dict) -> tuple[str | None, list[str]]:
    """(the hub licence id the card declares: the data's, whose terms bind the adapter, else the base's; the
    card's licence lines) for a run's MODEL_ID and DATA."""
    base, data = str(constants.get("MODEL_ID", "")), in_project(str(constants.get("DATA", "")))
    base_id, base_text = licence(base, BASE_LICENCES, TINY_BASE, base in TINY_MODELS)
    data_id, data_text = licence(data, DATA_LICENCES, TINY_DATA, Path(data).name in TINY_DATA_FILES)
    return data_id or base_id, [f"- Base model `{base}`: {base_text}.", f"- Data `{data}`: {data_text}."]


def export_card(source: Path, fmt: str, usage: str) -> str:
    """README.md of an export_ko.py folder: what it was made from, the licences it keeps (the run's, from its
    run_config.json; an export of an export carries its source's), and how to use it."""
    from .runs import RUN_CONFIG, read_key

    constants = read_key(source / RUN_CONFIG, "constants")
    licence_id, lines = licences(constants) if constants else (None, [])
    if not constants:  # a merged folder: the card of the export it is, if any
        card = read_text(source / "README.md")
        lines = (card.split(LICENCES_HEADING, 1)[1].split("\n## ", 1)[0] if LICENCES_HEADING in card else "").strip()
        lines = lines.splitlines()
    said = ("The licences of the run it came from apply to it unchanged:" if lines else
            "kochat does not know what it came from was trained on: see the terms of its base model and data.")
    name = source.resolve().name  # "." too
    return "\n".join([*([f"---\nlicense: {licence_id}\n---"] if licence_id else []),
                      f"# {fmt} export of {name}", "", f"{EXPORT_MARK} from `{name}`. {said}", "",
                      *([LICENCES_HEADING, "", *lines, ""] if lines else []), "## Use it", "", usage, ""])


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def model_card(folder: Path, config: dict, template) -> str:
    c = config["constants"]
    base, data = str(c.get("MODEL_ID", "")), in_project(str(c.get("DATA", "")))
    base_is_tiny = base in TINY_MODELS
    licence_id, licence_lines = licences(c)
    report = config.get("data_report") or {}
    history = (config.get("train") or {}).get("log_history", [])
    losses = [e["loss"] for e in history if "loss" in e]
    evals = [e["eval_loss"] for e in history if "eval_loss" in e]
    steps = (config.get("train") or {}).get("steps")
    hub_base = "/" in base and not base.startswith((".", "/", "~")) and not Path(base).expanduser().exists()

    meta = ["---", "library_name: peft", "pipeline_tag: text-generation", "language: [ko]",
            "tags: [lora, qlora, kochat]"]
    if hub_base:
        meta.append(f"base_model: {base}")
    if licence_id:
        meta.append(f"license: {licence_id}")
    meta.append("---")

    trained = f"{steps} optimizer steps" if steps is not None else "training"
    loss = f"; train loss {losses[0]:.3f} → {losses[-1]:.3f}" if losses else ""
    loss += f", eval loss {evals[0]:.3f} → {evals[-1]:.3f}" if evals else ""
    rows = (f"{report['kept']:,} of {report['read']:,} rows kept, {report['read'] - report['kept']:,} skipped"
            if report else "rows as loaded")
    quant = config.get("quantization") or {}
    qlora = ("the base loaded in 4-bit NF4 with double quantization (bitsandbytes)"
             if quant.get("bnb_4bit_quant_type") == "nf4" else "the base as loaded by kochat")
    preset = f" (the `{config['preset']}` preset)" if config.get("preset") else ""
    targets = config.get("lora_targets") or c.get("LORA_TARGETS") or []
    if hasattr(template, "prompt_no_input"):
        form = (f"Questions are rendered with the `{template.name}` template (`{template.prompt_no_input!r}` then "
                f"the answer); answers end with `{template.end_of_turn}`.")
    else:
        form = (f"Conversations are rendered with the base model's own chat template (saved with the tokenizer); "
                f"answers end with `{template.end_of_turn}`.")
    lines = meta + [
        f"# {folder.name}: a LoRA adapter for {base}",
        "",
        f"Trained by kochat's `finetune_ko.py`{preset}: LoRA (r={c.get('LORA_R')}, alpha={c.get('LORA_ALPHA')}, "
        f"on {', '.join(targets) if isinstance(targets, list) else targets}) over {qlora}, {trained} on `{data}` "
        f"({rows}){loss}. {form}",
        "",
        "## Constants",
        "",
        "| constant | value |",
        "|---|---|",
        *(f"| {k} | `{config.get(k.lower(), data if k == 'DATA' else c[k])!r}` |"
          for k in SHOWN if k in c),  # "auto" as resolved
        "",
        "Every constant, the data report, versions and the loss history are in `run_config.json`.",
        "",
        LICENCES_HEADING,
        "",
        *licence_lines,
        "",
        "## Use it",
        "",
        "```bash",
        f"python3 chat_ko.py --adapter {folder}            # in the terminal",
        f"python3 serve_ko.py --adapter {folder} --port 8000   # OpenAI-compatible API and a chat page",
        "```",
        "",
        "With plain transformers and PEFT (the base loaded as it was trained; the prompt in the template's form):",
        "",
        "```python",
        "import torch",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig",
        "",
        f"tokenizer = AutoTokenizer.from_pretrained({str(folder)!r})",
        *([f"# the tiny preset's base, where kochat built it: kochat.modeling.model_source({base!r})"]
          if base_is_tiny else []),
        f"base = AutoModelForCausalLM.from_pretrained({base_source(base)!r}, device_map=\"auto\",",
        "    quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_use_double_quant=True,",
        "        bnb_4bit_quant_type=\"nf4\", bnb_4bit_compute_dtype=torch.bfloat16))  # float16 on older GPUs",
        f"model = PeftModel.from_pretrained(base, {str(folder)!r}).eval()",
        f"prompt = {template.prompt('한국의 수도는 어디인가요?')!r}",
        "ids = tokenizer(prompt, return_tensors=\"pt\", return_token_type_ids=False,",
        "                add_special_tokens=False).to(model.device)  # the prompt has its BOS where the model needs one",
        "out = model.generate(**ids, max_new_tokens=128, eos_token_id=tokenizer.eos_token_id)",
        "print(tokenizer.decode(out[0, ids[\"input_ids\"].shape[1]:], skip_special_tokens=True))",
        "```",
        "",
    ]
    return "\n".join(lines)


def base_source(base: str) -> str:
    """What from_pretrained takes for the base: the tiny model's built folder, or MODEL_ID itself."""
    if base in TINY_MODELS:
        return str(tiny.ensure_built(base))
    return base
