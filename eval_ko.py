"""Is the fine-tuned model better than its base, and did it keep its Korean? Score a run folder from
finetune_ko.py, base (adapter off) vs adapter on one load, with lm-evaluation-harness's own Korean tasks fed
from local files, and/or answer a question file side by side. Offline; results go into the run folder.
    python3 eval_ko.py --adapter=outputs/RUN --tasks=kobest --kobest_dir=/data/kobest            # test split
    python3 eval_ko.py --adapter=outputs/tiny --tasks=kobest --kobest_dir=../shared/data/kobest --split=dev --limit=50
    python3 eval_ko.py --adapter=outputs/RUN --tasks=kmmlu --kmmlu_dir=/data/KMMLU/data          # or haerae, kobest_copa
    python3 eval_ko.py --adapter=outputs/RUN --questions=user_oriented_instructions.jsonl       # answers side by side
    python3 eval_ko.py --adapter=outputs/RUN --questions=qs.txt --judge_url=http://127.0.0.1:8001/v1
Scores: outputs/RUN/eval/<tasks>-<split>.json and .md (a table base vs adapter with the difference); answers:
outputs/RUN/eval/answers-<file>.json, .md and .html. Stopped midway, the same command continues from the cache
in outputs/RUN/eval/cache/. A merged model folder is scored alone (its base is not in it).
"""
import sys
from pathlib import Path

import kochat  # noqa: F401  first: it quiets a misleading bitsandbytes CPU warning before bitsandbytes loads

from kochat import answering, cli, modeling, runs
from kochat.errors import UserError
from kochat.evaluation import judge, steps, suites
from kochat.evaluation.questions import read_questions

# ---- constants: edit here, or override on the command line as --name=value -------------------
ADAPTER = "outputs/polyglot-ko-12.8b-koalpaca"  # a run folder from finetune_ko.py, or a merged model folder
BASE = ""                                    # the run's base where it is here (folder or hub id); "" = its MODEL_ID
TASKS = []                                   # kobest, kmmlu, haerae (comma-separated), one of their tasks
                                             # (kobest_copa), or any lm-eval task name (needs the hub)
KOBEST_DIR = ""                              # KoBEST's folder: BoolQ/ COPA/ HellaSwag/ SentiNeg/ WiC/, each <split>.tsv
KMMLU_DIR = ""                               # KMMLU's data folder: <Subject>-<split>.csv as released
HAERAE_DIR = ""                              # HAE-RAE Bench's files: general_knowledge.csv, history.csv, …
SPLIT = "test"                               # test, dev (= validation) or train: the file each task reads
LIMIT = 0                                    # score only the first N items of each task; 0 = all
BATCH_SIZE = 0                               # requests scored together by lm-eval; 0 = the most that fit (auto)
CACHE = True                                 # keep each model's answers in outputs/RUN/eval/cache: resume there
QUESTIONS = ""                               # a question file (.txt, .jsonl, KULLM/Self-Instruct form): answer it
MAX_NEW_TOKENS = 256                         # longest answer, in tokens (the same for base and adapter)
TEMPERATURE = 0.0                            # 0 = greedy: the same answers every time
TOP_P = 1.0                                  # nucleus sampling, with TEMPERATURE above 0
ANSWER_BATCH = 8                             # questions answered together by gen()
SEED = 0                                     # sampling seed, the same for both models
JUDGE_URL = ""                               # an OpenAI-compatible API (serve_ko, vLLM) that scores answers 1-10
JUDGE_MODEL = ""                             # the judge's model id; "" = the first the endpoint lists
JUDGE_API_KEY = ""                           # the judge's key, if it needs one
OUT = ""                                     # the JSON to write; "" = outputs/RUN/eval/<tasks>-<split>.json or
                                             # answers-<questions file>.json
FOUR_BIT = "auto"                            # auto: a run's base in 4-bit NF4, as trained, a merged export in
                                             # 16 bits where it fits the GPU (else 4-bit); true; false (16-bit)
VERBOSE = False                              # lm-eval's own log lines too

PRESETS = {}
FLAGS = {}


def main(argv):
    cli.apply_command_line(globals(), argv, PRESETS, FLAGS, Path(__file__), __doc__)

    # 1. Check everything before the model loads: the run folder, each task's files and columns, the questions
    if not TASKS and not QUESTIONS:
        raise UserError("nothing to do: pass --tasks=kobest (with --kobest_dir=…) and/or --questions=FILE")
    if TASKS and QUESTIONS and OUT:
        raise UserError("--out names one file: leave it out when giving both --tasks and --questions")
    if not TASKS and (LIMIT or SPLIT != "test"):
        raise UserError("--limit and --split choose a benchmark's items: give them with --tasks "
                        "(--questions answers every question in the file)")
    cli.check_ranges((LIMIT >= 0, f"--limit must be 0 (all) or more, not {LIMIT}"),
                     (BATCH_SIZE >= 0, f"--batch_size must be 0 (the most that fit) or more, not {BATCH_SIZE}"),
                     (ANSWER_BATCH >= 1, f"--answer_batch must be at least 1, not {ANSWER_BATCH}"),
                     (MAX_NEW_TOKENS >= 1, f"--max_new_tokens must be at least 1, not {MAX_NEW_TOKENS}"),
                     (0 <= TEMPERATURE <= 2, f"--temperature must be from 0 (greedy) to 2, not {TEMPERATURE:g}"),
                     (0 < TOP_P <= 1, f"--top_p must be above 0 and at most 1, not {TOP_P:g}"))
    four_bit_choice = cli.auto_or_bool("FOUR_BIT", FOUR_BIT)
    run = runs.open_run(ADAPTER, BASE)
    folders = {"kobest": KOBEST_DIR, "kmmlu": KMMLU_DIR, "haerae": HAERAE_DIR}
    local, hub = suites.resolve(TASKS, folders, SPLIT) if TASKS else ([], [])
    questions = read_questions(QUESTIONS) if QUESTIONS else []
    scores_out = (Path(OUT) if OUT else steps.default_out(run, TASKS, SPLIT, LIMIT)) if TASKS else None
    answers_out = (Path(OUT) if OUT else Path(run.folder) / runs.EVAL_DIR / f"answers-{Path(QUESTIONS).stem}.json"
                   ) if QUESTIONS else None
    questions_file = Path(QUESTIONS).expanduser() if QUESTIONS else None
    for out in filter(None, (scores_out, answers_out)):  # checked now, not after the model has answered
        runs.check_file_can_be_written(out, "OUT", reads=questions_file)  # first: "." has no name to change
        for beside in (out.with_suffix(".md"), out.with_suffix(".html")):  # a report is the three
            runs.check_file_can_be_written(beside, "OUT", reads=questions_file)
    if answers_out and not OUT:
        steps.check_not_another_files_answers(answers_out, QUESTIONS)
    judge_model = judge.check(JUDGE_URL, JUDGE_API_KEY, JUDGE_MODEL) if JUDGE_URL and questions else ""

    # 2. Load the run as chat does: the base in 4-bit with the adapter on it (a merged folder unquantized where it fits)
    _, tokenizer, model = answering.load_for_answering(run, four_bit=four_bit_choice)
    four_bit = getattr(model, "is_loaded_in_4bit", False)  # an int8/int4 export loads as saved, never in 4-bit
    print(f"{run.folder}: base {run.base_model}" + (" + adapter" if run.adapter else " (merged)") +
          (" in 4-bit NF4" if four_bit else " as exported" if modeling.saved_quantization(model.config)
           else f" in {str(model.dtype).removeprefix('torch.')}") +
          f"; {len(local) + len(hub)} tasks, {len(questions)} questions")

    # 3. Scores: lm-eval scores base (adapter disabled) and adapter; JSON and a table base vs adapter
    if TASKS:
        steps.score_tasks(run, model, tokenizer, local, hub, out=scores_out, split=SPLIT, limit=LIMIT,
                          batch_size=BATCH_SIZE, cache=CACHE, four_bit=four_bit, verbose=VERBOSE)

    # 4. Answers: both models answer every question with the same settings, side by side, with figures
    if questions:
        questions = fitting(questions, tokenizer, run.template, model.config)
        settings = dict(max_new_tokens=MAX_NEW_TOKENS, temperature=TEMPERATURE, top_p=TOP_P)
        steps.answer_questions(run, model, tokenizer, questions, questions_file=QUESTIONS, out=answers_out,
                               settings=settings, batch_size=ANSWER_BATCH, seed=SEED, four_bit=four_bit, judge_url=JUDGE_URL,
                               judge_model=judge_model, judge_api_key=JUDGE_API_KEY, cache=CACHE)


def fitting(questions, tokenizer, template, config):
    """The questions whose prompt and longest answer fit the model's positions; a line names those left out (as
    chat_ko.py refuses them: a longer prompt runs slowly and is answered as noise)."""
    from kochat.generation import render
    from kochat.tokenization import encode_prompt

    positions = modeling.context_length(config)
    room = positions - MAX_NEW_TOKENS
    fits = [len(encode_prompt(tokenizer, render(template, (q.question, q.input))[0])) <= room for q in questions]
    kept = [q for q, ok in zip(questions, fits) if ok]
    left_out = [q.id for q, ok in zip(questions, fits) if not ok]
    if left_out:
        print(f"    left out {len(left_out)} question(s) longer than this model takes ({room} prompt tokens with "
              f"--max_new_tokens={MAX_NEW_TOKENS}, of {positions}): {', '.join(map(str, left_out[:10]))}"
              f"{' …' if len(left_out) > 10 else ''}")
    if not kept:
        raise UserError(f"every question in {QUESTIONS} is longer than this model takes ({room} prompt tokens with "
                        f"--max_new_tokens={MAX_NEW_TOKENS}): shorten them")
    return kept


if __name__ == "__main__":
    sys.exit(cli.run(main))
