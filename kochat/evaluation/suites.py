"""The benchmarks read from local files, as lm-evaluation-harness tasks.

A suite is a family of lm-eval tasks (kobest: kobest_boolq … kobest_wic) whose data a company keeps as
files: KoBEST's released TSVs (`DIR/BoolQ/test.tsv` …), KMMLU's CSVs (`DIR/Accounting-test.csv` …),
HAE-RAE Bench's (`DIR/general_knowledge.tsv` …). Each file is read by kochat.records, as every data file of
the project, and checked here (folder, columns, labels: one line each, before any model loads) and renamed
into the fields of the hub dataset lm-eval's task reads (skt/kobest_v1, HAERAE-HUB/KMMLU,
HAERAE-HUB/HAE_RAE_BENCH). The task itself stays lm-eval's: its own YAML (prompt, choices, target, metrics)
with only the data source swapped for the local rows (`custom_dataset`) and the one split asked for. Any
other lm-eval task name runs as lm-eval defines it, from the hub.
"""
from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..cli import flag
from ..errors import UserError
from ..hub import use_offline_if_unreachable
from ..records import LOCAL_SUFFIXES, BadRecord, read_file

SPLIT_FILES = {"test": "test", "dev": "dev", "validation": "dev", "train": "train"}  # --split -> file stem


def _bool(value: str) -> int:
    low = value.strip().lower()
    if low in ("true", "1"):
        return 1
    if low in ("false", "0"):
        return 0
    raise ValueError("expected True or False")


def _int_in(low: int, high: int, shift: int = 0) -> Callable[[str], int]:
    def read(value: str) -> int:
        number = float(value)  # "2" or "2.0" (files saved by pandas); never 2.7 or inf
        if not (number.is_integer() and low <= number <= high):
            raise ValueError(f"expected a whole number from {low} to {high}")
        return int(number) + shift
    return read


def _choice_letter(value: str) -> str:
    text = value.strip()
    text = f"({text})" if len(text) == 1 else text
    if text not in ("(A)", "(B)", "(C)", "(D)", "(E)"):
        raise ValueError("expected one of (A) … (E)")
    return text


@dataclass(frozen=True)
class Layout:
    """How one task's file looks: the file's columns -> the hub dataset's fields, and the label's reader."""
    columns: dict[str, str]
    label: str                     # the file column holding the answer
    read_label: Callable[[str], object]


# KoBEST (skt/kobest_v1): its loader renames the released TSVs' columns as here (True/False -> 1/0, COPA 1/2 -> 0/1).
KOBEST = {
    "kobest_boolq": ("BoolQ", Layout({"Text": "paragraph", "Question": "question", "Answer": "label"}, "Answer",
                                     _bool)),
    "kobest_copa": ("COPA", Layout({"sentence": "premise", "question": "question", "1": "alternative_1",
                                    "2": "alternative_2", "Answer": "label"}, "Answer", _int_in(1, 2, -1))),
    "kobest_hellaswag": ("HellaSwag", Layout({"context": "context", "choice1": "ending_1", "choice2": "ending_2",
                                              "choice3": "ending_3", "choice4": "ending_4", "label": "label"},
                                             "label", _int_in(0, 3))),
    "kobest_sentineg": ("SentiNeg", Layout({"Text": "sentence", "Label": "label"}, "Label", _int_in(0, 1))),
    "kobest_wic": ("WiC", Layout({"Target": "word", "SENTENCE1": "context_1", "SENTENCE2": "context_2",
                                  "ANSWER": "label"}, "ANSWER", _bool)),
}
# KMMLU (HAERAE-HUB/KMMLU): data/<Subject>-<split>.csv, answer 1-4 as released (lm-eval's target is answer-1).
KMMLU_LAYOUT = Layout({"question": "question", "A": "A", "B": "B", "C": "C", "D": "D", "answer": "answer"}, "answer",
                      _int_in(1, 4))
# HAE-RAE Bench (HAERAE-HUB/HAE_RAE_BENCH): one file a subset, a query with its options and the answer "(A)".."(E)".
HAERAE_LAYOUT = Layout({"query": "query", "answer": "answer"}, "answer", _choice_letter)


@dataclass
class Suite:
    name: str
    folder_flag: str               # the constant naming its folder, e.g. KOBEST_DIR
    lm_eval_folders: tuple         # where lm-eval keeps its YAML, under lm_eval/tasks/
    splits: tuple
    members: dict = field(default_factory=dict)  # task -> (file stem or folder, Layout), filled below


SUITES = {
    "kobest": Suite("kobest", "KOBEST_DIR", ("kobest",), ("test", "dev", "validation", "train")),
    "kmmlu": Suite("kmmlu", "KMMLU_DIR", ("kmmlu/default",), ("test", "dev", "train")),
    "haerae": Suite("haerae", "HAERAE_DIR", ("haerae",), ("test",)),
}
SUITES["kobest"].members = dict(KOBEST)


@dataclass(frozen=True)
class LocalTask:
    """One lm-eval task fed from one local file."""
    suite: str
    task: str
    file: Path
    layout: Layout

    def rows(self) -> list[dict]:
        return read_rows(self.file, self.layout)


def task_manager(suites=None):
    """lm-eval's TaskManager over its own YAML folders of the given suites only (indexing all of lm-eval's
    14,000 tasks takes ~20 s); None: all of them, for task names of any suite."""
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    if suites is None:
        return TaskManager()
    root = Path(lm_eval.tasks.__file__).parent
    return TaskManager(include_defaults=False,
                       include_path=[root / f for s in suites for f in SUITES[s].lm_eval_folders])


@functools.lru_cache(maxsize=1)
def _local_index():
    return task_manager(list(SUITES))


def lm_eval_config(task: str) -> dict:
    """lm-eval's own config of a task, from its YAML (includes merged, !function resolved to lm-eval's code)."""
    from lm_eval.tasks._yaml_loader import load_yaml  # lm-eval's loader, as its TaskManager reads a task

    return load_yaml(_local_index().task_index[task].yaml_path, resolve_func=True)


def suite_members(suite: str) -> dict:
    """task -> (file stem or folder, Layout) for a suite; KMMLU's and HAE-RAE's subjects read from lm-eval's
    own task list (their dataset_name is the released file's name)."""
    found = SUITES[suite].members
    if not found:
        index = _local_index()
        folder = SUITES[suite].lm_eval_folders[0].rsplit("/", 1)[-1]  # kmmlu/default, haerae
        for name in index.all_subtasks:
            entry = index.task_index[name]
            if Path(entry.yaml_path).parent.name == folder:
                found[name] = (entry.cfg["dataset_name"], KMMLU_LAYOUT if suite == "kmmlu" else HAERAE_LAYOUT)
    return found


# lm-evaluation-harness and what its metrics import: not in the first install (requirements.txt), which trains
# and answers; requirements-dev.txt pins the same for the tests.
LM_EVAL_INSTALL = ("pip install lm-eval==0.4.13 scikit-learn==1.9.1 sacrebleu==2.6.0 sqlitedict==2.1.0 evaluate==0.4.6 "
                   "rouge-score==0.1.2 pytablewriter==1.2.1 word2number==1.1 more-itertools==11.2.1")


def require_lm_eval() -> None:
    """One line saying how to install lm-evaluation-harness, before anything loads, where it is missing."""
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise UserError(f"scoring benchmarks needs lm-evaluation-harness, which is not installed: {LM_EVAL_INSTALL}") from None


def resolve(tasks: list[str], folders: dict[str, str], split: str) -> tuple[list[LocalTask], list[str]]:
    """The tasks asked for (suite names like kobest, or one task of one, like kobest_copa; any other lm-eval
    task name) as local tasks, each file found and checked, and hub task names; UserError on anything wrong."""
    require_lm_eval()
    local: list[LocalTask] = []
    hub: list[str] = []
    for name in tasks:
        suite = name if name in SUITES else next((s for s in SUITES if name.startswith(f"{s}_")
                                                  and name in suite_members(s)), None)
        if suite is None:
            hub.append(name)
            continue
        members = suite_members(suite)
        wanted = members if name == suite else {name: members[name]}
        local += find_files(suite, wanted, folders.get(suite, ""), split)
    if hub:
        check_hub_names(hub)
    for t in local:
        t.rows()  # every file read and checked now, before any model loads
    return local, hub


def find_files(suite: str, wanted: dict, folder: str, split: str) -> list[LocalTask]:
    spec = SUITES[suite]
    option = flag(spec.folder_flag)
    if not folder:
        raise UserError(f"--tasks={suite} reads its files from a folder: pass {option}=DIR (see --help)")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UserError(f"{option}={folder} is not a folder")
    if split not in spec.splits:
        raise UserError(f"--split={split}: {suite} has the splits {', '.join(spec.splits)}")
    stem = SPLIT_FILES.get(split, split)
    found = []
    if suite == "kobest":
        for task, (sub, layout) in wanted.items():
            file = root / sub / f"{stem}.tsv"
            if not (root / sub).is_dir():
                raise UserError(f"{option}={folder} has no {sub}/ folder (KoBEST's layout: BoolQ/, COPA/, HellaSwag/, "
                                f"SentiNeg/, WiC/, each with test.tsv, dev.tsv, train.tsv)")
            if not file.is_file():
                there = sorted(p.stem for p in (root / sub).glob("*.tsv"))
                raise UserError(f"no {file}: --split={split} reads {stem}.tsv; {sub}/ holds "
                                f"{', '.join(there) or 'no .tsv files'}")
            found.append(LocalTask(suite, task, file, layout))
        return found
    for task, (name, layout) in wanted.items():
        # KMMLU's data/<Subject>-<split>.csv; HAE-RAE: a file a subset, named by lm-eval's dataset_name, in any
        # format kochat reads (HAE-RAE Bench 1.1 released data/general_knowledge.tsv …; a hub export is .csv/.parquet)
        names = [f"{name}-{stem}.csv"] if suite == "kmmlu" else [f"{name}{suffix}" for suffix in LOCAL_SUFFIXES]
        file = next((root / n for n in names if (root / n).is_file()), None)
        if file is not None:
            found.append(LocalTask(suite, task, file, layout))
    if not found:
        example = "Accounting-test.csv, Biology-test.csv, … (KMMLU's data/ folder)" if suite == "kmmlu" else \
            ("general_knowledge, history, loan_words, rare_words, standard_nomenclature, each as "
             f"{'/'.join(LOCAL_SUFFIXES)} with the columns query, answer")
        raise UserError(f"{option}={folder} holds no {suite} file for --split={split}; expected {example}")
    return found


def read_rows(file: Path, layout: Layout) -> list[dict]:
    """The file's rows in the hub dataset's fields, read as kochat reads any data file (kochat.records: .tsv,
    .csv, .jsonl, .json, .parquet); rows with an empty field are left out, as the hub's own loader drops them.
    One line on a wrong column, row or label."""
    records = read_file(file)
    if not records:
        raise UserError(f"{file} has no rows")
    for number, record in zip(records.numbers, records):  # where a spreadsheet or an editor shows it
        if not isinstance(record, dict):
            reason = record.reason if isinstance(record, BadRecord) else f"{type(record).__name__}, not named fields"
            raise UserError(f"{file}, {records.unit} {number}: {reason}")
    columns = list(dict.fromkeys(name for record in records for name in record))
    missing = [c for c in layout.columns if c not in columns]
    if missing:
        raise UserError(f"{file}: no column {', '.join(missing)}; it has {', '.join(columns)} "
                        f"(expected {', '.join(layout.columns)})")
    rows = []
    for number, record in zip(records.numbers, records):
        values = {c: "" if record.get(c) is None else str(record[c]).strip() for c in layout.columns}
        if not all(values.values()):
            continue
        try:
            values[layout.label] = layout.read_label(values[layout.label])
        except ValueError as e:
            raise UserError(f"{file}, {records.unit} {number}: {layout.label} is {record[layout.label]!r}, "
                            f"{e}") from None
        rows.append({layout.columns[c]: v for c, v in values.items()})
    if not rows:
        raise UserError(f"{file} has no rows")
    return rows


def load_local(task: LocalTask, **_lm_eval_metadata):
    """lm-eval's custom_dataset: the local rows as the one split ("test") the task is scored on."""
    import datasets

    return datasets.DatasetDict({"test": datasets.Dataset.from_list(task.rows())})


def config_for(task: LocalTask) -> dict:
    """lm-eval's own task config with the local rows as its data: 0-shot, the rows scored as the test split.
    The f1 metric keeps lm-eval's macro-F1 aggregation but not its HF-evaluate lookup, which would download
    a metric script for a pass-through (the aggregation is what computes the score)."""
    config = lm_eval_config(task.task)
    config.update(custom_dataset=functools.partial(load_local, task), test_split="test", validation_split=None,
                  training_split=None, fewshot_split=None)
    config["metric_list"] = [{**m, "hf_evaluate": False} for m in config.get("metric_list", [])]
    config.setdefault("metadata", {})["local_file"] = str(task.file)
    return config


def check_hub_names(names: list[str]) -> None:
    """Task names lm-eval knows (indexing all its tasks, ~20 s, only when such a name is given); they load their
    data from the hub, so they need it."""
    local_names = list(SUITES) + [t for s in SUITES for t in suite_members(s)]
    for n in names:  # a local name mistyped, before asking the network
        close = difflib.get_close_matches(n, local_names, n=1, cutoff=0.8)
        if close:
            raise UserError(f"--tasks: unknown task {n!r} (did you mean {close[0]}?); from local files: "
                            f"{', '.join(SUITES)} or one of their tasks (kobest_copa)")
    if use_offline_if_unreachable():  # HF_HUB_OFFLINE, or no answer: lm-eval would fail after the model loads
        raise UserError(f"--tasks: unknown task {names[0]!r}; from local files: {', '.join(SUITES)} or one of their "
                        f"tasks (kobest_copa); other lm-eval tasks read the hub, and it is closed here (offline)")
    known = task_manager(None).all_tasks
    for n in names:
        if n not in known:
            close = difflib.get_close_matches(n, known, n=1)
            raise UserError(f"--tasks: unknown task {n!r}{f' (did you mean {close[0]}?)' if close else ''}; from "
                            f"local files: {', '.join(SUITES)}; any lm-eval task name with the hub reachable")
