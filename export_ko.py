"""Export a run for the engines a company runs: a merged 16-bit folder (transformers, vLLM), int8/int4 weight-only
folders (chat_ko.py and serve_ko.py answer fastest from them), or GGUF files with an Ollama Modelfile (llama.cpp).

Edit the constants below, or override any of them on the command line with the same name in lower case:
    python3 export_ko.py --adapter=outputs/tiny --format=merged --out=outputs/tiny-merged   # 16-bit, vLLM
    python3 export_ko.py --adapter=outputs/tiny --format=int8 --out=outputs/tiny-int8       # GPU or CPU
    python3 export_ko.py --adapter=outputs/RUN --format=int4 --out=outputs/RUN-int4         # NVIDIA GPU
    python3 export_ko.py --adapter=outputs/tiny --format=gguf --out=outputs/tiny-gguf       # llama.cpp, Ollama
The adapter is merged into a 16-bit copy of its base (never into 4-bit weights) first; every other format is
made from that merged model. Disk and memory are checked before anything is written; files appear under
their names only when complete. Steps 1-3 below run top to bottom.
"""
import os
import shutil
import sys
import tempfile
from pathlib import Path
from shlex import quote

import kochat  # noqa: F401  first: it quiets a misleading bitsandbytes CPU warning before bitsandbytes loads
import torch

from kochat import card, cli, modeling, runs
from kochat.cli import flag
from kochat.errors import UserError
from kochat.export import chat_template, gguf, llamacpp, modelfile, quantized
from kochat.prompts import Template

# ---- constants: edit here, or override on the command line as --name=value -------------------
ADAPTER = "outputs/polyglot-ko-12.8b-koalpaca"  # a run folder from finetune_ko.py (or a merged model folder)
BASE = ""                                    # the run's base where it is here (folder or hub id); "" = its MODEL_ID
FORMAT = "merged"                            # merged (16-bit), int8, int4 (torchao), or gguf (llama.cpp, Ollama)
OUT = ""                                     # the folder to write; "" = <ADAPTER>-<FORMAT>
GGUF_QUANTS = ["q4_k_m", "q8_0"]             # for gguf: any of f16, q8_0, q4_k_m
OVERWRITE = False                            # True: replace what OUT already holds

PRESETS = {}
FLAGS = {}
FORMATS = ("merged", *quantized.FORMATS, "gguf")


def main(argv):
    global FORMAT, GGUF_QUANTS
    cli.apply_command_line(globals(), argv, PRESETS, FLAGS, Path(__file__), __doc__)
    FORMAT, GGUF_QUANTS = FORMAT.lower(), [quant.lower() for quant in GGUF_QUANTS]  # llama.cpp names Q4_K_M

    # 1. Check everything before any long work: the format, the run, where it goes, disk and memory ------
    if FORMAT not in FORMATS:
        raise UserError(f"{flag('FORMAT', FORMAT)} is not one of {', '.join(FORMATS)}")
    run = runs.open_run(ADAPTER, BASE)
    config = run.config
    if run.adapter is None and (FORMAT == "merged" or modeling.saved_quantization(config)):
        raise UserError(f"{run.folder} is already an exported model; export the run folder it came from")
    out = Path(os.path.abspath(Path(OUT or f"{str(run.folder).rstrip('/')}-{FORMAT}").expanduser()))  # "." too
    check_out(out, run)
    params = modeling.parameter_count(config)
    print(f"[1] {run.folder}: {config.model_type}, {params:,} parameters -> {FORMAT} in {out}/")
    if FORMAT in quantized.FORMATS:
        quantized.torchao_config(FORMAT)  # torchao installed, and a GPU for int4
        quantized.check_gpu_memory(FORMAT, params)  # before the merge, the longest step
        written = params * quantized.BYTES_PER_WEIGHT[FORMAT]
    elif FORMAT == "gguf":
        gguf.check_convertible(config, run.tokenizer, run.template, GGUF_QUANTS)
        written = gguf.bytes_written(params, GGUF_QUANTS)
    else:
        written = 0  # the merged folder itself is the export
    merge_bytes = params * modeling.saved_dtype(config).itemsize if run.adapter else 0  # a merged one is read in place
    # int8 without a GPU is made in CPU memory (after the merge has let go of its copy); on a GPU making it peaked at
    # quantized.PEAK_GPU_BYTES_PER_WEIGHT, taken for the CPU's peak too (not measured there)
    on_cpu = FORMAT == "int8" and not torch.cuda.is_available()
    quantize_bytes = params * quantized.PEAK_GPU_BYTES_PER_WEIGHT["int8"] if on_cpu else 0
    check_room(merge_bytes + written, out, merge_bytes, quantize_bytes)
    made_here = [p for p in [out.parent, *out.parent.parents] if not p.exists()]  # removed again if it fails
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    kept = None  # the work folder, where it must outlive a failure
    try:
        # 2. Merge the adapter into a 16-bit copy of its base (in CPU memory), unless the folder is merged --
        if run.adapter is None:
            merged = run.folder
            print(f"[2] {run.folder} is already a merged model")
        else:
            print(f"[2] merging the adapter of {run.folder} into a copy of {run.base_model} in its own "
                  f"{str(modeling.saved_dtype(config)).removeprefix('torch.')} …")
            merged = runs.save_merged(run, str(work / "merged"), run.tokenizer, run.template)

        # 3. Write the format asked for; a finished folder takes OUT's place only when complete ---------
        print(f"[3] writing {FORMAT} …")
        made, files = work / out.name, []  # gguf files are named after the folder
        if FORMAT == "merged":
            merged.rename(made)
        elif FORMAT in quantized.FORMATS:
            try:
                quantized.write_quantized(merged, made, FORMAT)
            except torch.OutOfMemoryError:
                raise UserError(f"out of GPU memory quantizing to {FORMAT} (an int8 export of 12.8b parameters peaked "
                                f"at 24.1 GiB): export on a GPU with more memory; nothing was written") from None
        else:
            files = gguf.write_gguf(merged, made, GGUF_QUANTS, run.template)  # the chat template inside
        licence_card = card.export_card(run.folder, FORMAT, card_usage(out, files, run.template))
        runs.write_text(made / "README.md", licence_card)
        if FORMAT == "gguf":  # the smallest file (QUANTS order), its licences as Ollama shows them
            modelfile.write_modelfile(files[-1], run.template, run.tokenizer, made, licence=licence_card)
        previous = work / "previous"
        if out.exists():  # an earlier export, set aside until the new one is in its place
            out.rename(previous)
        try:
            made.rename(out)
        except BaseException:  # Ctrl-C between the renames too: the earlier export goes back
            if previous.exists():
                try:
                    previous.rename(out)
                except OSError:
                    kept = work  # the only copy of the earlier export is in it now
                    raise UserError(f"could not move the new export to {out}, nor the earlier one back: the earlier "
                                    f"is in {previous}, the new in {made}; move one to {out} by hand") from None
            raise
    finally:
        if work is not kept:
            shutil.rmtree(work, ignore_errors=True)
            if work.exists():
                print(f"note: could not remove all of {work} (work files or the replaced export): remove it by "
                      f"hand", file=sys.stderr)
        for folder in made_here if not out.exists() else []:  # nearest first; each empty once the work is gone
            if folder.exists() and not any(folder.iterdir()):
                folder.rmdir()

    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"[3] wrote {out}/ ({shown(size)}):")
    for path in sorted(out.iterdir()):  # each GGUF quantization's size, to pick one for the machine
        print(f"    {path.name}" + (f" ({shown(path.stat().st_size)})" if path.is_file() else ""))
    print("use it: " + printed_usage(out, [out / f.name for f in files], run.template))


def shown(size: int) -> str:
    """A size in GiB, or in MiB below a tenth of one (a tiny run's), or in KiB below a tenth of that."""
    if size >= 2**30 / 10:
        return f"{size / 2**30:.2f} GiB"
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 / 10 else f"{size / 2**10:.1f} KiB"


def check_out(out: Path, run) -> None:
    """OUT must be a new folder, or (with OVERWRITE) an earlier export, under a writable one; never the run itself
    nor a link (replacing a link would leave what it points to, and could not be undone)."""
    resolved = out.resolve()
    if resolved == run.folder.resolve() or run.folder.resolve().is_relative_to(resolved):
        raise UserError(f"{flag('OUT', str(out))} would replace the run folder {run.folder}; pass another folder")
    if out.is_symlink():
        raise UserError(f"{out} is a symbolic link; pass {flag('OUT', str(resolved))} (the folder it points to) or a "
                        f"new folder")
    if Path.cwd().resolve().is_relative_to(resolved):
        raise UserError(f"{flag('OUT', str(out))} is the folder you are in (or holds it); pass a new folder")
    if os.path.ismount(out):
        raise UserError(f"{out} is a mount point, which cannot be replaced; pass a new folder inside it")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; pass {flag('OUT', '<a folder>')}")
    if out.is_dir() and any(out.iterdir()):
        if not OVERWRITE:
            raise UserError(f"{out} already holds files; pass {flag('OUT', '<new folder>')} or "
                            f"{flag('OVERWRITE', 'true')}")
        if not is_export(out):
            raise UserError(f"{out} is not an earlier export ({flag('OVERWRITE', 'true')} replaces only a folder "
                            f"export_ko.py wrote: files, no folders, its README.md or Modelfile saying so); pass "
                            f"{flag('OUT', '<new folder>')}")
    existing = next(p for p in [out.absolute().parent, *out.absolute().parents] if p.exists())
    if not existing.is_dir() or not runs.can_write(existing):
        raise UserError(f"cannot write the output folder {out}: {existing} is not a writable folder")


def is_export(folder: Path) -> bool:
    """What export_ko.py wrote: files only, marked as its own in their README.md card or Modelfile (not a base
    model, a run, a user's own Ollama folder, or a folder of several)."""
    if any(p.is_dir() for p in folder.iterdir()):
        return False
    return card.EXPORT_MARK in card.read_text(folder / "README.md") or \
        modelfile.MODELFILE_MARK in card.read_text(folder / "Modelfile")


def check_room(need: float, out: Path, merge_bytes: int, quantize_bytes: int = 0) -> None:
    """Disk for the merged model (kept while working) and what the format writes, and CPU memory for a merge (the
    16-bit base is loaded there) and for int8 made without a GPU, before anything is written."""
    existing = next(p for p in [out.absolute().parent, *out.absolute().parents] if p.exists())
    free = shutil.disk_usage(existing).free
    if free < need * 1.05:
        stale = sorted(existing.glob(".export-*"))  # exports killed before they finished
        held = sum(f.stat().st_size for folder in stale for f in folder.rglob("*") if f.is_file())
        note = (f"; {len(stale)} unfinished exports (.export-*) hold {held / 1e9:.1f} GB there: remove them if no "
                f"export is running" if stale else "")
        raise UserError(f"not enough disk for a {FORMAT} export: needs ~{need * 1.05 / 1e9:.1f} GB under {existing}, "
                        f"{free / 1e9:.1f} GB free{note}")
    available = available_memory()
    if merge_bytes and available is not None and available < merge_bytes * 1.1:
        raise UserError(f"merging needs ~{merge_bytes * 1.1 / 1e9:.1f} GB of free CPU memory for the 16-bit base, "
                        f"{available / 1e9:.1f} GB is free: close other programs or export on a larger machine")
    if quantize_bytes and available is not None and available < quantize_bytes * 1.1:
        raise UserError(f"making int8 without a GPU needs ~{quantize_bytes * 1.1 / 1e9:.1f} GB of free CPU memory, "
                        f"{available / 1e9:.1f} GB is free: close other programs, export on a machine with an NVIDIA "
                        f"GPU, or choose --format=gguf")


def available_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def usage(out: Path, gguf_files: list[Path], template) -> tuple[list[str], str]:
    """The commands that use the export, paths quoted for a shell, and a note on where they run ("" = none)."""
    if FORMAT == "gguf":
        model = quote(str(gguf_files[-1]))
        server = llamacpp.LLAMA_CPP_PACKAGE.replace("==", "[server]==")  # llama-cpp-python's own OpenAI-style server
        return [f"cd {quote(str(out))} && ollama create NAME -f Modelfile && ollama run NAME",
                f"llama-server -m {model} --jinja",
                f"pip install '{server}' && python3 -m llama_cpp.server --model {model}"], \
            "Ollama, llama.cpp's own server, or llama-cpp-python's (each reads the GGUF's template)"
    chat = f"python3 chat_ko.py --adapter {quote(str(out))}"
    if FORMAT == "merged":
        own = f" --chat-template {quote(str(out / chat_template.FILE))}" if isinstance(template, Template) else ""
        return [chat, f"vllm serve {quote(str(out))}{own}"], ""
    return [chat], "int4 runs on an NVIDIA GPU" if FORMAT == "int4" else ""


def printed_usage(out: Path, gguf_files: list[Path], template) -> str:
    commands, note = usage(out, gguf_files, template)
    return "   |   ".join(commands) + (f"   ({note})" if note else "")


def card_usage(out: Path, gguf_files: list[Path], template) -> str:
    """The card's commands, one a line: the card travels with the folder (to a serving machine), so they name it by
    its name (the gguf commands from the folder that holds it, the others with its path), not where it was made."""
    here = Path(out.name)
    commands, note = usage(here, [here / f.name for f in gguf_files], template)
    where = (f"From the folder that holds `{out.name}/`" if FORMAT == "gguf" else
             f"In a kochat checkout (`chat_ko.py` is kochat's), with this folder's path in place of `{out.name}`")
    return where + ":\n\n" + "\n".join(f"    {c}" for c in commands) + (f"\n\n{note}." if note else "")


if __name__ == "__main__":
    sys.exit(cli.run(main))
