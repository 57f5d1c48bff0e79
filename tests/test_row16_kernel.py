"""kochat/row16_kernel.py: a bf16 model's products of one row moved onto kochat's bf16_gemv, on the CPU with the
kernel's arithmetic emulated (bf16 widened to float32, summed, written in bf16; the kernel needs an NVIDIA GPU, where
the last test runs it), q/k/v fused first, several rows as before; and which loads move a model there."""
import logging

import pytest
import torch

from kochat import answering, dp4a_kernel, row16_kernel
from kochat.generation import gen, mode_line


class Emulated:
    @staticmethod
    def bf16(weight, row):
        return (weight.float() @ row.float()).bfloat16()


def emulated(n, k):
    return Emulated


class Attention(torch.nn.Module):
    """q/k/v as transformers' Llama-family layers hold them (three layers reading one input), then o."""

    def __init__(self):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj = (torch.nn.Linear(64, n, bias=False, dtype=torch.bfloat16)
                                                 for n in (32, 16, 16))
        self.o_proj = torch.nn.Linear(64, 24, dtype=torch.bfloat16)

    def forward(self, x):
        return self.o_proj(torch.cat([self.q_proj(x), self.k_proj(x), self.v_proj(x)], -1))


@pytest.fixture
def as_on_a_gpu(monkeypatch):
    """bf16 weights taken as a GPU's would be, the package installed."""
    monkeypatch.setattr(row16_kernel, "movable", lambda weight: weight.dtype == torch.bfloat16)
    monkeypatch.setattr(dp4a_kernel, "installed", lambda: True)


def test_one_row_goes_through_the_op_several_as_before_under_the_same_names(as_on_a_gpu):
    torch.manual_seed(0)
    model = Attention()
    names, weight = sorted(model.state_dict()), model.o_proj.weight
    row, batch = torch.randn(1, 64, dtype=torch.bfloat16), torch.randn(3, 5, 64, dtype=torch.bfloat16)
    with torch.inference_mode():
        expected_row, expected_batch = model(row), model(batch)
    assert row16_kernel.onto_row16(model, kernels=emulated) == ""
    assert row16_kernel.on_row16(model) == 2  # q/k/v as one stacked product, and o
    fused = model.q_proj.fused
    assert type(fused.multiply) is row16_kernel.Row16Linear and model.v_proj.fused is fused
    assert type(model.o_proj) is row16_kernel.Row16Linear and model.o_proj.weight is weight  # the very parameter
    assert [n for n in sorted(model.state_dict()) if n.startswith("o_proj")] == [n for n in names if "o_proj" in n]
    with torch.inference_mode():
        one = model(row)
        assert (one.float() - expected_row.float()).norm() / expected_row.float().norm() < 0.01
        assert torch.equal(model(batch), expected_batch)  # several rows: F.linear, as before
        assert fused.output is None  # released when the layer's call ends, as fused_projections does
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        assert torch.equal(compiled(row), one)


def test_a_row_that_starts_inside_a_larger_tensor_reaches_the_kernel_from_a_16_byte_boundary(as_on_a_gpu):
    seen = []

    class Recording(Emulated):
        @staticmethod
        def bf16(weight, row):
            seen.append(row.data_ptr() % 16)
            return Emulated.bf16(weight, row)
    layer = torch.nn.Linear(64, 8, bias=False, dtype=torch.bfloat16)
    moved = row16_kernel.Row16Linear(layer.weight, None, kernels=lambda n, k: Recording)
    wide = torch.randn(65, dtype=torch.bfloat16)
    with torch.inference_mode():
        y = moved(wide[1:][None])  # 2 bytes into its storage
    assert seen[-1] == 0 and wide[1:].data_ptr() % 16 == 2
    assert torch.equal(y[0], Emulated.bf16(layer.weight, wide[1:]))


def test_a_wrong_product_or_a_missing_package_is_one_line_and_nothing_moves(as_on_a_gpu, monkeypatch):
    model = Attention()
    monkeypatch.setattr(dp4a_kernel, "installed", lambda: False)
    assert row16_kernel.onto_row16(model) == ("16-bit one row at a time stays on cuBLAS: pip install "
                                              f"{dp4a_kernel.PACKAGE} for kochat's faster kernel")
    assert type(model.q_proj) is torch.nn.Linear  # not even fused
    monkeypatch.setattr(dp4a_kernel, "installed", lambda: True)
    wrong = type("Wrong", (), {"bf16": staticmethod(lambda weight, row: -Emulated.bf16(weight, row))})
    line = row16_kernel.onto_row16(model, kernels=lambda n, k: wrong)
    assert line.startswith("16-bit one row at a time stays on cuBLAS: moving them onto kochat's bf16 kernel failed "
                           "(ValueError: a layer's product of one row on the kernel is "), line
    assert row16_kernel.on_row16(model) == 0 and model.q_proj.fused.multiply is None


def test_nothing_moves_on_a_cpu_and_only_bf16_moves():
    model = Attention()
    assert row16_kernel.onto_row16(model) == "" and row16_kernel.on_row16(model) == 0
    assert type(model.q_proj) is torch.nn.Linear  # left as it was, unfused
    bf16 = torch.nn.Parameter(torch.zeros(8, 16, dtype=torch.bfloat16))
    assert row16_kernel.kernel_takes(bf16) and not row16_kernel.movable(bf16)  # the kernel would; the CPU cannot
    flat = torch.zeros(129, dtype=torch.bfloat16)
    assert flat[1:].view(8, 16).is_contiguous() and flat[1:].data_ptr() % 16 == 2
    for weight in (torch.zeros(8, 16, dtype=torch.float16), torch.zeros(8, 16),  # fp16, float32
                   torch.zeros(8, 12, dtype=torch.bfloat16),  # a width the kernel's 16-byte loads do not cover
                   torch.zeros(2, row16_kernel.WIDEST + 8, dtype=torch.bfloat16),  # wider than shared memory holds
                   torch.zeros(8, 32, dtype=torch.bfloat16)[:, ::2], flat[1:].view(8, 16)):  # strided; 2 bytes in
        assert not row16_kernel.kernel_takes(torch.nn.Parameter(weight))


def test_a_16_bit_load_asked_one_row_moves_and_a_4_bit_one_does_not(tiny_run_folder, monkeypatch, caplog):
    moved = []
    monkeypatch.setattr(row16_kernel, "onto_row16", lambda model: moved.append(model) or "a line saying why")
    with caplog.at_level(logging.WARNING, logger="kochat.answering"):
        loaded = answering.load_for_answering(str(tiny_run_folder), four_bit=False, kernels="one_row")
    assert moved == [loaded.model] and "a line saying why" in caplog.text
    for four_bit, kernels in ((False, "batches"), (None, "one_row")):  # batches; the run's 4-bit base, as trained
        answering.load_for_answering(str(tiny_run_folder), four_bit=four_bit, kernels=kernels)
    assert len(moved) == 1


@pytest.mark.skipif(not torch.cuda.is_available() or not dp4a_kernel.installed(),
                    reason="bf16_gemv runs on an NVIDIA GPU with cuda-bindings installed (tested on the device)")
@pytest.mark.parametrize("model_id", ["tiny-gpt-neox", "tiny-qwen3-chat"])
def test_a_bf16_model_answers_one_row_on_the_kernel(model_id):
    """GPT-NeoX (q/k/v one matrix already) and Qwen3 (q/k/v and gate/up fused here): every product moved, the logits
    of a prompt and of one row within bf16 of cuBLAS's, and gen()'s compiled loop answers one row and a batch; the
    mode line says so."""
    from kochat import modeling
    tokenizer = modeling.load_tokenizer(model_id)
    model, kept = (modeling.load_model(model_id, tokenizer, four_bit=False).eval() for _ in range(2))
    assert model.dtype == torch.bfloat16 and model.device.type == "cuda"
    linears = sum(type(m) is torch.nn.Linear for m in model.modules())
    assert row16_kernel.onto_row16(model) == ""
    fused_away = 3 * model.config.num_hidden_layers if model_id == "tiny-qwen3-chat" else 0  # 5 a layer: 2
    assert row16_kernel.on_row16(model) == linears - fused_away
    ids = torch.tensor([tokenizer("한국의 수도는 서울입니다")["input_ids"]], device=model.device)
    with torch.no_grad():
        for x in (ids, ids[:, :1]):  # a prompt (cuBLAS both sides), then one row (bf16_gemv against cuBLAS)
            a, b = (m(input_ids=x).logits.float() for m in (model, kept))
            assert ((a - b).abs().max() / b.abs().max()).item() < 0.02
    for prompts in (["안녕?"], ["안녕?", "서울은?", "부산은?"]):
        assert all(a.new_tokens for a in gen(model, tokenizer, None, prompts, max_new_tokens=8, fast=True))
    assert "one row at a time through kochat's bf16 kernel" in mode_line(model, True)
