"""Paths to the real third-party data in ../shared/data, and small helpers, for the tests."""
import importlib.util
import socket
import threading
import time
from pathlib import Path

import pytest

from kochat import PROJECT_ROOT
from kochat.export.llamacpp import LLAMA_CPP_PACKAGE

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
POLYGLOT_TOKENIZER = SHARED_DATA / "polyglot-ko-tokenizer"
POLYGLOT_12P8B_CONFIG = SHARED_DATA / "polyglot-ko-12.8b"
KOALPACA_V11A = SHARED_DATA / "koalpaca" / "KoAlpaca_v1.1a_textonly_1k.jsonl"
KOALPACA_V10 = SHARED_DATA / "koalpaca" / "ko_alpaca_data_v1.0_partial.json"

KEY = "sk-test-0123456789"  # an API key of the keyed test server
# index_ko.py's defaults, as update_index takes them
INDEX_SETTINGS = dict(chunk_chars=800, overlap_chars=100, k1=1.2, b=0.9, max_file_bytes=50_000_000)

needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"real third-party data not found at {SHARED_DATA} (fresh clone)")
needs_llama_cpp = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                     reason=f"llama.cpp not installed (pip install {LLAMA_CPP_PACKAGE})")


def write(path: Path, content, encoding="utf-8") -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding=encoding)
    return path


class Served:
    """The real server (kochat.server on uvicorn) for a run folder, on a free loopback port, in a thread; keys as
    a list, or a dict of key -> the index names it may use; library: the document indexes (server.Library);
    system: the system message for conversations without one (serve_ko.py --system)."""

    def __init__(self, run_folder, keys, library=None, system="", **engine_options):
        import uvicorn

        from kochat import answering
        from kochat.server import Engine, create_app, slow_header_protocol

        run, self.tokenizer, self.model = answering.load_for_answering(str(run_folder))
        self.template = run.template
        self.engine = Engine(self.model, self.tokenizer, run.template, "tiny", **engine_options)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        app = create_app(self.engine, keys, max_body_bytes=200_000, body_timeout_s=2.0, default_temperature=0.0,
                         default_system=system, library=library)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    http=slow_header_protocol(2.0)))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def client(self, key="unused"):
        import openai

        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=60)

    def greedy(self, item, max_tokens=256):
        from kochat.generation import gen

        return gen(self.model, self.tokenizer, self.template, item, max_new_tokens=max_tokens)[0]

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def write_followup_docs(folder: Path) -> Path:
    """Three notes that all mention 2년차: which one a follow-up "그럼 2년차는요?" is about depends on the
    question before it (연차.md after one about leave, 교육.md after one about training; 동호회.md alone)."""
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / "연차.md", "# 연차휴가\n\n1년차 직원의 연차휴가는 11일입니다. 근속 2년차 직원의 연차휴가는 15일입니다.\n")
    write(folder / "교육.md", "# 신입사원 교육\n\n신입사원 교육은 입사 첫 주에 40시간입니다. 2년차 직원은 심화 교육을 16시간 "
                            "받습니다.\n")
    write(folder / "동호회.md", "# 동호회\n\n2년차부터 동호회 회장을 맡습니다.\n")
    return folder


def w4a8_in_torch(packed, group, act, act_scale):
    """kochat/dp4a_kernel.py's w4a8_gemv as its CUDA source reads its inputs (the kernels themselves need a GPU),
    in float32."""
    import torch
    n, k = packed.shape[0], packed.shape[1] * 8
    nibbles = packed.contiguous().view(torch.uint8).view(n, k // 32, 4, 4)  # [row, block, word, byte]
    levels = torch.stack([nibbles & 15, nibbles >> 4], 3).view(n, k // 32, 32)  # word j: k = 8j..8j+3, 8j+4..8j+7
    dots = (levels.int() * act.view(torch.int8).view(k // 32, 32).int()).sum(-1)  # dp4a's integer sums a block
    scale, zero = (group.view(torch.bfloat16).view(n, k // 128, 2)[..., i].float().repeat_interleave(4, 1)
                   for i in (0, 1))  # a group's four blocks
    d, sums = act_scale[:, 0], act_scale[:, 1]
    return (scale * d * dots.float() + (zero - 8 * scale) * sums).sum(-1)  # weights (q - 8) * scale + zero


def w8a8_in_torch(levels, row_scale, act, act_scale, float32=False):
    """w8a8_gemv's arithmetic: each block's integer sum times its d, over the row, times the row's scale (float32,
    or its bits as int32, as the layer holds it; written out in bf16, as the kernel writes it)."""
    import torch
    n, k = levels.shape
    a, d = act.view(torch.int8).view(k // 32, 32).int(), act_scale[:, 0]
    y = ((levels.view(n, k // 32, 32).int() * a).sum(-1).float() * d).sum(-1) * row_scale.view(torch.float32)
    return y if float32 else y.bfloat16()


def unpack_levels(packed):
    """kochat.dp4a_kernel.pack_levels undone: [N, K/8] int32 to levels [N, K] uint8."""
    import torch
    n, words = packed.shape
    low_high = packed.view(torch.uint8).view(n, words, 1, 4)
    return torch.cat([low_high & 15, low_high >> 4], 2).view(n, words * 8)


def weights_in_torch(levels, scales, n, k):
    """w4_weights' and w8_weights' arithmetic: a layer's weights [n, k] in bf16."""
    import torch
    if levels.dtype == torch.int32:  # int4: (level - 8) * scale + zero, each group's
        q = unpack_levels(levels).view(n, k // 128, 128).float()
        scale, zero = scales.view(torch.bfloat16).view(n, k // 128, 2).float().unbind(-1)
        return ((q - 8) * scale[..., None] + zero[..., None]).view(n, k).bfloat16()
    return (levels.float() * scales.view(torch.float32)[:, None]).bfloat16()


class EmulatedKernels:
    """kochat.dp4a_kernel.Kernels' products and weights in torch, written out in bf16 as the kernels write them."""

    @staticmethod
    def int4(packed, group, act, act_scale):
        return w4a8_in_torch(packed, group, act, act_scale).bfloat16()

    int8 = staticmethod(w8a8_in_torch)
    weights = staticmethod(weights_in_torch)
