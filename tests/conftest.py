"""Shared fixtures. Tests that read the real third-party data in ../shared/data skip cleanly without it."""
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Set before any test module imports huggingface_hub (it reads HF_HUB_OFFLINE once, at import): tests never
# touch the network, and build the tiny model in a folder of their own, not in the user's ~/.cache.
os.environ["HF_HUB_OFFLINE"] = "1"
_CACHE = tempfile.mkdtemp(prefix="kochat-test-cache-")
os.environ["XDG_CACHE_HOME"] = _CACHE

from kochat import PROJECT_ROOT  # noqa: E402

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
POLYGLOT_TOKENIZER = SHARED_DATA / "polyglot-ko-tokenizer"
POLYGLOT_12P8B_CONFIG = SHARED_DATA / "polyglot-ko-12.8b"
KOALPACA_V11A = SHARED_DATA / "koalpaca" / "KoAlpaca_v1.1a_textonly_1k.jsonl"
KOALPACA_V10 = SHARED_DATA / "koalpaca" / "ko_alpaca_data_v1.0_partial.json"

needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"real third-party data not found at {SHARED_DATA} (fresh clone)")


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
def koalpaca_template():
    from kochat.prompts import Template

    return Template.load("koalpaca")


def write(path: Path, content, encoding="utf-8") -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding=encoding)
    return path
