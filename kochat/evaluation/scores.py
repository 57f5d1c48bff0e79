"""The scores of a run, written down: one JSON document (per task and model: accuracy, macro-F1 where the task
has it, item count; the harness and its version) and a Markdown table base vs adapter with the difference."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from ..runs import write_json, write_text

METRICS = (("acc", "accuracy"), ("f1", "macro-F1"), ("acc_norm", "accuracy (length-normalised)"))


def document(run, scored: dict, tasks, *, split: str, limit: int, harness_version: str, four_bit: bool) -> dict:
    files = {t.task: str(t.file) for t in tasks if hasattr(t, "file")}
    names = list(next(iter(scored.values()))["tasks"])
    return {
        "run": str(run.folder), "base_model": run.base_model, "adapter": run.adapter,
        "models": list(scored), "split": split, "limit": limit or None, "num_fewshot": 0,
        "four_bit": four_bit,
        "harness": {"name": "lm-evaluation-harness", "package": "lm_eval", "version": harness_version},
        "tasks": {t: {"file": files.get(t), **{m: scored[m]["tasks"].get(t) for m in scored}} for t in names},
        "seconds": {m: scored[m]["seconds"] for m in scored},
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _cell(row: dict | None, metric: str) -> str:
    if not row or row.get(metric) is None:
        return ""
    err = row.get(f"{metric}_stderr")
    return f"{row[metric]:.3f}" + (f" ± {err:.3f}" if err is not None else "")


def markdown(doc: dict) -> str:
    """Base vs adapter (or the one merged model) per task and metric, the difference, and the mean over tasks."""
    models = doc["models"]
    pair = models == ["base", "adapter"]
    head = ["task", "metric", *models] + (["Δ adapter − base"] if pair else []) + ["items"]
    limited = f", first {doc['limit']} items a task" if doc["limit"] else ""
    lines = [f"# {Path(doc['run']).name}: {', '.join(doc['tasks'])} ({doc['split']} split{limited})", "",
             f"lm-evaluation-harness {doc['harness']['version']}, 0-shot, log-likelihood of each choice; "
             f"base model {doc['base_model']}" + (" (4-bit NF4)" if doc["four_bit"] else ""), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    means: dict = {}
    for task, entry in doc["tasks"].items():
        for metric, label in METRICS:
            rows = [entry.get(m) for m in models]
            if not any(r and r.get(metric) is not None for r in rows):
                continue
            cells = [task, label, *[_cell(r, metric) for r in rows]]
            if pair and all(r and r.get(metric) is not None for r in rows):
                cells.append(f"{rows[1][metric] - rows[0][metric]:+.3f}")
                means.setdefault(label, []).append((rows[0][metric], rows[1][metric]))
            elif pair:
                cells.append("")
            if not pair:
                means.setdefault(label, []).append((rows[0][metric], rows[0][metric]))
            cells.append(str(next(r["items"] for r in rows if r)))
            lines.append("| " + " | ".join(cells) + " |")
    for label, values in means.items():
        if len(values) > 1:
            base = sum(v[0] for v in values) / len(values)
            adapter = sum(v[1] for v in values) / len(values)
            cells = [f"mean of {len(values)} tasks", label] + ([f"{base:.3f}", f"{adapter:.3f}", f"{adapter - base:+.3f}"]
                                                                if pair else [f"{adapter:.3f}"]) + [""]
            lines.append("| " + " | ".join(cells) + " |")
    if not pair:
        lines += ["", "A merged model folder holds the adapter in its weights; its base is not in it, so only the "
                      "merged model is scored (score the run folder it came from for base vs adapter)."]
    return "\n".join(lines) + "\n"


def write(doc: dict, out: Path) -> tuple[Path, Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, doc)
    table = out.with_suffix(".md")
    write_text(table, markdown(doc))
    return out, table
