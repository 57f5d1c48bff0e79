"""llama.cpp from Python (llama-cpp-python, MIT; it builds llama.cpp from source): the one place kochat opens a GGUF
file with it, to tokenize, answer greedily or keep every position's logits, for checking an export against
transformers and gen() (tests, bench.gguf_agreement, bench.export_quality), and its quantizer's stderr kept
out of the terminal.
"""
from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager, redirect_stderr
from pathlib import Path
from typing import Sequence

from ..errors import UserError

LLAMA_CPP_PACKAGE = "llama-cpp-python==0.3.36"


def llama_cpp_or_advice(purpose: str):
    """The llama_cpp module, or one line saying how to install it."""
    try:
        import llama_cpp
    except ImportError:
        raise UserError(f"{purpose} needs llama.cpp: pip install {LLAMA_CPP_PACKAGE} (it builds llama.cpp from "
                        f"source: a C++ compiler and cmake, ~20 minutes on 2 cores, once)") from None
    return llama_cpp


@contextmanager
def stderr_to(file):
    """stderr into `file` for a while: file descriptor 2, where llama.cpp's C code writes, and sys.stderr, where
    llama-cpp-python's log callback prints."""
    if sys.stderr:  # None under pythonw
        sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(file.fileno(), 2)
    try:
        with redirect_stderr(file):
            yield
    finally:
        file.flush()
        os.dup2(saved, 2)
        os.close(saved)


_DEFAULTS_SWAPPED = threading.Lock()  # open_llama's swap of llama-cpp-python's default model parameters


def open_llama(gguf_file: Path, purpose: str, **options):
    """llama_cpp.Llama(model_path=gguf_file, **options), the one place kochat opens a GGUF file with llama.cpp. On a
    CPU with Intel AMX, without llama.cpp's extra weight buffers (AMX, repacked): their matrix product crashes the
    process on some such CPUs (segmentation fault in ggml_backend_amx_mul_mat, llama.cpp issue #20824, open; seen
    with llama-cpp-python 0.3.36 on this project's Intel Xeon CI machine, every quantized file, any size). That is
    `--no-repack` in llama.cpp's own programs; Llama() has no argument for it, so its default model parameters are
    given with it off while it loads. Elsewhere llama.cpp's defaults."""
    llama_cpp = llama_cpp_or_advice(purpose)
    if b"AMX_INT8 = 1" not in llama_cpp.llama_print_system_info():
        return llama_cpp.Llama(model_path=str(gguf_file), **options)
    import llama_cpp.llama as llama_module

    with _DEFAULTS_SWAPPED:  # two loads at once would otherwise keep the swapped function for good
        defaults = llama_module.llama_cpp.llama_model_default_params

        def without_extra_buffers():
            params = defaults()
            params.use_extra_bufts = False
            return params

        llama_module.llama_cpp.llama_model_default_params = without_extra_buffers
        try:
            return llama_cpp.Llama(model_path=str(gguf_file), **options)
        finally:
            llama_module.llama_cpp.llama_model_default_params = defaults


def llama_tokenize(gguf_file: Path, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text as llama.cpp gives them (special tokens in the text parsed, nothing added): for
    comparing with the transformers tokenizer. A vocab-only GGUF is enough."""
    model = open_llama(gguf_file, "tokenizing with llama.cpp", vocab_only=True, verbose=False)
    try:
        return [model.tokenize(text.encode("utf-8"), add_bos=False, special=True) for text in texts]
    finally:
        model.close()


def llama_with_logits(gguf_file: Path, context: int, threads: int = 0):
    """llama.cpp's model of the file, keeping the logits of every position it reads (model.scores), for
    comparing them with transformers'. threads 0: every core."""
    return open_llama(gguf_file, "measuring a GGUF file", n_ctx=context, n_batch=context, logits_all=True,
                      n_threads=threads or os.cpu_count() or 1, seed=0, verbose=False)


def llama_greedy(gguf_file: Path, prompts: Sequence[str], max_new_tokens: int) -> list[list[int]]:
    """llama.cpp's greedy answer to each prompt, as token ids up to (not including) the end of turn: what gen()
    with temperature 0 gives, for checking an export against it."""
    model = open_llama(gguf_file, "answering with llama.cpp", n_ctx=0, n_threads=os.cpu_count() or 1, seed=0,
                       verbose=False)
    answers = []
    try:
        eot = model.token_eos()
        for prompt in prompts:
            model.reset()
            ids = []
            for token in model.generate(model.tokenize(prompt.encode("utf-8"), add_bos=False, special=True),
                                        temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
                if token == eot or len(ids) == max_new_tokens:
                    break
                ids.append(token)
            answers.append(ids)
    finally:
        model.close()
    return answers
