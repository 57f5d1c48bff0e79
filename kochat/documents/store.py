"""The index folder: the hand-off from index_ko.py to chat, serving and evaluation, and its one reader.

    outputs/index-hr/
        CURRENT            the name of the complete generation, e.g. "g000004", replaced atomically
        g000004/           one complete index:
            index.json       settings (chunking, BM25, embedding model), counts, versions, times
            files.json       every document seen: content hash, passages, or why it was skipped
            passages.jsonl   one passage a line: source, page, heading, row, span, text
            terms.jsonl      its search terms (read only by the next update, to skip unchanged files)
            bm25/            the BM25 matrix (bm25s)
            embeddings.npy   one normalised vector a passage, when an embedding model is set

An update writes a new generation beside the current one and only then points CURRENT at it (write a
temporary file, fsync, rename), so a crash or Ctrl-C at any moment leaves the previous index whole and
in use. The previous generation stays until the next update (a reader that opened it meanwhile still
finds it); that update removes it and any unfinished one. Only folders named like a generation
(g + six digits) are ever removed. Files stay on this machine: a single-machine
store with no server to run.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .chunking import Passage

FORMAT = 1
CURRENT = "CURRENT"
GENERATION = re.compile(r"g\d{6}")  # g000001, g000002, …: the only names an update creates or removes


@dataclass
class Index:
    folder: Path
    generation: Path
    settings: dict
    files: dict            # relative path -> {"sha256", "size", "passages"[, "left_out"]} or {…, "skipped"}
    passages: list[dict]   # Passage.to_dict() rows, in index order
    bm25: object           # bm25s.BM25
    embeddings: np.ndarray | None

    @property
    def name(self) -> str:
        return self.folder.name


def current_generation(folder: Path) -> Path | None:
    """The complete generation CURRENT names; None when there is none (or CURRENT names no generation)."""
    pointer = folder / CURRENT
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    generation = folder / name
    return generation if GENERATION.fullmatch(name) and generation.is_dir() else None


def generations(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_dir() and GENERATION.fullmatch(p.name)] if folder.is_dir() else []


def open_index(folder: str | Path) -> Index:
    """The complete index in `folder`, read whole into memory."""
    path = Path(folder).expanduser()
    generation = current_generation(path) if path.is_dir() else None
    if generation is None:
        raise UserError(not_an_index(path, folder))
    try:
        return _read(path, generation)
    except (OSError, ValueError, KeyError) as e:
        newer = current_generation(path)  # an update switched generations while this one was being read
        if newer is not None and newer != generation:
            return _read(path, newer)
        raise UserError(f"index {folder} is damaged ({type(e).__name__}: {e}); build it again with index_ko.py "
                        f"(--rebuild=true)") from None


def out_of_date(index: Index) -> str | None:
    """One line for an index made by older readers (its files read differently now, e.g. FAQ row numbers), with
    the command that updates it; None for a current one."""
    from .readers import VERSION

    if index.settings.get("readers") == VERSION:
        return None
    docs = index.settings.get("docs", "<folder of documents>")
    return (f"note: {index.folder} was made by an older kochat (FAQ row numbers, among others, are read differently "
            f"now); update it: python3 index_ko.py --docs={docs} --index={index.folder}")


def not_an_index(path: Path, folder) -> str:
    """Why `folder` is not an index, and what to pass instead."""
    if GENERATION.fullmatch(path.name) and current_generation(path.parent) is not None:
        return f"{folder} is one version inside an index: pass the index folder, --index={path.parent}"
    if path.is_dir() and any(p.is_file() and not p.name.startswith(".") for p in path.iterdir()):
        return (f"{folder} is not an index folder (a folder of documents?); build an index of it with: "
                f"python3 index_ko.py --docs={folder} --index=outputs/index, then pass --index=outputs/index")
    return f"{folder} is not an index folder; build one with: python3 index_ko.py --docs=<folder of documents> " \
           f"--index={folder}"


def _read(path: Path, generation: Path) -> Index:
    import bm25s

    settings = json.loads((generation / "index.json").read_text(encoding="utf-8"))
    if settings.get("format") != FORMAT:
        raise UserError(f"{path} was written by another version of kochat (format {settings.get('format')}); "
                        f"build it again with index_ko.py --rebuild=true")
    files = json.loads((generation / "files.json").read_text(encoding="utf-8"))
    with open(generation / "passages.jsonl", encoding="utf-8") as f:
        passages = [json.loads(line) for line in f]
    bm25 = bm25s.BM25.load(str(generation / "bm25"), load_vocab=True, mmap=False) if passages else None
    vectors = generation / "embeddings.npy"
    embeddings = np.load(vectors) if vectors.is_file() else None
    if embeddings is not None and len(embeddings) != len(passages):
        raise ValueError(f"{len(embeddings)} vectors for {len(passages)} passages")
    return Index(path, generation, settings, files, passages, bm25, embeddings)


def read_terms(index: Index) -> list[tuple[str, ...]]:
    """Each passage's search terms, for an update that keeps unchanged files without reading them again."""
    with open(index.generation / "terms.jsonl", encoding="utf-8") as f:
        return [tuple(json.loads(line)) for line in f]


def write_generation(folder: Path, settings: dict, files: dict, passages: list[Passage],
                     embeddings: np.ndarray | None, k1: float, b: float) -> Path:
    """Write a complete new generation, then make it the current one. Returns its folder."""
    import bm25s

    folder.mkdir(parents=True, exist_ok=True)
    number = 1 + max([int(p.name[1:]) for p in generations(folder)], default=0)
    generation = folder / f"g{number:06d}"
    generation.mkdir()
    with open(generation / "passages.jsonl", "w", encoding="utf-8") as f:
        for p in passages:
            f.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")
    with open(generation / "terms.jsonl", "w", encoding="utf-8") as f:
        for p in passages:
            f.write(json.dumps(p.terms, ensure_ascii=False) + "\n")
    if passages:
        bm25 = bm25s.BM25(k1=k1, b=b)
        bm25.index([list(p.terms) or [""] for p in passages], show_progress=False)
        bm25.save(str(generation / "bm25"), show_progress=False)
    if embeddings is not None:
        np.save(generation / "embeddings.npy", embeddings)
    write_json(generation / "files.json", files)
    write_json(generation / "index.json", {**settings, "format": FORMAT})
    sync_tree(generation)
    pointer = folder / (CURRENT + ".tmp")
    with open(pointer, "w", encoding="utf-8") as f:
        f.write(generation.name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(pointer, folder / CURRENT)  # the one step that switches readers to the new generation
    sync_dir(folder)
    return generation


def remove_leftovers(folder: Path) -> None:
    """Generations that are not current: an update that crashed or was stopped before it finished."""
    keep = current_generation(folder)
    for p in generations(folder):
        if p != keep:
            shutil.rmtree(p, ignore_errors=True)
    (folder / (CURRENT + ".tmp")).unlink(missing_ok=True)


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def sync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    for p in [folder, *[d for d in folder.rglob("*") if d.is_dir()]]:
        sync_dir(p)


def sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
