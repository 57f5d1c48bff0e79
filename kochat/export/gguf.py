"""The `gguf` export: a merged 16-bit GPT-NeoX folder (polyglot-ko, the tiny preset) as GGUF files for llama.cpp and
Ollama, at f16 and quantized by llama.cpp itself (q8_0, q4_k_m).

**Converter.** The tensors and metadata are written with the `gguf` package (ggml-org's gguf-py, MIT, pure
Python, pinned in requirements.txt): its GGUFWriter, its own table of GGUF tensor names for GPT-NeoX
(`gguf.get_tensor_name_map`), and the one transformation llama.cpp's convert_hf_to_gguf.py makes for this
architecture (the fused query/key/value weights regrouped per head, below). We chose this over running llama.cpp's
convert_hf_to_gguf.py for an air-gapped company: that script is not installed by any package (it travels only in the
76 MB llama-cpp-python source archive, `vendor/llama.cpp/`), reads the config through transformers' AutoConfig and
fails on transformers 5 (`KeyError: 'rotary_pct'`: the value now lives in `rope_parameters`), and refuses any
tokenizer whose hash is not in its list, polyglot-ko's included; using it would mean patching its internals, which
change every release. A pinned wheel with a public writer API does not. Weights are streamed tensor by tensor, so
memory stays at one tensor (a 12.8b f16 file needs ~26 GB of disk, not of RAM).

**Pre-tokenizer.** llama.cpp has no way to register a new pre-tokenizer: the name in `tokenizer.ggml.pre` must be one
its C++ knows. We choose it from what the tokenizer *is*, not from a hash: polyglot-ko's `tokenizer.json` has no
normalizer, a BPE model and the pre-tokenizer `ByteLevel(use_regex=true, add_prefix_space=false)`, whose regex is
GPT-2's, which is exactly llama.cpp's `gpt-2` pre-tokenizer (`'s|'t|…| ?\\p{L}+| ?\\p{N}+|…|\\s+(?!\\S)`; the
converter's own list maps other such tokenizers, e.g. ruGPT3XL's, to `gpt-2` too). Before it, polyglot-ko splits
off the character U+0CF1 (ೱ, a Kannada sign its pretraining data used as a marker) and drops it; llama.cpp keeps
it, so only text containing that character tokenizes differently. `pre_tokenizer()` accepts exactly these forms
and names anything else in one line. The evidence is measured, not assumed (tests/export/test_gguf.py):
llama.cpp and transformers give identical ids on every KoAlpaca row tried, for the tiny preset's tokenizer and for
the real polyglot-ko tokenizer (a vocab-only GGUF). The end of text is written as the template's end of turn
(`<|endoftext|>` = id 2 for polyglot-ko, whatever its tokenizer files say; see kochat.modeling).

**Quantization** is llama.cpp's own, `llama_model_quantize` from the installed llama-cpp-python (MIT; it builds
llama.cpp from source), run on the f16 file. Licences: llama.cpp and gguf-py are MIT. The Ollama Modelfile
beside the files: kochat/export/modelfile.py; llama.cpp run from Python: kochat/export/llamacpp.py.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import UserError
from ..prompts import ChatTemplate
from .chat_template import jinja_template
from .llamacpp import llama_cpp_or_advice, stderr_to
from .modelfile import modelfile_template

QUANTS = ("f16", "q8_0", "q4_k_m")
GGUF_PACKAGE = "gguf==0.19.0"
# Bytes a parameter takes in each file (q4_k_m mixes 4.5- and 6-bit blocks; measured at the 1.3b shape: 0.645),
# for the disk check before any long work.
BYTES_PER_PARAM = {"f16": 2.0, "q8_0": 1.07, "q4_k_m": 0.65}
# The only split-off-and-drop strings a tokenizer may carry before its GPT-2 ByteLevel step (see the module doc).
DROPPED_BY_TOKENIZER = {"\u0cf1": "polyglot-ko drops U+0CF1 (ೱ), llama.cpp keeps it"}
# Tensors of older GPT-NeoX checkpoints that are buffers, not weights: llama.cpp computes them.
NOT_WEIGHTS = (".attention.bias", ".attention.masked_bias", ".rotary_emb.inv_freq")


def check_convertible(config, tokenizer, template, quants: Sequence[str] = QUANTS, out_folder: Path | None = None,
                      ) -> None:
    """Everything that would stop a GGUF export, each as one line, before any long work: the formats asked for,
    the packages (gguf; llama-cpp-python for the quantized files), the architecture (GPT-NeoX), its rotary
    embedding, the tokenizer's pre-tokenizer, the end of turn as one token, the Modelfile's template, and the
    free disk under `out_folder`. `config`: the base model's transformers config (modeling.load_config)."""
    unknown = [q for q in quants if q not in QUANTS]
    if unknown or not quants:
        raise UserError(f"GGUF quantization {', '.join(map(repr, unknown)) or '(none given)'} is not one of "
                        f"{', '.join(QUANTS)}")
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise UserError(f"GGUF export needs the gguf package: pip install {GGUF_PACKAGE}") from None
    if set(quants) - {"f16"}:
        llama_cpp_or_advice(f"quantizing to {', '.join(q for q in quants if q != 'f16')}")
    if config.model_type != "gpt_neox":
        raise UserError(f"GGUF export writes GPT-NeoX models (polyglot-ko), not {config.model_type}; export "
                        f"--format=merged and convert that folder with llama.cpp's convert_hf_to_gguf.py")
    rope_settings(config)
    pre_tokenizer(tokenizer)
    end_of_turn_id(tokenizer, template)
    modelfile_template(template)
    if out_folder is not None:
        check_disk(config, quants, Path(out_folder))


def rope_settings(config) -> tuple[float, float]:
    """(share of each head's dimensions that rotate, rotary base) of a GPT-NeoX config, under transformers 4
    (rotary_pct, rotary_emb_base) and 5 (rope_parameters) alike. Scaled rotary embeddings are refused."""
    params = getattr(config, "rope_parameters", None) or {}
    if params.get("rope_type", "default") != "default":
        raise UserError(f"GGUF export writes the plain rotary embedding, not {params['rope_type']!r} scaling")
    share = params.get("partial_rotary_factor", getattr(config, "rotary_pct", 1.0))
    base = params.get("rope_theta", getattr(config, "rotary_emb_base", 10000.0))
    return float(share), float(base)


def tokenizer_spec(tokenizer) -> dict:
    """The tokenizer as tokenizer.json describes it (a fast tokenizer's backend)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UserError("GGUF export needs a fast tokenizer (tokenizer.json); this one is a slow, Python tokenizer")
    return json.loads(backend.to_str())


def pre_tokenizer(tokenizer) -> str:
    """The llama.cpp pre-tokenizer that splits text as this tokenizer does (see the module doc): "gpt-2" for a BPE
    tokenizer with no normalizer and GPT-2's ByteLevel regex, optionally after dropping a known string."""
    spec = tokenizer_spec(tokenizer)
    steps = spec.get("pre_tokenizer") or {}
    steps = steps.get("pretokenizers", []) if steps.get("type") == "Sequence" else [steps]
    *before, last = steps or [{}]
    byte_level = (last.get("type") == "ByteLevel" and last.get("use_regex", True)
                  and not last.get("add_prefix_space", False))
    dropped = all(s.get("type") == "Split" and s.get("behavior") == "Removed"
                  and s.get("pattern", {}).get("String") in DROPPED_BY_TOKENIZER for s in before)
    if spec.get("model", {}).get("type") != "BPE" or spec.get("normalizer") or not byte_level or not dropped:
        found = [s.get("type") for s in steps]
        raise UserError(f"GGUF export knows which llama.cpp pre-tokenizer to use for BPE tokenizers with GPT-2's "
                        f"ByteLevel split (polyglot-ko's); this one has model {spec.get('model', {}).get('type')}, "
                        f"normalizer {(spec.get('normalizer') or {}).get('type')}, pre-tokenizer {found}")
    return "gpt-2"


def end_of_turn_id(tokenizer, template) -> int:
    """The token that ends an answer: the template's end of turn (<|endoftext|> for polyglot-ko, id 2)."""
    text = template.end_of_turn or tokenizer.eos_token
    ids = tokenizer.convert_tokens_to_ids([text])
    if not text or ids[0] is None or ids[0] == tokenizer.unk_token_id:
        raise UserError(f"the end of turn {text!r} is not one token of the tokenizer; GGUF needs its id")
    return ids[0]


def bytes_written(params: int, quants: Sequence[str]) -> float:
    """The GGUF files' bytes: f16 (always written first, the others are made from it) and each quantized one."""
    return params * (BYTES_PER_PARAM["f16"] + sum(BYTES_PER_PARAM[q] for q in set(quants) - {"f16"}))


def check_disk(config, quants: Sequence[str], out_folder: Path) -> None:
    """Enough free disk for the f16 file (always written first) and each quantized one, with 5 % to spare."""
    from ..modeling import parameter_count

    params = parameter_count(config)
    need = bytes_written(params, quants) * 1.05
    existing = next(p for p in [out_folder, *out_folder.absolute().parents] if p.exists())
    free = shutil.disk_usage(existing).free
    if free < need:
        raise UserError(f"GGUF export of {params / 1e9:.1f} B parameters needs ~{need / 1e9:.1f} GB of disk under "
                        f"{existing}; {free / 1e9:.1f} GB are free")


# ---------------------------------------------------------------------------------------------- writing GGUF


def write_gguf(merged_folder: Path, out_folder: Path, quants: Sequence[str], template) -> list[Path]:
    """GGUF files of a merged 16-bit transformers folder (runs.save_merged writes one): `<out>-f16.gguf` first, then
    `<out>-<quant>.gguf` for each other quant by llama.cpp's quantizer. Each is written under a temporary name and
    renamed when complete, so an existing file is only ever replaced by a whole one. The f16 file is kept only
    if asked for. Returns the files written, in the order of QUANTS."""
    from .. import modeling

    merged_folder, out_folder = Path(merged_folder), Path(out_folder)
    config = modeling.load_config(str(merged_folder))
    tokenizer = modeling.load_tokenizer(str(merged_folder))
    check_convertible(config, tokenizer, template, quants, out_folder)
    out_folder.mkdir(parents=True, exist_ok=True)
    path_of = {q: out_folder / f"{out_folder.name}-{q}.gguf" for q in QUANTS}
    f16 = path_of["f16"]
    with written_at_once(f16) as tmp:  # named after the export, not the merged work folder it is read from
        write_f16(merged_folder, config, tokenizer, template, tmp, name=out_folder.name)
    for quant in (q for q in QUANTS if q in quants and q != "f16"):
        with written_at_once(path_of[quant]) as tmp:
            quantize(f16, tmp, quant)
    if "f16" not in quants:
        f16.unlink()
    return [path_of[q] for q in QUANTS if q in quants]


class written_at_once:
    """`with written_at_once(path) as tmp:` write tmp; on success it becomes path, on failure it is removed."""

    def __init__(self, path: Path):
        self.path, self.tmp = path, path.with_name(f".{path.name}.tmp")

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def new_writer(path: Path, config, tokenizer, template, name: str):
    """A GGUFWriter holding a GPT-NeoX model's hyperparameters and vocabulary (what llama.cpp's converter writes
    for GPTNeoXForCausalLM, plus the rotary base, which it leaves at llama.cpp's default)."""
    import gguf

    share, base = rope_settings(config)
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.GPTNEOX])
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_rope_dimension_count(int(share * (config.hidden_size // config.num_attention_heads)))
    writer.add_rope_freq_base(base)
    writer.add_head_count(config.num_attention_heads)
    writer.add_parallel_residual(getattr(config, "use_parallel_residual", True))
    writer.add_layer_norm_eps(config.layer_norm_eps)
    add_vocabulary(writer, tokenizer, template, config.vocab_size)
    return writer


def add_vocabulary(writer, tokenizer, template, vocab_size: int) -> None:
    """The BPE vocabulary as llama.cpp reads it: byte-level token strings, one a row of the embedding (rows past the
    tokenizer are "[PAD<id>]", unused), merges, special tokens as control tokens, no BOS or EOS added by
    llama.cpp (kochat's prompts carry their own), the end of turn as EOS."""
    import gguf

    spec = tokenizer_spec(tokenizer)
    by_id = {i: token for token, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        token = by_id.get(i)
        tokens.append(token if token is not None else f"[PAD{i}]")
        types.append(gguf.TokenType.UNUSED if token is None else
                     gguf.TokenType.NORMAL if i not in added else
                     gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer(tokenizer))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_eos_token_id(end_of_turn_id(tokenizer, template))
    if tokenizer.pad_token_id is not None:
        writer.add_pad_token_id(tokenizer.pad_token_id)
    if tokenizer.bos_token_id is not None:
        writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    # llama.cpp's chat endpoints (llama-server --jinja) and llama-cpp-python render chats with it
    writer.add_chat_template(template.source if isinstance(template, ChatTemplate) else jinja_template(template))


def write_vocab_only(path: Path, config, tokenizer, template) -> Path:
    """A GGUF with the hyperparameters and vocabulary but no weights: enough for llama.cpp to tokenize (checks
    of the tokenizer without a model, e.g. on the real polyglot-ko tokenizer)."""
    writer = new_writer(path, config, tokenizer, template, name=Path(path).stem)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    return Path(path)


@dataclass(frozen=True)
class Weight:
    hf_name: str
    gguf_name: str
    shape: tuple[int, ...]
    file: Path


def weights_of(folder: Path, config) -> list[Weight]:
    """Each weight of the folder's safetensors files with its GGUF name, from gguf's own GPT-NeoX table."""
    import gguf
    from safetensors import safe_open

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPTNEOX, config.num_hidden_layers)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise UserError(f"{folder} holds no .safetensors weights; export --format=merged writes them")
    weights = []
    for file in files:
        with safe_open(file, framework="pt") as f:
            for hf_name in f.keys():
                if hf_name.endswith(NOT_WEIGHTS):
                    continue
                gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
                if gguf_name is None:
                    raise UserError(f"{file.name}: the tensor {hf_name} has no place in a GPT-NeoX GGUF")
                weights.append(Weight(hf_name, gguf_name, tuple(f.get_slice(hf_name).get_shape()), file))
    return weights


def gguf_array(weight: Weight, tensor, config):
    """One weight as llama.cpp wants it: 16-bit for matrices, 32-bit for norms and biases (as the converter
    writes them at f16), and the fused query/key/value rows regrouped from per-head [q k v] blocks (transformers'
    layout) into [all q, all k, all v] (llama.cpp's GPT-NeoX graph)."""
    import torch

    heads, width = config.num_attention_heads, config.hidden_size
    if weight.hf_name.endswith("attention.query_key_value.weight"):
        tensor = tensor.reshape(heads, 3, width // heads, width).transpose(0, 1).reshape(3 * width, width)
    elif weight.hf_name.endswith("attention.query_key_value.bias"):
        tensor = tensor.reshape(heads, 3, width // heads).transpose(0, 1).reshape(3 * width)
    dtype = torch.float16 if tensor.dim() > 1 else torch.float32
    return tensor.to(dtype).contiguous().numpy()


def write_f16(merged_folder: Path, config, tokenizer, template, path: Path, name: str) -> None:
    """The f16 GGUF, streamed: tensor infos first, then each weight read, converted and written on its own."""
    import numpy as np
    from safetensors import safe_open
    from tqdm import tqdm

    import gguf

    weights = weights_of(merged_folder, config)
    writer = new_writer(path, config, tokenizer, template, name=name)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    for w in weights:
        dtype = np.float16 if len(w.shape) > 1 else np.float32
        writer.add_tensor_info(w.gguf_name, w.shape, np.dtype(dtype), int(np.prod(w.shape)) * np.dtype(dtype).itemsize)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    handles = {}
    try:
        for w in tqdm(weights, desc=f"GGUF f16 ({path.name.lstrip('.').removesuffix('.tmp')})", unit="tensor"):
            handle = handles.get(w.file) or handles.setdefault(w.file, safe_open(w.file, framework="pt"))
            writer.write_tensor_data(gguf_array(w, handle.get_tensor(w.hf_name), config))
    finally:
        handles.clear()
        writer.close()


def quantize(f16_file: Path, out: Path, quant: str) -> None:
    """llama.cpp's own quantizer (llama_model_quantize, as its llama-quantize tool calls it) from f16 to `quant`.
    llama.cpp reports each tensor on stderr as it goes, a hundred lines and more: they go to a log file, kept and
    named only where quantizing fails."""
    llama_cpp = llama_cpp_or_advice(f"quantizing to {quant}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}")
    params.nthread = os.cpu_count() or 1
    print(f"GGUF {quant}: quantizing {f16_file.name} with llama.cpp …", flush=True)
    with tempfile.NamedTemporaryFile("w", prefix=f"kochat-quantize-{quant}-", suffix=".log", delete=False) as log:
        try:
            with stderr_to(log):
                status = llama_cpp.llama_model_quantize(str(f16_file).encode(), str(out).encode(),
                                                        ctypes.byref(params))
        except BaseException:  # stopped (Ctrl-C) or failed in Python: nothing to keep
            os.unlink(log.name)
            raise
    if status != 0:
        last = (Path(log.name).read_text(errors="replace").strip().splitlines() or ["(empty)"])[-1][:200]
        raise UserError(f"llama.cpp could not quantize to {quant} (status {status}): {last}; its log: {log.name}")
    os.unlink(log.name)
