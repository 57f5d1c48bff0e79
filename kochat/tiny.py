"""The tiny presets' base models, made from the project's own Korean samples and built once (~5 s) into a
cache folder, then loaded like any other local model, through the real 4-bit path:

- `tiny-gpt-neox` (preset tiny): a 2-layer GPT-NeoX with polyglot-ko's special-token layout, from
  data/ko_tiny_qa.jsonl (212 question/answer rows), trained in the KoAlpaca form;
- `tiny-qwen3-chat` (preset tiny_chat): a 2-layer Qwen3 whose tokenizer carries a chat template (ChatML, the
  form of Qwen and many others: <|im_start|>role … <|im_end|>), from data/ko_tiny_chat.jsonl (multi-turn
  conversations), trained through the template.

Like a real base model each is pretrained on plain text, the sample's sentences each followed by
<|endoftext|>, never in the question/answer or chat form, so the LoRA fine-tune has something to teach: the
form, and where to stop. Their answers prove the wiring, not quality.
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
CHAT_MODEL_ID = "tiny-qwen3-chat"  # the tiny_chat preset's
CHAT_DATA_FILE = PROJECT_ROOT / "data" / "ko_tiny_chat.jsonl"
VOCAB_SIZE = 2000
# Same special-token layout as polyglot-ko, misleading eos_token included (see modeling.END_OF_TEXT),
# so the tiny run exercises the same end-of-text resolution as the real one.
SPECIAL_TOKENS = ["<pad>", "<eos>", "<|endoftext|>", "<|sep|>"]
CONFIG = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512,
              max_position_embeddings=1024, rotary_pct=0.5, use_parallel_residual=True,
              tie_word_embeddings=False, bos_token_id=0, eos_token_id=0, pad_token_id=0)
# The chat model: Qwen's special tokens, pad <|endoftext|> and end of turn <|im_end|>, as Qwen's instruct
# tokenizers have them, and a ChatML template (Qwen2.5's without its default system message).
CHAT_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = ("{%- for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
                 "+ '<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                 "{%- endif %}")
CHAT_CONFIG = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                   intermediate_size=384, max_position_embeddings=1024, tie_word_embeddings=False)
SEED = 0
PRETRAIN = dict(steps=120, batch=16, seq_len=64, lr=3e-3)  # enough to learn fragments, not to memorise


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kochat"


def ensure_built(model_id: str = MODEL_ID) -> Path:
    """The folder of a tiny model, built on first use (atomically: a half-built folder never shows)."""
    data = CHAT_DATA_FILE if model_id == CHAT_MODEL_ID else DATA_FILE
    recipe = json.dumps([model_id, CONFIG, CHAT_CONFIG, CHAT_TEMPLATE, VOCAB_SIZE, SPECIAL_TOKENS, SEED, PRETRAIN],
                        sort_keys=True).encode()
    key = hashlib.sha256(recipe + data.read_bytes()).hexdigest()[:12]
    folder = cache_dir() / f"{model_id}-{key}"
    if (folder / "config.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model_id}-", dir=folder.parent))
    try:
        build(staging, chat=model_id == CHAT_MODEL_ID)
        staging.rename(folder)
    except OSError:
        if not (folder / "config.json").is_file():  # not a lost race with another process
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def sample_texts(file: Path) -> list[str]:
    """Every text of a sample: a row's fields, or a conversation's turns."""
    texts = []
    for line in file.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        texts.extend(v for v in row.values() if isinstance(v, str))
        texts.extend(m["content"] for m in row.get("messages", []))
    return texts


def build(folder: Path, chat: bool = False) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast, Qwen3Config,
                              Qwen3ForCausalLM)

    texts = sample_texts(CHAT_DATA_FILE if chat else DATA_FILE)
    specials = CHAT_SPECIAL_TOKENS if chat else SPECIAL_TOKENS
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if chat:
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<|endoftext|>", eos_token="<|im_end|>",
                                            additional_special_tokens=specials[1:2])
        tokenizer.chat_template = CHAT_TEMPLATE
    else:
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="<eos>",
                                            additional_special_tokens=SPECIAL_TOKENS[2:])
    tokenizer.save_pretrained(folder)

    torch.manual_seed(SEED)
    vocab = -(-len(tokenizer) // 64) * 64  # padded like polyglot-ko's 30,080 rows for 30,003 tokens
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    if chat:
        model = Qwen3ForCausalLM(Qwen3Config(vocab_size=vocab, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
                                             **CHAT_CONFIG))
    else:
        model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=vocab, **CONFIG))
    pretrain(model, tokenizer, texts)
    model.save_pretrained(folder)  # safetensors


def pretrain(model, tokenizer, texts: list[str]) -> None:
    """Next-token training on the texts joined by <|endoftext|>, in random windows (full weights, fp32)."""
    import torch

    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")  # both tiny tokenizers have it
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
