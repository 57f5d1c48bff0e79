"""Shared fixtures. Tests that read the real third-party data in ../shared/data skip cleanly without it
(paths in support.py)."""
import os
import shutil
import tempfile

import pytest

# Set before any test module imports huggingface_hub (it reads HF_HUB_OFFLINE once, at import): tests never
# touch the network, and build the tiny model in a folder of their own, not in the user's ~/.cache.
os.environ["HF_HUB_OFFLINE"] = "1"
_CACHE = tempfile.mkdtemp(prefix="kochat-test-cache-")
os.environ["XDG_CACHE_HOME"] = _CACHE

from support import INDEX_SETTINGS, KEY, POLYGLOT_TOKENIZER, Served, write_followup_docs  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from kochat import modeling, tiny

    return modeling.load_tokenizer(tiny.MODEL_ID)


@pytest.fixture(scope="session")
def polyglot_tokenizer():
    if not POLYGLOT_TOKENIZER.is_dir():
        pytest.skip(f"polyglot-ko tokenizer not found at {POLYGLOT_TOKENIZER}")
    from kochat import modeling

    return modeling.load_tokenizer(str(POLYGLOT_TOKENIZER))


@pytest.fixture(scope="session")
def koalpaca_template(tiny_tokenizer):
    """The recipe's template as training and answering use it: answers end with <|endoftext|>, the end of
    text of polyglot-ko and of the tiny model alike."""
    from kochat.prompts import load_template

    return load_template("koalpaca", tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_run_folder(tiny_tokenizer, koalpaca_template, tmp_path_factory):
    """A run folder as finetune_ko.py leaves it, with an untrained (random, non-zero) adapter: for what
    reads run folders (chat, serving) without paying for training."""
    import torch
    from peft import LoraConfig, get_peft_model

    from kochat import modeling, runs, tiny

    folder = tmp_path_factory.mktemp("runs") / "tiny"
    base = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False)
    torch.manual_seed(0)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=32, target_modules=["query_key_value"],
                                            init_lora_weights=False, task_type="CAUSAL_LM"))
    runs.save_run(folder, model, tiny_tokenizer, koalpaca_template, {"MODEL_ID": tiny.MODEL_ID}, extra={})
    return folder


@pytest.fixture(scope="session")
def served(tiny_run_folder):
    """The real server for the tiny run folder, no API key, batches up to 16."""
    server = Served(tiny_run_folder, [], max_batch=16, max_concurrent=64)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def keyed(tiny_run_folder):
    """The real server with two API keys (KEY and "second-key") and room for only 3 requests at once."""
    server = Served(tiny_run_folder, [KEY, "second-key"], max_batch=4, max_concurrent=3)
    yield server
    server.stop()


DOCS_KEYS = {"hr-key": frozenset({"hr"}), "team-key": frozenset({"team"}), "all-key": None}


@pytest.fixture(scope="session")
def docs_library(tmp_path_factory):
    """Two document indexes by name: hr (the sample company documents) and team (three notes that tell a
    follow-up about 2년차 apart by the question before it)."""
    from kochat import PROJECT_ROOT
    from kochat.documents import indexing, store
    from kochat.documents.retrieval import Searcher
    from kochat.server import Library

    team = write_followup_docs(tmp_path_factory.mktemp("team-docs"))
    folders = {"hr": PROJECT_ROOT / "data" / "company_docs", "team": team}
    searchers = {}
    for name, docs in folders.items():
        folder = tmp_path_factory.mktemp("indexes") / f"index-{name}"
        indexing.update_index(str(docs), str(folder), **INDEX_SETTINGS)
        searchers[name] = Searcher(store.open_index(folder), name=name)
    return Library(searchers, top_k=3, min_relevance=0.3)


@pytest.fixture(scope="session")
def docs_server(tiny_run_folder, docs_library):
    """The real server answering from docs_library; keys DOCS_KEYS, each limited to its indexes."""
    server = Served(tiny_run_folder, DOCS_KEYS, library=docs_library, max_batch=8, max_concurrent=16)
    yield server
    server.stop()
