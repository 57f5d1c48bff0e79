"""Optional neural models for retrieval, from local folders a company downloads once (sentence-transformers):
an embedding model for dense retrieval beside BM25, and a cross-encoder that re-scores the best candidates.

Any sentence-transformers model folder works (e.g. a Korean or multilingual embedding model). Paths are
read offline; a hub id is tried only where the hub is reachable (kochat.modeling's offline rules).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError


def _sentence_transformers():
    """The optional package, or one line saying how to add it (the default BM25 index does without)."""
    try:
        import sentence_transformers
    except ImportError:
        raise UserError("an embedding model or reranker needs sentence-transformers: pip install "
                        "sentence-transformers==6.2.0 (or leave EMBEDDING_MODEL and RERANKER empty)") from None
    return sentence_transformers


def _load(kind, name: str, device: str | None):
    folder = Path(name).expanduser()
    if not folder.is_dir():
        from ..hub import use_offline_if_unreachable

        use_offline_if_unreachable()  # a hub id on an air-gapped machine: fail in seconds, not after retries
    try:
        return kind(str(folder) if folder.is_dir() else name, device=device, local_files_only=folder.is_dir())
    except Exception as e:  # noqa: BLE001  sentence-transformers raises many kinds; the user needs one line
        raise UserError(f"cannot load the {kind.__name__} model {name!r} ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}): pass a sentence-transformers model folder"
                        ) from None


class Embedder:
    """Texts to unit vectors, so a dot product is the cosine similarity."""

    def __init__(self, name: str, device: str | None = None, batch_size: int = 32):
        self.name, self.batch_size = name, batch_size
        self.model = _load(_sentence_transformers().SentenceTransformer, name, device)

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.model.get_sentence_embedding_dimension() or 0), dtype=np.float32)
        vectors = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=progress)
        return vectors.astype(np.float32)


class Reranker:
    """A cross-encoder: reads question and passage together, scores how well the passage answers."""

    def __init__(self, name: str, device: str | None = None):
        self.name = name
        self.model = _load(_sentence_transformers().CrossEncoder, name, device)

    def scores(self, question: str, texts: list[str]) -> np.ndarray:
        """One score a text in 0..1 (the model's sigmoid output)."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        raw = self.model.predict([(question, t) for t in texts], show_progress_bar=False, convert_to_numpy=True)
        raw = np.asarray(raw, dtype=np.float32).reshape(len(texts), -1)[:, -1]
        return raw if (0 <= raw).all() and (raw <= 1).all() else 1 / (1 + np.exp(-raw))
