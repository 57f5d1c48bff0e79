"""The run folder: the hand-off between training and everything after it, so it describes itself.

outputs/<run>/ holds adapter_model.safetensors + adapter_config.json (PEFT), the tokenizer (with its
end of text resolved), generation_config.json, template.json, run_config.json (the constants used),
README.md (a model card: what was trained, on what, licences, how to use it), loss.png, demo.jsonl,
logs/ (TensorBoard) and checkpoints/. open_run() is how everything after training opens one (and
kochat/answering.py's load_for_answering() how it is loaded to answer from).
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import card
from .cli import flag
from .errors import UserError
from .prompts import ChatTemplate, Template, load_template

ADAPTER_FILE = "adapter_model.safetensors"
RUN_CONFIG = "run_config.json"
RUN_SETTINGS = "run_settings.json"  # in checkpoints/: the settings trained with, written first (kochat.checkpoints)
TEMPLATE_FILE = "template.json"


# What a finished run wrote that a new run in the same folder does not overwrite file by file.
RUN_FILES = (ADAPTER_FILE, "adapter_config.json", RUN_CONFIG, "README.md", "loss.png", "demo.jsonl", "logs",
             "checkpoints")
EVAL_DIR = "eval"  # eval_ko.py's scores and answers of the run, and its cache/
EVAL_FILES = (".json", ".md", ".html")  # what eval_ko.py writes there: scores, tables, answers side by side


def holds_finished_run(folder: Path) -> bool:
    return (folder / ADAPTER_FILE).exists()


def holds_other_files(folder: Path) -> bool:
    """Whether `folder` holds files but none that only a run writes (its settings, from the first moment of
    training, or its adapter): the project's own folder (README.md, logs/), an export, someone's documents."""
    if not folder.is_dir():
        return False
    names = {p.name for p in folder.iterdir() if not p.name.startswith(".")} - {"lost+found"}  # an empty disk's
    run_marks = (folder / "checkpoints" / RUN_SETTINGS, folder / RUN_CONFIG, folder / ADAPTER_FILE,
                 folder / "adapter_config.json")
    return bool(names) and not any(mark.is_file() for mark in run_marks)


def prepare_output_dir(folder: str, overwrite: bool) -> Path:
    """Check, before any long work, that the folder can be written and holds no finished run (unless
    told to overwrite it). Nothing is created yet, so a run that stops early leaves nothing behind."""
    path = Path(folder).expanduser()
    if holds_other_files(path):  # a run writes README.md, config files…: never into a folder that is not a run's
        raise UserError(f"{path} holds other files and is not a run folder; pass {flag('RUN_NAME', '<new name>')} "
                        f"(or {flag('OUTPUT_DIR', '<a new or empty folder>')})")
    if holds_finished_run(path) and not overwrite:
        raise UserError(f"{path} already holds a finished run; pass {flag('RUN_NAME', '<new name>')} (or "
                        f"{flag('OUTPUT_DIR', '…')}) to keep it, or {flag('OVERWRITE', 'true')} to replace it")
    existing = next(p for p in [path, *path.absolute().parents] if p.exists())
    if not existing.is_dir() or not can_write(existing):
        raise UserError(f"cannot write the output folder {path}: {existing} is not a writable folder")
    return path


def check_merged_dir(folder: str) -> None:
    """Before training: MERGED_DIR is a new or empty folder, or an earlier merged copy (replaced file by file),
    never a folder of other files (a merge writes config.json, tokenizer files and weights into it)."""
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag('MERGED_DIR', folder)} is a file; name a folder")
    names = {p.name for p in path.iterdir() if not p.name.startswith(".")} if path.is_dir() else set()
    earlier_merge = {"config.json", TEMPLATE_FILE} <= names and any(n.endswith(".safetensors") for n in names)
    if names and not earlier_merge:
        raise UserError(f"{flag('MERGED_DIR', folder)} holds other files and is not an earlier merged copy; name a "
                        f"new or empty folder")


def check_file_can_be_written(path: Path, option: str, reads: Path | None = None) -> None:
    """Before long work: `path` is not a folder, not the file `reads` (the input the work reads, which writing
    would replace), and lies under a writable one (made when the file is written)."""
    if path.is_dir():
        raise UserError(f"{flag(option, str(path))} is a folder; name a file")
    if reads is not None and path.expanduser().resolve() == Path(reads).expanduser().resolve():
        raise UserError(f"{flag(option, str(path))} is the file this reads ({reads}): writing it would replace it; "
                        f"name another file")
    existing = next(p for p in [path.absolute().parent, *path.absolute().parents] if p.exists())
    if not existing.is_dir() or not can_write(existing):
        raise UserError(f"cannot write {path}: {existing} is not a writable folder; pass another {flag(option, '…')}")


def can_write(folder: Path) -> bool:
    """Whether a file can be made in `folder`, found by making an unnamed one (gone when closed): os.access
    says yes to root everywhere, also where nothing can be written (/proc, a read-only mount)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Run:
    """What chat and serving need from a run folder (adapter) or a merged model folder."""
    folder: Path
    base_model: str        # MODEL_ID the adapter was trained on, or the merged folder itself
    adapter: str | None    # the folder, when it holds an adapter
    template: Template | ChatTemplate
    tokenizer: object      # the folder's own, end of text resolved as in training
    config: object         # the base model's config (a merged or exported folder's own), read once as the run opens


def open_run(folder: str, base: str = "") -> Run:
    """Read a run folder from finetune_ko.py, or a merged model folder: the tokenizer, template and base are
    read from it, never guessed. `base`: where the run's base model is on this machine (a folder or hub id), for a
    run trained where it had another path; "" = the MODEL_ID it was trained on. Checked here, before anything
    loads: missing, it is one line naming --base."""
    from . import modeling

    if not str(folder).strip():  # --adapter= with nothing after it: Path("") is the current folder
        raise UserError("--adapter is empty: pass a run folder from finetune_ko.py, e.g. --adapter=outputs/tiny")
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise UserError(f"{folder} is not a folder; pass a run folder from finetune_ko.py, e.g. outputs/tiny")
    if not (path / TEMPLATE_FILE).is_file() and any(path.glob("*.gguf")):
        raise UserError(f"{folder} is a GGUF export, for llama.cpp and Ollama (see its Modelfile); pass the run "
                        f"folder it came from, or its merged, int8 or int4 export")
    if not (path / TEMPLATE_FILE).is_file():
        raise UserError(f"{folder} has no {TEMPLATE_FILE}: it is not a run folder from finetune_ko.py "
                        f"(or a merged model folder saved with one)")
    if (path / "adapter_config.json").is_file():
        base = base or (read_key(path / RUN_CONFIG, "constants", "MODEL_ID")
                        or read_key(path / "adapter_config.json", "base_model_name_or_path"))
        if not base:
            raise UserError(f"{folder}: neither {RUN_CONFIG} nor adapter_config.json (base_model_name_or_path) "
                            f"names a readable base model; pass a run folder that finetune_ko.py finished, or "
                            f"{flag('BASE', '…')} the base it was trained on")
        if not (path / ADAPTER_FILE).is_file() and not (path / "adapter_model.bin").is_file():
            raise UserError(f"{folder} has adapter_config.json but no adapter weights ({ADAPTER_FILE}): the run did "
                            f"not finish saving; run finetune_ko.py again (it resumes from its last checkpoint)")
        adapter = str(path)
        try:  # there, or the line saying how to bring it here
            config = modeling.load_config(base, option="BASE")
        except UserError as e:
            raise UserError(f"the base model of {folder}: {e}") from None
    elif (path / "config.json").is_file():
        if base:
            raise UserError(f"{folder} is a merged model, its weights its own: {flag('BASE', base)} is only for a run "
                            f"folder's adapter; leave it out")
        base, adapter = str(path), None
        config = modeling.load_config(base)
    else:
        raise UserError(f"{folder} holds neither an adapter (adapter_config.json) nor a model (config.json)")
    tokenizer = modeling.load_tokenizer(str(path))
    return Run(path, base, adapter, load_template(str(path / TEMPLATE_FILE), tokenizer), tokenizer, config)


def read_key(path: Path, *keys: str):
    """path's JSON value at keys, or None where the file, a key or the JSON itself is missing or broken."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
        for key in keys:
            value = value[key]
        return value
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        return None


def clear_run(folder: Path) -> int:
    """Remove what a run wrote into `folder` (its adapter, card, logs, checkpoints; see RUN_FILES) and the scores
    and answers eval_ko.py wrote of its adapter (eval/*.json, .md, .html), so that a new run starts there from
    nothing; returns how many of those eval files went. Only those: the folder may hold other files. eval/cache/
    stays: its files are named by the weights they score."""
    for name in RUN_FILES:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    reports = [p for p in (folder / EVAL_DIR).glob("*") if p.suffix in EVAL_FILES and p.is_file()]
    for path in reports:
        path.unlink()
    return len(reports)


def save_merged(run_folder: Path | Run, merged_folder: str, tokenizer, template) -> Path:
    """The adapter merged into a copy of its base in the base's own 16-bit dtype (never into 4-bit weights), as
    a plain model folder: vLLM and transformers load it as they load any model (also those on transformers 4:
    kochat/export/older_loaders.py); chat and serving read its template, and vLLM's chat endpoint takes
    template.jinja (`--chat-template`).
    Merged in CPU memory, so a 24 GB card is enough for the run and the host needs ~2 bytes a parameter."""
    from . import modeling

    run = run_folder if isinstance(run_folder, Run) else open_run(str(run_folder))
    out = Path(merged_folder).expanduser()
    dtype = modeling.saved_dtype(run.config)
    model = modeling.load_model(run.base_model, tokenizer, four_bit=False, adapter=run.adapter, merge=True,
                                device_map="cpu", dtype=dtype, option="BASE")
    model.save_pretrained(out)
    weights_readable(out)
    tokenizer.save_pretrained(out)
    from .export import older_loaders
    older_loaders.write_for_older_loaders(out, modeling.model_source(run.base_model, "BASE"))
    write_json(out / TEMPLATE_FILE, template.to_dict())
    if isinstance(template, Template):  # for engines that render chats themselves (vLLM); a ChatTemplate has its own
        from .export import chat_template
        write_text(out / chat_template.FILE, chat_template.jinja_template(template))
    return out


def weights_readable(folder: Path) -> None:
    """The folder's .safetensors files readable as the umask lets other files be: safetensors writes them for their
    owner only (0600), which the service account of vLLM or Ollama, or a container's user, then cannot read."""
    umask = os.umask(0)
    os.umask(umask)  # read back: Python has no other way to read the umask
    for path in folder.rglob("*.safetensors"):
        path.chmod(0o666 & ~umask)


def write_json(path: Path, value) -> None:
    write_text(path, json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write then rename, so a crash never leaves half a file; a failed write (a full disk) leaves no temporary one."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def versions() -> dict:
    """The libraries that made a run or a figure; the kernel libraries the fast modes use where installed."""
    import bitsandbytes
    import datasets
    import peft
    import transformers

    found = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
             "peft": peft.__version__, "bitsandbytes": bitsandbytes.__version__, "datasets": datasets.__version__}
    for name, package in (("torchao", "torchao"), ("gemlite", "gemlite"), ("mslk", "mslk-cuda"),
                          ("humming", "humming-kernels")):
        try:
            found[name] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def save_run(folder: Path, model, tokenizer, template, constants: dict, extra: dict,
             adapter_saved: bool = False) -> None:
    """Everything a later reader needs; run_config.json is written last. adapter_saved: the adapter is already
    in the folder (FSDP: processes.save_sharded_adapter gathered it from the shards)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not adapter_saved:
        model.save_pretrained(folder)  # PEFT: adapter_model.safetensors + adapter_config.json (+ an empty card)
    weights_readable(folder)  # the adapter, and its checkpoints'
    tokenizer.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    write_json(folder / TEMPLATE_FILE, template.to_dict())
    config = {"constants": constants, **extra, "versions": versions(),
              "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    (folder / "README.md").write_text(card.model_card(folder, config, template), encoding="utf-8")
    write_json(folder / RUN_CONFIG, config)


def plot_loss(log_history: list[dict], path: Path) -> None:
    """Train and eval loss against step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e]
    evals = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    if train:
        ax.plot(*zip(*train), label="train loss", color="tab:blue")
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss", color="tab:orange")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (trained-on tokens)")
    ax.set_title(path.parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
