"""Fixtures of the GGUF tests: a merged-model folder of the tiny preset's GPT-NeoX, and its GGUF files."""
import shutil

import pytest

from kochat import modeling, runs, tiny
from kochat.export import gguf
from kochat.prompts import load_template


@pytest.fixture(scope="session")
def tiny_merged(tmp_path_factory, koalpaca_template):
    """A folder as runs.save_merged writes one (config, safetensors, tokenizer, template.json), from the tiny
    preset's base model: the conversion is the same for any weights of this shape, and the trained run is left to
    the e2e tests of export_ko.py."""
    folder = tmp_path_factory.mktemp("merged") / "tiny-merged"
    shutil.copytree(modeling.model_source(tiny.MODEL_ID), folder)
    runs.write_json(folder / runs.TEMPLATE_FILE, koalpaca_template.to_dict())
    return folder


@pytest.fixture(scope="session")
def tiny_merged_template(tiny_merged):
    return load_template(str(tiny_merged / runs.TEMPLATE_FILE), modeling.load_tokenizer(str(tiny_merged)))


@pytest.fixture(scope="session")
def tiny_f16(tiny_merged, tiny_merged_template, tmp_path_factory):
    """The tiny merged folder as an f16 GGUF (no llama.cpp needed to write it)."""
    out = tmp_path_factory.mktemp("gguf") / "tiny"
    return gguf.write_gguf(tiny_merged, out, ["f16"], tiny_merged_template)[0]
