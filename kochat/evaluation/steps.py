"""eval_ko.py's two steps as functions, so that finetune_ko.py (EVAL_TASKS) scores a finished run with the same
code: score the tasks (base vs adapter) into the run's eval/ folder, answer the questions side by side."""
from __future__ import annotations

from pathlib import Path

from ..cli import flag
from ..errors import UserError
from ..runs import EVAL_DIR
from . import answers, harness, judge, pages, scores, suites


def default_out(run, tasks: list[str], split: str, limit: int = 0) -> Path:
    """outputs/RUN/eval/kobest-test.json (suites joined with +), named by the file the split reads (validation:
    kobest-dev.json, as dev); a run of the first LIMIT items a task writes kobest-test-first10.json, beside the
    whole split's, never over it."""
    stem = suites.SPLIT_FILES.get(split, split)
    return Path(run.folder) / EVAL_DIR / f"{'+'.join(tasks)}-{stem}{f'-first{limit}' if limit else ''}.json"


def check_not_another_files_answers(out: Path, questions_file: str) -> None:
    """answers-qs.json is named by the questions file's stem: one from another file of that name (qs.txt and
    qs.jsonl, or another folder's qs.txt) is not replaced. Reports keep the file's full path (older ones, a
    path as given: compared from the current folder)."""
    import json

    try:
        earlier = json.loads(out.read_text(encoding="utf-8")).get("questions")
    except (OSError, ValueError, AttributeError):
        return  # none yet (or unreadable: written again)
    if earlier and Path(earlier).resolve() != Path(questions_file).resolve():  # saved resolved: from any folder
        raise UserError(f"{out} holds the answers to {earlier}; to keep both, pass --out=FILE for these "
                        f"(or move that report away first)")


def score_tasks(run, model, tokenizer, local, hub, *, out: Path, split: str, limit: int = 0, batch_size: int = 0,
                cache: bool = True, four_bit: bool = True, verbose: bool = False) -> dict:
    """Base and adapter scored by lm-eval on the checked tasks; the JSON and its Markdown table written; the
    table printed."""
    cache_dir = Path(run.folder) / EVAL_DIR / "cache" if cache else None
    scored = harness.score_base_and_adapter(model, tokenizer, run, local, hub, cache_dir=cache_dir,
                                            four_bit=four_bit, limit=limit, batch_size=batch_size, verbose=verbose)
    doc = scores.document(run, scored, local, split=split, limit=limit, harness_version=harness.lm_eval_version(),
                          four_bit=four_bit)
    json_file, table = scores.write(doc, out)
    print(scores.markdown(doc))
    print(f"scores in {json_file} and {table}")
    return doc


def answer_questions(run, model, tokenizer, questions, *, questions_file: str, out: Path, settings: dict,
                     batch_size: int, seed: int, four_bit: bool, judge_url: str = "", judge_model: str = "",
                     judge_api_key: str = "", cache: bool = True) -> dict:
    """Base and adapter answer every question with the same settings; figures per model (and judge scores);
    JSON, Markdown and an HTML page written side by side."""
    names = harness.fingerprint(run, four_bit)
    cache_dir = Path(run.folder) / EVAL_DIR / "cache"
    judged = cache_dir / "judge.jsonl"
    if not cache:  # start over: this model's earlier answers and their verdicts are dropped, not read back
        for file in [cache_dir / f"answers-{name}.jsonl" for name in names.values()] + [judged]:
            file.unlink(missing_ok=True)
    found = answers.answer_base_and_adapter(model, tokenizer, run, questions, cache_dir=cache_dir, names=names,
                                            settings=settings, batch_size=batch_size, seed=seed)
    if judge_url:
        for label, records in found.items():
            verdicts = judge.judge_all(judge_url, judge_model, records, cache=judged, api_key=judge_api_key,
                                       desc=f"judging {label}")
            for r, verdict in zip(records, verdicts):
                r["judge"] = verdict
    doc = {"run": str(run.folder), "base_model": run.base_model, "adapter": run.adapter,
           "questions": str(Path(questions_file).resolve()),
           "settings": {**settings, "seed": seed, "four_bit": four_bit},
           "judge": {"url": judge_url, "model": judge_model} if judge_url else None,
           "figures": {label: answers.figures(records, tokenizer) for label, records in found.items()},
           "items": [{"id": q.id, "question": q.question, "input": q.input,
                      "answers": {label: {k: v for k, v in records[i].items()
                                          if k not in ("key", "question", "input", "id")}
                                  for label, records in found.items()}}
                     for i, q in enumerate(questions)]}
    files = pages.write(doc, out)
    print(pages.figures_markdown(doc))
    print(f"answers in {', '.join(map(str, files))}")
    return doc


def parse_spec(spec: str) -> list[tuple[str, str, str]]:
    """finetune_ko.py's EVAL_TASKS, "kobest=DIR[@split],kmmlu=DIR[@split]" -> [(suite, folder, split)]."""
    found = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        name, eq, rest = item.partition("=")
        folder, _, split = rest.partition("@")
        if not eq or not folder or name not in suites.SUITES:
            raise UserError(f"{flag('EVAL_TASKS', spec)}: expected SUITE=FOLDER[@SPLIT] items, comma-separated, "
                            f"SUITE one of {', '.join(suites.SUITES)} (e.g. kobest=/data/kobest@dev)")
        found.append((name, folder, split or "test"))
    return found


def check_spec(spec: str) -> list:
    """EVAL_TASKS checked (folders, files, columns) before training starts: [(suite, local tasks, split)]. A line
    that names eval_ko.py's option for the folder (--kobest_dir=…) names the folder as EVAL_TASKS gave it."""
    checked = []
    for name, folder, split in parse_spec(spec):
        try:
            checked.append((name, suites.resolve([name], {name: folder}, split)[0], split))
        except UserError as e:
            raise UserError(f"{flag('EVAL_TASKS', spec)}: " + str(e).replace(flag(f"{name}_DIR", folder), folder)
                            ) from None
    return checked


def after_training(folder, model, tokenizer, spec: str) -> None:
    """finetune_ko.py's last step: the finished run scored base vs adapter on each EVAL_TASKS suite, with the
    model still loaded, into folder/eval/<suite>-<split>.json and .md, as eval_ko.py writes them."""
    from .. import runs

    if not spec:
        return
    run = runs.open_run(str(folder))
    model.eval()
    for name, local, split in check_spec(spec):
        score_tasks(run, model, tokenizer, local, [], out=default_out(run, [name], split), split=split)
