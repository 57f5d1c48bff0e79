"""Build or update an index folder from a folder of documents, incrementally and atomically.

Every file under the folder (recursively; hidden files and folders are left out) is hashed. A file whose
content hash is unchanged keeps its passages, search terms and vectors from the current index without
being read again; new and changed files are read and chunked; deleted files drop out. The result is
written as a new generation of the index folder (kochat.documents.store), so the previous index stays
whole until the new one is complete; an update that finds nothing changed writes nothing. A changed chunking or
embedding setting re-reads everything.
"""
from __future__ import annotations

import fcntl
import hashlib
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..errors import UserError
from . import chunking, korean, readers, store
from .readers import Unreadable, read_document

# Settings that decide what the passages are: changing one re-reads every file.
SHAPING = ("chunk_chars", "overlap_chars", "embedding_model", "kiwipiepy", "analysis", "readers")


@dataclass
class Report:
    read: int = 0                 # new or changed files read into passages now (skipped ones are not counted)
    unchanged: int = 0            # kept from the previous index without reading
    removed: int = 0              # in the previous index, gone from the folder
    passages: int = 0
    new_passages: int = 0
    skipped: dict = field(default_factory=dict)  # relative path -> why
    notes: dict = field(default_factory=dict)    # relative path -> what its reader left out (an FAQ file's rows)
    written: bool = True          # False: nothing had changed, the index was left as it was
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [f"files read: {self.read:,}   unchanged: {self.unchanged:,}   removed: {self.removed:,}   "
               f"skipped: {len(self.skipped):,}   passages: {self.passages:,} ({self.new_passages:,} new)"]
        out += [f"      skipped {path}: {why}" for path, why in sorted(self.skipped.items())]
        out += [f"      {path}: {note}" for path, note in sorted(self.notes.items())]
        if not self.written:
            out.append("nothing changed: the index is as it was")
        return out


def document_files(docs: Path) -> list[Path]:
    """Every file under `docs`, sorted, without hidden files or folders (.git, .DS_Store, ~$ lock files)."""
    found = []
    for p in sorted(docs.rglob("*")):
        parts = p.relative_to(docs).parts
        if any(x.startswith((".", "~$")) for x in parts) or not p.is_file():
            continue
        found.append(p)
    return found




def update_index(docs: str, folder: str, *, chunk_chars: int, overlap_chars: int, k1: float, b: float,
                 max_file_bytes: int, embedding_model: str = "", rebuild: bool = False, progress=None) -> Report:
    """Bring the index in `folder` up to date with the documents in `docs`. progress(done, total, path) is
    called for each file."""
    started = time.perf_counter()
    docs_dir, index_dir = Path(docs).expanduser(), Path(folder).expanduser()
    if docs_dir.is_file():
        raise UserError(f"--docs={docs} is a file: give a folder that holds the documents (only them: the whole "
                        f"folder is indexed)")
    if not docs_dir.is_dir():
        raise UserError(f"--docs={docs} does not exist: give a folder of documents")
    if index_dir.exists() and not index_dir.is_dir():
        raise UserError(f"--index={folder} is a file; name a folder for the index")
    if index_dir.resolve().is_relative_to(docs_dir.resolve()) or docs_dir.resolve().is_relative_to(index_dir.resolve()):
        raise UserError(f"--index={folder} and --docs={docs} overlap: the index would index itself, or replace the "
                        f"documents; give the index a folder of its own, e.g. outputs/index")
    if index_dir.is_dir() and store.current_generation(index_dir) is None and any(
            p.name not in (".lock", store.CURRENT, store.CURRENT + ".tmp") and not store.GENERATION.fullmatch(p.name)
            for p in index_dir.iterdir()):
        raise UserError(f"--index={folder} holds other files and is not an index folder: give the index a new or "
                        f"empty folder, e.g. outputs/index")
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot make the index folder {folder}: {e.strerror}") from None
    if embedding_model and Path(embedding_model).expanduser().is_dir():  # chat and serving start elsewhere
        embedding_model = str(Path(embedding_model).expanduser().resolve())
    settings = {"chunk_chars": chunk_chars, "overlap_chars": overlap_chars, "bm25_k1": k1, "bm25_b": b,
                "embedding_model": embedding_model, "kiwipiepy": korean.version(), "analysis": korean.ANALYSIS,
                "readers": readers.VERSION,
                "docs": str(docs_dir.resolve())}
    with open(index_dir / ".lock", "w") as lock:  # flock: local disks (on a network share, run one update at a time)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another index_ko.py is updating {folder}; wait for it to finish") from None
        store.remove_leftovers(index_dir)
        previous = None if rebuild or store.current_generation(index_dir) is None else store.open_index(index_dir)
        if previous is not None and previous.settings.get("docs", settings["docs"]) != settings["docs"]:
            raise UserError(f"{folder} indexes {previous.settings['docs']}, not {docs}: pass --docs="
                            f"{previous.settings['docs']} to update it, or --rebuild=true to index {docs} there instead")
        if previous is not None and any(previous.settings.get(k) != settings[k] for k in SHAPING):
            previous = None  # passages would differ: read everything again
        return _update(docs_dir, index_dir, settings, previous, max_file_bytes, progress, started, rebuild)


def _update(docs_dir, index_dir, settings, previous, max_file_bytes, progress, started, rebuild) -> Report:
    report = Report()
    kept_by_file: dict[str, list[int]] = {}
    old_terms = store.read_terms(previous) if previous is not None else []
    if previous is not None:
        for i, p in enumerate(previous.passages):
            kept_by_file.setdefault(p["source"], []).append(i)
    embedder = None
    if settings["embedding_model"]:
        from .embedding import Embedder

        embedder = Embedder(settings["embedding_model"])

    files, passages, vectors, fresh = {}, [], [], []
    paths = document_files(docs_dir)
    for done, path in enumerate(paths):
        rel = unicodedata.normalize("NFC", path.relative_to(docs_dir).as_posix())  # macOS names are NFD
        if progress:
            progress(done, len(paths), rel)
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        old = previous.files.get(rel) if previous is not None else None
        if old is not None and old["sha256"] == digest and "skipped" not in old:  # a skipped file is tried again:
            # a raised MAX_FILE_MB or a newly installed library may read it now
            report.unchanged += 1
            files[rel] = old
            if "left_out" in old:  # said again on every update, as a skipped file is, until the file is fixed
                report.notes[rel] = old["left_out"]
            for i in kept_by_file.get(rel, []):
                p = previous.passages[i]
                passages.append(chunking.Passage(p["source"], p["page"], p["heading"], p["row"], p["start"],
                                                 p["end"], p["text"], old_terms[i]))
                vectors.append(previous.embeddings[i] if previous.embeddings is not None else None)
            continue
        left_out: list[str] = []
        try:
            sections = read_document(path, max_bytes=max_file_bytes, left_out=left_out)
            chunks = chunking.chunk(rel, unicodedata.normalize("NFC", path.stem), sections, settings["chunk_chars"], settings["overlap_chars"])
            if not chunks:
                raise Unreadable("empty: no text found")
        except Unreadable as e:
            report.skipped[rel] = str(e)
            files[rel] = {"sha256": digest, "size": path.stat().st_size, "skipped": str(e)}
            continue
        report.read += 1
        files[rel] = {"sha256": digest, "size": path.stat().st_size, "passages": len(chunks)}
        if left_out:
            report.notes[rel] = files[rel]["left_out"] = "; ".join(left_out)
        for c in chunks:
            fresh.append(len(passages))
            passages.append(c)
            vectors.append(None)
    if progress:
        progress(len(paths), len(paths), "")
    report.removed = len([f for f, entry in previous.files.items()  # skipped ones gone (Thumbs.db) held nothing
                          if f not in files and "skipped" not in entry]) if previous is not None else 0
    report.passages, report.new_passages = len(passages), len(fresh)
    if not passages and previous is not None and previous.passages and not rebuild:
        raise UserError(f"no readable document in {docs_dir} (an unmounted share?); the index keeps its "
                        f"{len(previous.passages):,} passages. To empty it anyway: --rebuild=true")
    if previous is not None and files == previous.files and all(previous.settings.get(k) == v
                                                                for k, v in settings.items()):
        report.written = False  # the same files, read the same way: a new generation would be a copy
        report.seconds = time.perf_counter() - started
        return report

    embeddings = None
    if embedder is not None:
        new = embedder.encode([passages[i].text for i in fresh], progress=progress is not None and len(fresh) > 64)
        for i, v in zip(fresh, new):
            vectors[i] = v
        embeddings = np.stack(vectors) if vectors else np.zeros((0, 1), dtype=np.float32)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    settings = {**settings, "updated": now,
                "created": previous.settings.get("created", now) if previous is not None else now,
                "files": len(files), "passages": len(passages), "skipped": len(report.skipped)}
    store.write_generation(index_dir, settings, files, passages, embeddings, settings["bm25_k1"], settings["bm25_b"])
    report.seconds = time.perf_counter() - started
    return report
