"""Paths to the real third-party data in ../shared/data, and small helpers, for the tests."""
from pathlib import Path

import pytest

from kochat import PROJECT_ROOT

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
POLYGLOT_TOKENIZER = SHARED_DATA / "polyglot-ko-tokenizer"
POLYGLOT_12P8B_CONFIG = SHARED_DATA / "polyglot-ko-12.8b"
KOALPACA_V11A = SHARED_DATA / "koalpaca" / "KoAlpaca_v1.1a_textonly_1k.jsonl"
KOALPACA_V10 = SHARED_DATA / "koalpaca" / "ko_alpaca_data_v1.0_partial.json"

needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"real third-party data not found at {SHARED_DATA} (fresh clone)")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_CACHE, ignore_errors=True)


def write(path: Path, content, encoding="utf-8") -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding=encoding)
    return path
