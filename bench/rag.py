"""Retrieval quality and speed of the document index (kochat.documents) on real Korean sets, on a CPU.

    python3 -m bench.rag                                    # quality + speed -> bench/results/2026-11-29-cpu-rag/
    python3 -m bench.rag --parts=quality --sets=autorag_retrieval,publichealthqa_ko --sweep=false
    python3 -m bench.rag --parts=big_files                  # 100k passages indexed from files, the slow way (once)

Every figure goes through the real pipeline: each corpus passage is written as a UTF-8 .txt document
(its title, if any, as the first line; the file name is a safe form of its id), indexed with
kochat.documents.indexing.update_index, opened with store.open_index and searched with retrieval.Searcher.
A hit's `source` (file) maps back to its document id; documents are ranked by their first passage.

Parts:
  quality    document-level recall@1/5/20 and MRR@10 on autorag_retrieval, publichealthqa_ko,
             allganize_rag_ko, finreg (+ multi-hop) and KoBEST BoolQ, at index_ko.py's defaults, and a sweep
             of CHUNK_CHARS and BM25 (k1, b). Kiwi's analysis of a text is memoised across the sweep (the
             same text gives the same morphemes), so the sweep re-chunks and re-indexes without re-analysing.
  speed      indexing rate (files -> index, Kiwi included, no memo) on the R&D manuals + autorag pages; an
             unchanged and a 1-file update; index size; search latency at that size and at BIG_PASSAGES,
             where the big index is those documents copied under distinct file names, written with the
             real store writer from the passages Kiwi already produced (checked against the real chunker);
             and a 1-file update of the big index through update_index.
  big_files  the same big index built from its files by update_index from scratch: the honest time.
Raw JSON (one file a part) and a summary table. The data stays in ../shared/data; results hold figures
and query ids only.
"""
import csv
import json
import math
import os
import platform
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import namedtuple
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path

import index_ko as defaults  # the index's default settings: index_ko.py's constants block
from kochat import PROJECT_ROOT as ROOT
from kochat import cli
from kochat.documents import chunking, indexing, korean, store
from kochat.documents.readers import read_document
from kochat.documents.retrieval import Searcher, covers
from kochat.errors import UserError

# ---- constants: edit here, or override on the command line as --name=value -------------------
DATA = "../shared/data"         # the shared real data (relative to the repository root, or absolute)
OUT = "bench/results/2026-11-29-cpu-rag"  # where the JSON results go ("" = nowhere, print only)
PARTS = ["quality", "speed"]    # quality, speed, big_files
SETS = ["autorag_retrieval", "publichealthqa_ko", "allganize_rag_ko", "finreg", "kobest_boolq"]  # quality sets
CHUNK_CHARS = defaults.CHUNK_CHARS  # longest passage, in characters (index_ko.py's default)
OVERLAP_CHARS = defaults.OVERLAP_CHARS  # trailing sentences shared with the next passage (index_ko.py's)
BM25_K1 = defaults.BM25_K1      # BM25 term-frequency saturation (index_ko.py's default)
BM25_B = defaults.BM25_B        # BM25 length normalisation (index_ko.py's default)
MAX_FILE_MB = 50.0              # larger files are skipped (index_ko.py's default)
SWEEP = True                    # also run CHUNK_SWEEP (at the default BM25) and BM25_SWEEP (at the default chunking)
CHUNK_SWEEP = [300, 500, 800, 100000]   # 100000: each passage whole
BM25_SWEEP = ["1.2:0.75", "1.5:0.75", "1.2:0.9"]  # k1:b
OPAQUE_NAMES = ["autorag_retrieval"]    # sets also run with file names that carry nothing (doc-0001.txt)
SEARCH_PASSAGES = 200           # passages asked of each search, before keeping each document's first
BIG_PASSAGES = 100000           # size of the big index for search latency
LATENCY_QUERIES = 300           # timed searches at each size (the sets' questions, shuffled)
TOP_K = 5                       # passages a timed search returns (index_ko.py's TOP_K)
ANSWER_TOP_K = 3                # passages chat_ko.py and serve_ko.py give the model (their TOP_K) …
MIN_RELEVANCE = 0.3             # … when the best of them reaches this (their MIN_RELEVANCE), else NOT_COVERED
FOREIGN_QUESTIONS = 300         # other sets' questions asked of each index: what it should judge not covered
WORK = ""                       # scratch folder for documents and indexes; "" = a new temporary one
KEEP = False                    # keep the scratch folder

PRESETS = {}
FLAGS = {}

SYN = "ko_rag/synaptic_memory_benchmarks"
KS = (1, 5, 20)
MRR_AT = 10
Query = namedtuple("Query", "qid text gold")


# ---- data: corpus {doc id: (title, text)} and query groups {name: [Query]} --------------------------------
def data_path(*parts) -> Path:
    base = Path(DATA)
    return (base if base.is_absolute() else ROOT / base).joinpath(*parts)


def load_set(name):
    if name in ("autorag_retrieval", "publichealthqa_ko", "allganize_rag_ko"):
        d = json.loads(data_path(SYN, f"{name}.json").read_text(encoding="utf-8"))
        corpus = {k: (v.get("title") or "", v["text"]) for k, v in d["corpus"].items()}
        queries = [Query(q, text, tuple(d["qrels"][q])) for q, text in d["queries"].items()]
        return corpus, {name: queries}
    if name == "finreg":
        corpus, groups = {}, {}
        for group in ("finreg", "finreg_multihop"):
            d = json.loads(data_path(SYN, f"{group}.json").read_text(encoding="utf-8"))
            for q in d["queries"]:
                for e in q["evidence"]:
                    corpus[e["doc_id"]] = (" ".join(x for x in (e["law"], e["article_no"], e["title"]) if x), e["text"])
            groups[group] = [Query(q["qid"], q["query"], tuple(q["relevant_docs"])) for q in d["queries"]]
        return corpus, groups
    if name == "kobest_boolq":
        pool, queries = {}, []
        for split in ("train", "dev"):
            with open(data_path("kobest", "BoolQ", f"{split}.tsv"), encoding="utf-8", newline="") as f:
                reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                col = {c.lower(): c for c in reader.fieldnames}
                for row in reader:
                    text = row[col["text"]]
                    doc = pool.setdefault(text, f"boolq-{len(pool):04d}")
                    if split == "dev":
                        queries.append(Query(f"dev-{row[col['id']]}", row[col["question"]], (doc,)))
        return {doc: ("", text) for text, doc in pool.items()}, {name: queries}
    raise UserError(f"unknown set {name!r}; sets: autorag_retrieval, publichealthqa_ko, allganize_rag_ko, finreg, "
                     f"kobest_boolq")


def safe_name(doc_id: str) -> str:
    """A file-name stem for a document id: word characters (Hangul included), '.', '-' and '_' only."""
    name = re.sub(r"[^\w.\-]+", "_", doc_id).strip("_")[:120] or "doc"
    return "d" + name if name.startswith((".", "~")) else name  # a leading '.' or '~$' would hide the file


def write_docs(corpus: dict, folder: Path, opaque: bool = False) -> dict:
    """Each passage as a UTF-8 .txt document (title first); returns {file relative path: doc id}."""
    folder.mkdir(parents=True, exist_ok=True)
    by_file = {}
    for n, (doc, (title, text)) in enumerate(corpus.items()):
        stem = f"doc-{n:05d}" if opaque else safe_name(doc)
        rel, k = f"{stem}.txt", 1
        while rel in by_file:
            k += 1
            rel = f"{stem}_{k}.txt"
        (folder / rel).write_text(f"{title}\n{text}" if title.strip() else text, encoding="utf-8")
        by_file[rel] = doc
    return by_file


# ---- metrics -------------------------------------------------------------------------------------------------
def first_of_each(docs) -> list:
    """Documents in the order of their first passage."""
    return list(dict.fromkeys(docs))


def rank_metrics(rankings: list[list], golds: list[tuple]) -> dict:
    """Document-level recall@k (share of a query's gold documents in its top k), all@k (every gold one in the top
    k; reported when some query has several) and MRR@10 (first gold), averaged over queries."""
    out = {"queries": len(rankings)}
    several = any(len(set(g)) > 1 for g in golds)
    for k in KS:
        top = [set(r[:k]) for r in rankings]
        out[f"recall@{k}"] = round(statistics.fmean(len(t & set(g)) / len(set(g)) for t, g in zip(top, golds)), 4)
        if several:
            out[f"all@{k}"] = round(statistics.fmean(set(g) <= t for t, g in zip(top, golds)), 4)
    out[f"mrr@{MRR_AT}"] = round(statistics.fmean(
        next((1 / i for i, d in enumerate(r[:MRR_AT], start=1) if d in g), 0.0) for r, g in zip(rankings, golds)), 4)
    return out


def covered(hits) -> bool:
    """Whether chat and serving answer from these passages rather than with NOT_COVERED (grounding.ground)."""
    return covers(hits[:ANSWER_TOP_K], MIN_RELEVANCE)


def evaluate(searcher, queries, doc_of) -> tuple[dict, dict]:
    rankings, in_top_passages, ranks, judged = [], [], {}, []
    for q in queries:
        hits = searcher.search(q.text, top_k=SEARCH_PASSAGES)
        judged.append(covered(hits))
        ranking = first_of_each(doc_of[h.source] for h in hits)
        rankings.append(ranking)
        in_top_passages.append(first_of_each(doc_of[h.source] for h in hits[:TOP_K]))
        ranks[q.qid] = [ranking.index(g) + 1 if g in ranking else None for g in q.gold]
    metrics = rank_metrics(rankings, [q.gold for q in queries])
    # what the answer actually gets: the gold document among the first TOP_K passages
    metrics[f"recall_in_{TOP_K}_passages"] = round(statistics.fmean(
        len(set(d) & set(q.gold)) / len(set(q.gold)) for d, q in zip(in_top_passages, queries)), 4)
    metrics["judged_covered"] = round(statistics.fmean(judged), 4)  # every question here has its answer: ~1 is right
    return metrics, ranks


# ---- Kiwi: memo (the sweep) and a clock (the speed part) -------------------------------------------------------
class KiwiMemo:
    """korean.sentences and korean.terms memoised by text while active: same text, same analysis."""

    def __enter__(self):
        self.saved = korean.sentences, korean.terms
        real_sentences, real_terms = self.saved
        sentences_of, terms_of = {}, {}

        def sentences(text):
            if text not in sentences_of:
                sentences_of[text] = tuple(real_sentences(text))
            return list(sentences_of[text])

        def terms(text):
            if text not in terms_of:
                terms_of[text] = tuple(real_terms(text))
            return list(terms_of[text])

        korean.sentences, korean.terms = sentences, terms
        return self

    def __exit__(self, *exc):
        korean.sentences, korean.terms = self.saved


class KiwiClock:
    """Seconds spent inside korean.sentences and korean.terms while active."""

    def __enter__(self):
        self.saved, self.seconds, self.chars = (korean.sentences, korean.terms), 0.0, 0

        def timed(fn):
            def wrapper(text):
                t = time.perf_counter()
                try:
                    return fn(text)
                finally:
                    self.seconds += time.perf_counter() - t
                    self.chars += len(text)
            return wrapper

        korean.sentences, korean.terms = (timed(f) for f in self.saved)
        return self

    def __exit__(self, *exc):
        korean.sentences, korean.terms = self.saved


# ---- helpers ---------------------------------------------------------------------------------------------------
def build(docs: Path, index: Path, chunk=None, k1=None, b=None, progress=None):
    return indexing.update_index(str(docs), str(index), chunk_chars=chunk or CHUNK_CHARS, overlap_chars=OVERLAP_CHARS,
                                 k1=BM25_K1 if k1 is None else k1, b=BM25_B if b is None else b,
                                 max_file_bytes=int(MAX_FILE_MB * 1_000_000), progress=progress)


def disk_bytes(folder: Path) -> dict:
    """Apparent bytes and bytes on disk (du) of a folder's files."""
    apparent = used = 0
    parts = {}
    for p in folder.rglob("*"):
        if p.is_file():
            st = p.stat()
            apparent, used = apparent + st.st_size, used + st.st_blocks * 512
            top = p.relative_to(folder).parts[0]
            parts[top] = parts.get(top, 0) + st.st_size
    return {"bytes": apparent, "du_bytes": used, "bytes_by_entry": dict(sorted(parts.items()))}


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def percentiles(ms: list[float]) -> dict:
    s = sorted(ms)

    def p(q):
        return round(s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))], 2)
    return {"searches": len(s), "p50_ms": p(50), "p95_ms": p(95), "p99_ms": p(99), "max_ms": round(s[-1], 2),
            "mean_ms": round(statistics.fmean(s), 2)}


def latency_in_child(index: Path, questions: list[str], rounds: int = 3) -> dict:
    """Search latency as a fresh process that opens the index sees it (as index_ko.py --search_file and serve_ko.py
    do): the bench's own files flushed first, then `rounds` passes over the questions, one search at a time."""
    os.sync()
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_latency_child, str(index), questions, rounds).result()


def _latency_child(index: str, questions: list[str], rounds: int) -> dict:
    t = time.perf_counter()
    searcher = Searcher(store.open_index(index))
    open_s = time.perf_counter() - t
    korean.terms("키위 적재")
    for q in questions[:5]:  # warm-up
        searcher.search(q, top_k=TOP_K)
    every, by_round = [], []
    for _ in range(rounds):
        ms = []
        for q in questions:
            t = time.perf_counter()
            searcher.search(q, top_k=TOP_K)
            ms.append((time.perf_counter() - t) * 1000)
        every += ms
        by_round.append({**percentiles(ms), "load_average": [round(x, 2) for x in os.getloadavg()]})
    return {"passages": len(searcher.index.passages), "open_index_s": round(open_s, 2), "rss_mib": rss_mib(),
            **percentiles(every), "rounds": by_round}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": cpu, "platform": platform.platform(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def versions() -> dict:
    import bm25s
    import kiwipiepy
    import numpy

    return {"python": platform.python_version(), "kiwipiepy": kiwipiepy.__version__, "bm25s": bm25s.__version__,
            "numpy": numpy.__version__}


def header(argv) -> dict:
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
            "versions": versions(), "command": " ".join(["python3", "-m", "bench.rag", *argv]),
            "defaults": {"chunk_chars": CHUNK_CHARS, "overlap_chars": OVERLAP_CHARS, "bm25_k1": BM25_K1,
                         "bm25_b": BM25_B, "search_passages": SEARCH_PASSAGES, "top_k": TOP_K},
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def save(name: str, result: dict) -> None:
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if OUT:
        out = Path(OUT) if Path(OUT).is_absolute() else ROOT / OUT
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {out / name}.json", flush=True)


# ---- part 1: quality -------------------------------------------------------------------------------------------
def measure(docs, index, doc_of, groups, chunk=None, k1=None, b=None, per_query=False) -> dict:
    report = build(docs, index, chunk, k1, b)
    opened = store.open_index(index)
    searcher = Searcher(opened)
    t = time.perf_counter()
    found = {"chunk_chars": chunk or CHUNK_CHARS, "bm25_k1": opened.settings["bm25_k1"],
             "bm25_b": opened.settings["bm25_b"], "documents": len(doc_of), "passages": report.passages,
             "files_read": report.read, "files_unchanged": report.unchanged, "skipped": len(report.skipped),
             "index_s": round(report.seconds, 2), "groups": {}}
    ranks = {}
    for group, queries in groups.items():
        found["groups"][group], ranks[group] = evaluate(searcher, queries, doc_of)
    found["search_s"] = round(time.perf_counter() - t, 2)
    if per_query:
        found["gold_ranks"] = ranks  # query id -> document rank of each gold document (None: not in the results)
    return found


def quality(work: Path, argv) -> dict:
    result = {**header(argv), "part": "quality", "sets": {}}
    started = time.perf_counter()
    bm25_sweep = [tuple(float(x) for x in s.split(":")) for s in BM25_SWEEP]
    loaded = {name: load_set(name) for name in SETS}
    with KiwiMemo():
        for name in SETS:
            t0 = time.perf_counter()
            corpus, groups = loaded[name]
            docs = work / name / "docs"
            doc_of = write_docs(corpus, docs)
            entry = {"documents": len(corpus), "queries": {g: len(q) for g, q in groups.items()}}
            entry["default"] = measure(docs, work / name / f"index-c{CHUNK_CHARS}", doc_of, groups, per_query=True)
            line(name, entry["default"])
            # the other sets' questions, on other topics: each judged covered is an answer from the wrong documents
            foreign = sorted({q.text for other in SETS if other != name
                              for queries in loaded[other][1].values() for q in queries})
            foreign = random.Random(0).sample(foreign, min(FOREIGN_QUESTIONS, len(foreign)))
            searcher = Searcher(store.open_index(work / name / f"index-c{CHUNK_CHARS}"))
            default = entry["default"]
            default["foreign_judged_covered"] = round(statistics.fmean(
                covered(searcher.search(t, top_k=ANSWER_TOP_K)) for t in foreign), 4)
            print(f"  judged covered: its own questions {default['groups'][next(iter(groups))]['judged_covered']:.3f}, "
                  f"other sets' {default['foreign_judged_covered']:.3f}", flush=True)
            if SWEEP:
                entry["chunk_sweep"] = []
                for chunk in CHUNK_SWEEP:
                    if chunk == CHUNK_CHARS:
                        entry["chunk_sweep"].append({k: v for k, v in entry["default"].items() if k != "gold_ranks"})
                        continue
                    entry["chunk_sweep"].append(measure(docs, work / name / f"index-c{chunk}", doc_of, groups, chunk))
                    line(f"  chunk {chunk}", entry["chunk_sweep"][-1])
                entry["bm25_sweep"] = []
                for k1, b in bm25_sweep:  # on the default index: an update that changes only BM25 reads no file
                    entry["bm25_sweep"].append(measure(docs, work / name / f"index-c{CHUNK_CHARS}", doc_of, groups,
                                                       k1=k1, b=b))
                    line(f"  k1={k1} b={b}", entry["bm25_sweep"][-1])
            if name in OPAQUE_NAMES:
                opaque_docs = work / name / "docs-opaque"
                opaque_of = write_docs(corpus, opaque_docs, opaque=True)
                entry["opaque_file_names"] = measure(opaque_docs, work / name / "index-opaque", opaque_of, groups)
                line("  opaque file names", entry["opaque_file_names"])
            entry["seconds"] = round(time.perf_counter() - t0, 1)
            result["sets"][name] = entry
    result["seconds"] = round(time.perf_counter() - started, 1)
    save("quality", result)
    return result


def line(label, m):
    for group, g in m["groups"].items():
        extra = f"  both@5 {g['all@5']:.3f}  both@20 {g['all@20']:.3f}" if "all@5" in g else ""
        print(f"{label:<24} {group:<18} q={g['queries']:<4} passages={m['passages']:<6} R@1 {g['recall@1']:.3f}  "
              f"R@5 {g['recall@5']:.3f}  R@20 {g['recall@20']:.3f}  MRR@10 {g['mrr@10']:.3f}{extra}  "
              f"(index {m['index_s']} s)", flush=True)


# ---- part 2: speed ---------------------------------------------------------------------------------------------
def realistic_corpus() -> dict:
    """The R&D manuals, each page record a document (titled by manual, chapter and section), and autorag's pages."""
    corpus = {}
    for path in sorted(data_path("ko_rag", "rnd_manuals_pypi").glob("manual_*.json")):
        m = json.loads(path.read_text(encoding="utf-8"))
        for s in m["sections"]:
            title = " ".join(x for x in (m["meta"].get("source_title"), s.get("chapter_title"), s.get("section_label"),
                                         s.get("section_title")) if x)
            for n, page in enumerate(s["pages"]):
                if page["text"].strip():
                    corpus[f"{path.stem} {s['id']} p{page['printed_page']}-{n}"] = (title, page["text"])
    autorag, _ = load_set("autorag_retrieval")
    corpus.update(autorag)
    return corpus


def all_questions() -> list[str]:
    questions = [q.text for name in ("autorag_retrieval", "publichealthqa_ko", "allganize_rag_ko", "finreg",
                                     "kobest_boolq") for qs in load_set(name)[1].values() for q in qs]
    random.Random(0).shuffle(questions)
    return questions[:LATENCY_QUERIES]


def copy_plan(base: store.Index, target: int) -> list[tuple[str, str, int]]:
    """(base file, copy file, copy number) in order until the copies hold `target` passages."""
    counts = {rel: f.get("passages", 0) for rel, f in base.files.items()}
    plan, total, c = [], 0, 0
    while total < target:
        c += 1
        for rel in sorted(counts):
            if total >= target:
                break
            if counts[rel]:
                stem = rel[:-len(".txt")]
                plan.append((rel, f"사본{c:03d}/{stem}_사본{c:03d}.txt", c))
                total += counts[rel]
    return plan


def write_copies(base_docs: Path, big_docs: Path, plan) -> None:
    for rel, copy_rel, _ in plan:
        target = big_docs / copy_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(base_docs / rel, target)


def synthesise_big(base: store.Index, base_docs: Path, big_docs: Path, big_index: Path, plan) -> dict:
    """The generation update_index would write for the copies, made from the base's passages and terms: a copy
    differs from its base file only in its name, whose morphemes (the title terms) lead every passage's terms."""
    base_terms = store.read_terms(base)
    by_file = {}
    for i, p in enumerate(base.passages):
        by_file.setdefault(p["source"], []).append(i)
    files, passages = {}, []
    for rel, copy_rel, _ in plan:
        old_title = korean.terms(Path(rel).stem)
        new_title = tuple(korean.terms(Path(copy_rel).stem))
        for i in by_file[rel]:
            p, terms = base.passages[i], base_terms[i]
            assert terms[:len(old_title)] == tuple(old_title), rel
            passages.append(chunking.Passage(copy_rel, p["page"], p["heading"], p["row"], p["start"], p["end"],
                                             p["text"], new_title + terms[len(old_title):]))
        files[copy_rel] = {**base.files[rel]}
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    settings = {"chunk_chars": CHUNK_CHARS, "overlap_chars": OVERLAP_CHARS, "bm25_k1": BM25_K1, "bm25_b": BM25_B,
                "embedding_model": "", "docs": str(big_docs.resolve()), "kiwipiepy": korean.version(),
                "updated": now, "created": now, "files": len(files), "passages": len(passages), "skipped": 0}
    t = time.perf_counter()
    store.write_generation(big_index, settings, files, passages, None, BM25_K1, BM25_B)
    write_s = time.perf_counter() - t
    # the synthesis is what the real reader and chunker make of the same files: check a few
    checked = 0
    for rel, copy_rel, _ in random.Random(1).sample(plan, min(20, len(plan))):
        real = chunking.chunk(copy_rel, Path(copy_rel).stem, read_document(big_docs / copy_rel), CHUNK_CHARS,
                              OVERLAP_CHARS)
        made = [p for p in passages if p.source == copy_rel]
        assert real == made, f"synthesised passages of {copy_rel} differ from the chunker's"
        checked += 1
    return {"write_generation_s": round(write_s, 2), "files": len(files), "passages": len(passages),
            "files_checked_against_chunker": checked}


def speed(work: Path, argv) -> dict:
    result = {**header(argv), "part": "speed"}
    started = time.perf_counter()
    loaded, t = korean._kiwi is not None, time.perf_counter()
    korean.terms("키위 적재")  # Kiwi's model loads once a process
    result["kiwi_load_s"] = "loaded by an earlier part" if loaded else round(time.perf_counter() - t, 2)
    questions = all_questions()

    # indexing rate: the manuals' pages + autorag's pages, files -> index, Kiwi included (no memo)
    corpus = realistic_corpus()
    docs, index = work / "speed" / "docs", work / "speed" / "index"
    write_docs(corpus, docs)
    chars = sum(len(t) + len(x) for t, x in corpus.values())
    with KiwiClock() as kiwi:
        report = build(docs, index)
    real = store.open_index(index)
    result["indexing"] = {"corpus": "rnd_manuals_pypi page records + autorag_retrieval pages", "files": report.read,
                          "characters": chars, "passages": report.passages, "seconds": round(report.seconds, 2),
                          "passages_per_minute": round(report.passages / report.seconds * 60),
                          "files_per_minute": round(report.read / report.seconds * 60),
                          "characters_per_second": round(chars / report.seconds),
                          "kiwi_seconds": round(kiwi.seconds, 2),
                          "kiwi_share": round(kiwi.seconds / report.seconds, 3)}
    print(f"indexing: {json.dumps(result['indexing'], ensure_ascii=False)}", flush=True)
    size = disk_bytes(real.generation)
    result["index_size"] = {"passages": len(real.passages), **size,
                            "du_mib_per_10k_passages": round(size["du_bytes"] / 2**20 / len(real.passages) * 1e4, 2)}

    # updates of that index: nothing changed, then one file of N
    t = time.perf_counter()
    same = build(docs, index)
    unchanged_s = time.perf_counter() - t
    changed = sorted(docs.glob("*.txt"))[0]
    changed.write_text(changed.read_text(encoding="utf-8") + "\n이 쪽은 벤치마크가 고쳤습니다.", encoding="utf-8")
    one = build(docs, index)
    result["update"] = {"files": report.read, "passages": one.passages,
                        "unchanged_s": round(unchanged_s, 2), "unchanged_read": same.read,
                        "one_changed_s": round(one.seconds, 2), "one_changed_read": one.read}
    print(f"update: {json.dumps(result['update'])}", flush=True)
    result["latency_realistic"] = latency_in_child(index, questions)
    print(f"latency at {one.passages:,} passages: {json.dumps(result['latency_realistic'])}", flush=True)

    # the big index: copies of those documents, written by the store from the passages Kiwi already made
    base = store.open_index(index)
    plan = copy_plan(base, BIG_PASSAGES)
    big_docs, big_index = work / "big" / "docs", work / "big" / "index"
    t = time.perf_counter()
    write_copies(docs, big_docs, plan)
    big = {"copies": plan[-1][2], "write_files_s": round(time.perf_counter() - t, 2)}
    big.update(synthesise_big(base, docs, big_docs, big_index, plan))
    size = disk_bytes(store.current_generation(big_index))
    big["index_size"] = {**size, "du_mib_per_10k_passages": round(size["du_bytes"] / 2**20 / big["passages"] * 1e4, 2)}
    big["latency"] = latency_in_child(big_index, questions)
    print(f"big index: {json.dumps(big)}", flush=True)

    # one file of the big index changes: update_index keeps the rest by hash
    changed = big_docs / plan[len(plan) // 2][1]
    changed.write_text(changed.read_text(encoding="utf-8") + "\n이 쪽은 벤치마크가 고쳤습니다.", encoding="utf-8")
    deadline = time.perf_counter() + 900

    def guard(done, total, path):
        if time.perf_counter() > deadline:
            raise RuntimeError("the 1-file update of the big index is reading everything: stopped after 900 s")
    t = time.perf_counter()
    with KiwiClock() as kiwi:
        one = build(big_docs, big_index, progress=guard)
    big["update_one_changed"] = {"seconds": round(time.perf_counter() - t, 2), "files": one.read + one.unchanged,
                                 "read": one.read, "unchanged": one.unchanged, "passages": one.passages,
                                 "kiwi_seconds": round(kiwi.seconds, 2)}
    print(f"big update: {json.dumps(big['update_one_changed'])}", flush=True)
    result["big"] = big
    result["seconds"] = round(time.perf_counter() - started, 1)
    save("speed", result)
    return result


def big_files(work: Path, argv) -> dict:
    """The big index from its files, from scratch, through update_index: every copy read and analysed by Kiwi."""
    result = {**header(argv), "part": "big_files"}
    started = time.perf_counter()
    korean.terms("키위 적재")
    docs, index = work / "speed" / "docs", work / "speed" / "index"
    if store.current_generation(index) is None:
        write_docs(realistic_corpus(), docs)
        build(docs, index)
    base = store.open_index(index)
    plan = copy_plan(base, BIG_PASSAGES)
    big_docs, big_index = work / "big-files" / "docs", work / "big-files" / "index"
    write_copies(docs, big_docs, plan)
    with KiwiClock() as kiwi:
        report = build(big_docs, big_index)
    result["indexing"] = {"files": report.read, "copies": plan[-1][2], "passages": report.passages,
                          "seconds": round(report.seconds, 1), "minutes": round(report.seconds / 60, 1),
                          "passages_per_minute": round(report.passages / report.seconds * 60),
                          "kiwi_seconds": round(kiwi.seconds, 1), "kiwi_share": round(kiwi.seconds / report.seconds, 3)}
    print(f"big from files: {json.dumps(result['indexing'])}", flush=True)
    size = disk_bytes(store.current_generation(big_index))
    result["index_size"] = {**size, "du_mib_per_10k_passages": round(size["du_bytes"] / 2**20 / report.passages * 1e4, 2)}
    result["latency"] = latency_in_child(big_index, all_questions())
    print(f"latency: {json.dumps(result['latency'])}", flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    save("big_files", result)
    return result


# ---- summary ---------------------------------------------------------------------------------------------------
def summary(q, s) -> None:
    if q:
        print("\nquality at the defaults (chunk %d, overlap %d, k1 %g, b %g); multi-hop: both gold articles"
              % (CHUNK_CHARS, OVERLAP_CHARS, BM25_K1, BM25_B))
        print(f"| set | queries | passages | recall@1 | recall@5 | recall@20 | MRR@10 |\n|---|---|---|---|---|---|---|")
        for entry in q["sets"].values():
            d = entry["default"]
            for group, g in d["groups"].items():
                r = [g.get(f"all@{k}", g[f"recall@{k}"]) for k in KS]
                r = ["—" if k == 1 and f"all@{k}" in g else f"{x:.3f}" for k, x in zip(KS, r)]  # 2 gold: never in top 1
                print(f"| {group} | {g['queries']} | {d['passages']:,} | {r[0]} | {r[1]} | {r[2]} | {g['mrr@10']:.3f} |")
    if s:
        i, big = s["indexing"], s["big"]
        print(f"\nindexing: {i['passages']:,} passages from {i['files']:,} files in {i['seconds']} s = "
              f"{i['passages_per_minute']:,} passages/min (Kiwi {i['kiwi_share']:.0%} of it)")
        print(f"update, 1 of {s['update']['files']:,} files changed: {s['update']['one_changed_s']} s; "
              f"at {big['passages']:,} passages ({big['files']:,} files): {big['update_one_changed']['seconds']} s")
        lat, small = big["latency"], s["latency_realistic"]
        print(f"search at {small['passages']:,} passages: p50 {small['p50_ms']} / p95 {small['p95_ms']} / p99 "
              f"{small['p99_ms']} ms; at {big['passages']:,}: p50 {lat['p50_ms']} / p95 {lat['p95_ms']} / p99 "
              f"{lat['p99_ms']} ms ({lat['searches']} searches)")
        print(f"index on disk: {s['index_size']['du_mib_per_10k_passages']} MiB per 10k passages "
              f"({big['index_size']['du_mib_per_10k_passages']} at {big['passages']:,})")


def main(argv):
    cli.apply_command_line(globals(), argv, PRESETS, FLAGS, Path(__file__), __doc__)
    unknown = set(PARTS) - {"quality", "speed", "big_files"}
    if unknown:
        raise UserError(f"unknown part(s) {sorted(unknown)}: quality, speed, big_files")
    if not data_path(SYN).is_dir():
        raise UserError(f"the real data is not at {data_path()} (a fresh clone has no ../shared/data): pass --data")
    work = Path(WORK) if WORK else Path(tempfile.mkdtemp(prefix="kochat-rag-"))
    started = time.perf_counter()
    q = s = None
    try:
        if "quality" in PARTS:
            q = quality(work, argv)
        if "speed" in PARTS:
            s = speed(work, argv)
        if "big_files" in PARTS:
            big_files(work, argv)
    finally:
        if not KEEP and not WORK:
            shutil.rmtree(work, ignore_errors=True)
    summary(q, s)
    print(f"\nbench/rag.py: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    sys.exit(cli.run(main))
