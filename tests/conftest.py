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

from support import POLYGLOT_TOKENIZER  # noqa: E402


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
def koalpaca_template():
    from kochat.prompts import Template

    return Template.load("koalpaca")
