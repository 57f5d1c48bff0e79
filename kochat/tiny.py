"""The tiny preset's base model: a 2-layer GPT-NeoX and a byte-level BPE tokenizer, both made from the
project's own Korean sample (data/ko_tiny_qa.jsonl). Built once (~5 s) into a cache folder, then loaded
like any other local model, through the real 4-bit path.

Like a real base model it is pretrained on plain text, the sample's sentences each followed by
<|endoftext|>, never in the question/answer form, so the LoRA fine-tune has something to teach: the
form, and where to stop. It has seen 212 rows; its answers prove the wiring, not quality.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from . import PROJECT_ROOT

MODEL_ID = "tiny-gpt-neox"  # the MODEL_ID the tiny preset uses; resolved to the built folder
DATA_FILE = PROJECT_ROOT / "data" / "ko_tiny_qa.jsonl"
VOCAB_SIZE = 2000
# Same special-token layout as polyglot-ko, misleading eos_token included (see modeling.END_OF_TEXT),
# so the tiny run exercises the same end-of-text resolution as the real one.
SPECIAL_TOKENS = ["<pad>", "<eos>", "<|endoftext|>", "<|sep|>"]
CONFIG = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512,
              max_position_embeddings=1024, rotary_pct=0.5, use_parallel_residual=True,
              tie_word_embeddings=False, bos_token_id=0, eos_token_id=0, pad_token_id=0)
SEED = 0
PRETRAIN = dict(steps=120, batch=16, seq_len=64, lr=3e-3)  # enough to learn fragments, not to memorise


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kochat"


def ensure_built() -> Path:
    """The folder of the tiny model, built on first use (atomically: a half-built folder never shows)."""
    recipe = json.dumps([CONFIG, VOCAB_SIZE, SPECIAL_TOKENS, SEED, PRETRAIN], sort_keys=True).encode()
    key = hashlib.sha256(recipe + DATA_FILE.read_bytes()).hexdigest()[:12]
    folder = cache_dir() / f"{MODEL_ID}-{key}"
    if (folder / "config.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{MODEL_ID}-", dir=folder.parent))
    try:
        build(staging)
        staging.rename(folder)
    except OSError:
        if not (folder / "config.json").is_file():  # not a lost race with another process
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def build(folder: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    texts = []
    for line in DATA_FILE.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        texts.extend(v for v in row.values() if isinstance(v, str))
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="<eos>",
                                        additional_special_tokens=SPECIAL_TOKENS[2:])
    tokenizer.save_pretrained(folder)

    torch.manual_seed(SEED)
    vocab = -(-len(tokenizer) // 64) * 64  # padded like polyglot-ko's 30,080 rows for 30,003 tokens
    model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=vocab, **CONFIG))
    pretrain(model, tokenizer, texts)
    model.save_pretrained(folder)  # safetensors


def pretrain(model, tokenizer, texts: list[str]) -> None:
    """Next-token training on the texts joined by <|endoftext|>, in random windows (full weights, fp32)."""
    import torch

    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    stream = torch.tensor([t for text in texts for t in tokenizer(text)["input_ids"] + [eot]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=PRETRAIN["lr"])
    n, batch = PRETRAIN["seq_len"], PRETRAIN["batch"]
    model.train()
    for _ in range(PRETRAIN["steps"]):
        starts = torch.randint(0, len(stream) - n, (batch,)).tolist()
        x = torch.stack([stream[i:i + n] for i in starts])
        model(input_ids=x, labels=x).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
