"""Index a folder of company documents and search it: the passages chat_ko.py and serve_ko.py answer from.

Edit the constants below, or override any of them on the command line with the same name in lower case:
    python3 index_ko.py                                           # the sample documents -> outputs/index
    python3 index_ko.py --docs=./company_docs --index=outputs/index-hr   # build, or update what changed
    python3 index_ko.py --index=outputs/index-hr --search="연차휴가는 며칠인가요?" --top_k=5 [--json=true]
    python3 index_ko.py --index=outputs/index-hr --search_file=qs.txt    # -> qs.hits.jsonl
Reads .txt .md .html .pdf .docx .hwpx and FAQ .csv/.tsv/.jsonl (UTF-8 or CP949). An update re-reads only new
and changed files and never leaves a half-written index: the previous one stays in use until it is done.
Steps 1-3 below run top to bottom.
"""
import json
import math
import shutil
import sys
from pathlib import Path

from kochat import PROJECT_ROOT, cli
from kochat.documents import indexing, store
from kochat.documents.retrieval import Searcher, covers
from kochat.errors import UserError

# ---- constants: edit here, or override on the command line as --name=value -------------------
DOCS = "data/company_docs"      # folder of documents, read recursively (hidden files and folders left out)
INDEX = "outputs/index"         # the index folder to build, update or search
CHUNK_CHARS = 800               # longest passage, in characters, cut at Korean sentence boundaries
OVERLAP_CHARS = 100             # trailing sentences a passage shares with the next, at most this many characters
BM25_K1 = 1.2                   # BM25 term-frequency saturation
BM25_B = 0.9                    # BM25 length normalisation (0 = none, 1 = full)
EMBEDDING_MODEL = ""            # a sentence-transformers model folder for dense retrieval beside BM25; "" = BM25 only
RERANKER = ""                   # a cross-encoder model folder that re-scores the best passages when searching
MAX_FILE_MB = 50.0              # larger files are skipped
REBUILD = False                 # True: read every file again instead of updating
SEARCH = ""                     # search the index for this question and print the passages (no update)
SEARCH_FILE = ""                # a file of questions, one a line: hits of each into <file>.hits.jsonl
TOP_K = 5                       # passages a search returns
MIN_RELEVANCE = 0.3             # a question whose first ANSWER_TOP_K hits all fall below this (0..1) is marked:
ANSWER_TOP_K = 3                # chat_ko.py and serve_ko.py, at their defaults (MIN_RELEVANCE, TOP_K), answer it
                                # "not covered"
JSON = False                    # print search hits as one JSON object a line

PRESETS = {}
FLAGS = {}


def main(argv):
    given = cli.apply_command_line(globals(), argv, PRESETS, FLAGS, Path(__file__), __doc__)
    check_constants(given_names=given["constants"])

    # 1. build or update the index (a search only searches: a mistyped --index is an error, not a new index)
    if not (SEARCH or SEARCH_FILE):
        new_index = not Path(INDEX).expanduser().exists()
        report = build()
        if report.passages == 0:
            if new_index:  # an empty index would answer every question "not covered": none is left behind
                shutil.rmtree(Path(INDEX).expanduser(), ignore_errors=True)
            why = "see the skipped files above" if report.skipped else "the folder holds no files"
            raise UserError(f"no passages: {DOCS} holds no readable document ({why})")
        print(f"index ready: {INDEX}.  search it: python3 index_ko.py --index={INDEX} --search=\"질문\"\n"
              f"answer from it: python3 chat_ko.py --adapter=outputs/<run> --index={INDEX}"
              + ("\na serve_ko.py already running reads it when restarted" if report.written else ""))
        return

    # 2. open it, with the models it was built with
    searcher = Searcher(store.open_index(INDEX), reranker=RERANKER)

    # 3. search
    if SEARCH:
        show(SEARCH, searcher.search(SEARCH, top_k=TOP_K))
    if SEARCH_FILE:
        search_file(searcher)


def check_constants(given_names: set[str]):
    for name in ("DOCS", "INDEX"):  # given empty (an unset shell variable): not the working folder
        if name in given_names and not globals()[name].strip():
            raise UserError(f"--{name.lower()} is empty: name a folder")
    for name in ("SEARCH", "SEARCH_FILE"):  # given empty (an unset shell variable): a search, not an update
        if name in given_names and not globals()[name].strip():
            raise UserError(f"--{name.lower()} is empty: give a question (--search=\"연차휴가는 며칠인가요?\") or a "
                            f"file of questions (--search_file=qs.txt)")
    if CHUNK_CHARS < 50:
        raise UserError(f"--chunk_chars must be at least 50, not {CHUNK_CHARS}")
    if not 0 <= OVERLAP_CHARS < CHUNK_CHARS:
        raise UserError(f"--overlap_chars must be from 0 to less than --chunk_chars ({CHUNK_CHARS}), not {OVERLAP_CHARS}")
    if not (0 <= BM25_K1 < math.inf and 0 <= BM25_B <= 1):  # written that way, NaN fails too
        raise UserError(f"--bm25_k1 must be a number ≥ 0 and --bm25_b from 0 to 1 (got {BM25_K1}, {BM25_B})")
    if not 0 < MAX_FILE_MB < math.inf:
        raise UserError(f"--max_file_mb must be a number above 0, not {MAX_FILE_MB:g}")
    if TOP_K < 1:
        raise UserError(f"--top_k must be at least 1, not {TOP_K}")
    if not 0 <= MIN_RELEVANCE <= 1:
        raise UserError(f"--min_relevance must be from 0 to 1, not {MIN_RELEVANCE:g}")
    if ANSWER_TOP_K < 1:
        raise UserError(f"--answer_top_k must be at least 1, not {ANSWER_TOP_K}")


def build():
    from tqdm import tqdm

    print(f"[1] indexing {DOCS} -> {INDEX}")
    bar = tqdm(unit="file", dynamic_ncols=True, disable=None)

    def progress(done, total, path):
        bar.total = total
        bar.n = done
        bar.set_postfix_str(path[-40:], refresh=True)

    docs = Path(DOCS).expanduser()
    if not docs.is_absolute() and not docs.exists() and (PROJECT_ROOT / docs).is_dir():
        docs = PROJECT_ROOT / docs  # the sample documents, wherever the script is run from
    try:
        report = indexing.update_index(str(docs), INDEX, chunk_chars=CHUNK_CHARS, overlap_chars=OVERLAP_CHARS, k1=BM25_K1,
                                       b=BM25_B, max_file_bytes=int(MAX_FILE_MB * 1_000_000),
                                       embedding_model=EMBEDDING_MODEL, rebuild=REBUILD, progress=progress)
    finally:
        bar.close()
    print("\n".join(report.lines()))
    print(f"    {report.seconds:.1f} s")
    return report


def show(question, hits):
    if JSON:
        for h in hits:
            print(json.dumps({"question": question, **h.to_dict()}, ensure_ascii=False))
        if not hits:  # standard output stays JSON lines, none here; a person or a log still reads why
            print(f"no passage matches {question!r}", file=sys.stderr)
        return
    if not hits:
        print(f"no passage matches {question!r}")
    for h in hits:
        text = " ".join(h.text.split())
        print(f"[{h.n}] {h.score:.3f} (relevance {h.relevance:.2f})  {h.where}\n    {text[:300]}{'…' if len(text) > 300 else ''}")
    if hits and not covered(hits):
        print(f"(no passage reaches relevance {MIN_RELEVANCE:g}: chat_ko.py and serve_ko.py answer this question "
              f"\"not covered\")")


def covered(hits) -> bool:
    """As chat_ko.py and serve_ko.py judge, on the passages they would be given."""
    return covers(hits[:ANSWER_TOP_K], MIN_RELEVANCE)


def search_file(searcher):
    from kochat.prompts import load_questions, questions_path

    questions = [q for q, _ in load_questions(SEARCH_FILE)]
    if not questions:
        raise UserError(f"--search_file={SEARCH_FILE} holds no questions (one a line; # starts a comment)")
    output = questions_path(SEARCH_FILE).with_suffix(".hits.jsonl")  # beside the questions, wherever found
    not_covered = []
    try:
        out = open(output, "w", encoding="utf-8")
    except OSError as e:  # a folder of that name, a read-only project folder
        raise UserError(f"cannot write {output}: {e.strerror or e}; copy {SEARCH_FILE} somewhere writable") from None
    with out:
        for question in questions:
            hits = searcher.search(question, top_k=TOP_K)
            is_covered = covered(hits)
            out.write(json.dumps({"question": question, "covered": is_covered,
                                  "hits": [h.to_dict() for h in hits]}, ensure_ascii=False) + "\n")
            if not is_covered:
                not_covered.append(question)
    print(f"{len(questions)} questions searched: {output}")
    if not_covered:
        print(f"{len(not_covered)} would be answered \"not covered\" (no passage reaches relevance {MIN_RELEVANCE:g}):")
        print("\n".join(f"    {q}" for q in not_covered))


if __name__ == "__main__":
    sys.exit(cli.run(main))
