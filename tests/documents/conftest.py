"""Fixtures for the document tests: the project's sample documents, and tiny random sentence-transformers
models (an embedding model and a cross-encoder) built offline, to prove the wiring of dense retrieval and
reranking without downloading anything. Their scores mean nothing; only the plumbing is tested."""
import shutil
from pathlib import Path

import pytest

from support import INDEX_SETTINGS

from kochat import PROJECT_ROOT

SAMPLE_DOCS = PROJECT_ROOT / "data" / "company_docs"


@pytest.fixture
def docs(tmp_path) -> Path:
    """A copy of the sample documents that a test may change."""
    return Path(shutil.copytree(SAMPLE_DOCS, tmp_path / "docs"))


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory):
    """The sample documents indexed with the defaults, opened with a searcher (read only)."""
    from kochat.documents import indexing, store
    from kochat.documents.retrieval import Searcher

    folder = tmp_path_factory.mktemp("index") / "company"
    indexing.update_index(str(SAMPLE_DOCS), str(folder), **INDEX_SETTINGS)
    return Searcher(store.open_index(folder))


def _vocab_folder(folder: Path) -> Path:
    """A character-level WordPiece vocabulary covering the sample documents' characters."""
    from transformers import BertTokenizerFast

    chars = sorted({c for p in SAMPLE_DOCS.iterdir() if p.suffix in (".md", ".csv", ".html")
                    for c in p.read_text(encoding="utf-8") if not c.isspace()})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n",
                                      encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), tokenize_chinese_chars=True).save_pretrained(folder)
    return folder


def _tiny_bert(vocab_size: int, **extra):
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=512, **extra)


@pytest.fixture(scope="session")
def tiny_embedding_model(tmp_path_factory) -> str:
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertModel, BertTokenizerFast

    folder = _vocab_folder(tmp_path_factory.mktemp("models") / "tiny-embedding")
    torch.manual_seed(0)
    BertModel(_tiny_bert(len(BertTokenizerFast.from_pretrained(folder)))).save_pretrained(folder)
    word = models.Transformer(str(folder), max_seq_length=256)
    SentenceTransformer(modules=[word, models.Pooling(word.get_word_embedding_dimension(), "mean")]).save(str(folder))
    return str(folder)


@pytest.fixture(scope="session")
def tiny_reranker(tmp_path_factory) -> str:
    import torch
    from transformers import BertForSequenceClassification, BertTokenizerFast

    folder = _vocab_folder(tmp_path_factory.mktemp("models") / "tiny-reranker")
    torch.manual_seed(0)
    BertForSequenceClassification(_tiny_bert(len(BertTokenizerFast.from_pretrained(folder)), num_labels=1)
                                  ).save_pretrained(folder)
    return str(folder)
