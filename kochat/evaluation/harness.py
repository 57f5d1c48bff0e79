"""The loaded model handed to lm-evaluation-harness, base and adapter on one load.

lm-eval's HFLM takes the model object the project loaded (answering.load_for_answering: 4-bit + adapter, or a
merged folder) and its tokenizer; lm-eval builds the requests, batches the choices, scores them by
log-likelihood and computes its metrics. The base is the same model inside peft's disable_adapter(). Each
model has its own lm-eval sqlite cache (use_cache), named by a fingerprint of the weights it stands for,
so an interrupted evaluation continues where it stopped and a retrained adapter never reads old answers.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from pathlib import Path

from .suites import LocalTask, config_for

LM_EVAL_LOGGERS = ("lm_eval", "lm-eval")


def lm_eval_version() -> str:
    import lm_eval

    return lm_eval.__version__


def fingerprint(run, four_bit: bool) -> dict[str, str]:
    """Names for the caches of the base and the adapter: what they stand for, hashed (the adapter's bytes; for a
    merged folder, each weight file's name, size and time: hashing 26 GB of weights would take minutes)."""
    base = hashlib.sha256(f"{run.base_model}|4bit={four_bit}|lm_eval={lm_eval_version()}".encode()).hexdigest()[:16]
    names = {"base": f"base-{base}"}
    digest = hashlib.sha256(base.encode())
    if run.adapter:
        digest.update((Path(run.folder) / "adapter_model.safetensors").read_bytes())
    else:
        for p in sorted(Path(run.folder).glob("*.safetensors*")):
            digest.update(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}".encode())
    names["adapter" if run.adapter else "model"] = f"{'adapter' if run.adapter else 'model'}-{digest.hexdigest()[:16]}"
    return names


@contextlib.contextmanager
def quiet_lm_eval(verbose: bool = False):
    """lm-eval logs a warning per task about things chosen here on purpose (a model object, local data);
    its progress bars stay."""
    import datasets

    levels = {n: logging.getLogger(n).level for n in LM_EVAL_LOGGERS}
    bars = datasets.is_progress_bar_enabled()
    if not verbose:
        for n in LM_EVAL_LOGGERS:
            logging.getLogger(n).setLevel(logging.ERROR)
        datasets.disable_progress_bars()  # a "Map" bar per task as lm-eval prepares its documents
    try:
        yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)
        if bars:
            datasets.enable_progress_bars()


def score(model, tokenizer, tasks: list[LocalTask] | list, hub_tasks: list[str] = (), *, cache: Path | None = None,
          limit: int = 0, batch_size: int = 0, max_batch_size: int = 64, log_samples: bool = False,
          verbose: bool = False) -> dict:
    """One model scored on the tasks by lm-eval: {"tasks": {task: {metric: value, …, "items": n}},
    "seconds": …, "samples": lm-eval's per-item records when log_samples}. batch_size 0 = lm-eval's auto."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    configs = [config_for(t) if isinstance(t, LocalTask) else t for t in tasks] + list(hub_tasks)
    with quiet_lm_eval(verbose):
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size="auto" if batch_size == 0 else batch_size,
                  max_batch_size=max_batch_size)
        manager = None if hub_tasks else lm_eval.tasks.TaskManager(include_defaults=False)
        start = time.perf_counter()
        out = lm_eval.simple_evaluate(model=lm, tasks=configs, task_manager=manager, limit=limit or None,
                                      use_cache=str(cache) if cache else None, bootstrap_iters=1000,
                                      log_samples=log_samples)
        seconds = time.perf_counter() - start
    scored = {}
    for task, metrics in out["results"].items():
        if task not in out.get("n-samples", {}):
            continue  # a group's aggregate: the report averages the tasks itself
        row = {}
        for key, value in metrics.items():
            name, _, filt = key.partition(",")
            if name in ("alias", "name", "sample_len", "sample_count") or not isinstance(value, (int, float)):
                continue
            row[name] = float(value) if value == value else None  # NaN stderr (one item) -> null
        row["items"] = out["n-samples"][task]["effective"]
        scored[task] = row
    result = {"tasks": scored, "seconds": round(seconds, 2)}
    if log_samples:
        result["samples"] = out["samples"]
    return result


def score_base_and_adapter(model, tokenizer, run, tasks, hub_tasks=(), *, cache_dir: Path | None, four_bit: bool,
                           **options) -> dict:
    """{"base": …, "adapter": …} for a run folder (the base inside disable_adapter(), same load), or
    {"model": …} for a merged folder, whose base is not in it."""
    names = fingerprint(run, four_bit)
    caches = {k: (cache_dir / v if cache_dir else None) for k, v in names.items()}
    if not run.adapter:
        return {"model": score(model, tokenizer, tasks, hub_tasks, cache=caches["model"], **options)}
    with model.disable_adapter():
        base = score(model, tokenizer, tasks, hub_tasks, cache=caches["base"], **options)
    return {"base": base, "adapter": score(model, tokenizer, tasks, hub_tasks, cache=caches["adapter"], **options)}
