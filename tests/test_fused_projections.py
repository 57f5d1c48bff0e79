import gc
import weakref

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from kochat import generation, modeling, tiny
from kochat import fused_projections
from kochat.fused_projections import Slice, fuse_projections
from kochat.generation import gen
from kochat.prompts import load_template

QUESTIONS = [[{"role": "user", "content": "연차는 며칠인가요?"}],
             [{"role": "system", "content": "짧게 답하세요."}, {"role": "user", "content": "한국의 수도는?"}]]


def qwen3():  # the tiny_chat preset's model: Qwen3, GQA, q/k norms; on the CPU in float32 wherever this runs
    return modeling.load_model(tiny.CHAT_MODEL_ID, chat_tokenizer(), four_bit=False, device_map="cpu",
                               dtype=torch.float32).eval()


def chat_tokenizer():
    return modeling.load_tokenizer(tiny.CHAT_MODEL_ID)


def llama_with_biases():  # Llama's q/k/v with biases (as Qwen2's), GQA: k and v narrower than q
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, attention_bias=True)).eval()


def linear_calls(model, *args) -> tuple[int, int, torch.Tensor]:
    """(graphs, linear products, logits) of model(*args) as torch.compile captures it, without compiling it further."""
    graphs = []

    def backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward
    torch._dynamo.reset()
    with torch.inference_mode():
        out = torch.compile(model, backend=backend, fullgraph=True)(*args).logits
    products = sum(node.target is torch._C._nn.linear for g in graphs for node in g.graph.nodes)
    return len(graphs), products, out


@pytest.mark.parametrize("make", [qwen3, llama_with_biases])
def test_fused_layers_give_the_same_logits_in_one_graph_with_fewer_products(make):
    model = make()
    ids = torch.randint(3, 300, (2, 9))
    layers = len(modeling.language_layers(model))
    with torch.inference_mode():
        before = model(ids).logits
    assert linear_calls(model, ids)[1] == 7 * layers + 1  # q, k, v, o, gate, up, down a layer; the output head

    assert fuse_projections(model) == 2 * layers
    attention = modeling.language_layers(model)[0].self_attn
    assert isinstance(attention.q_proj, Slice) and attention.q_proj.fused is attention.v_proj.fused
    assert attention.k_proj.out_features == attention.config.num_key_value_heads * attention.head_dim
    with torch.inference_mode():
        assert torch.allclose(model(ids).logits, before, atol=1e-5)
    graphs, products, compiled = linear_calls(model, ids)
    assert (graphs, products) == (1, 4 * layers + 1)  # q/k/v one product, gate/up one: no graph break
    assert torch.allclose(compiled, before, atol=1e-5)
    assert attention.q_proj.fused.input is None and attention.q_proj.fused.output is None  # nothing kept after
    assert fuse_projections(model) == 0  # already fused


def test_a_call_stopped_half_way_leaves_no_stale_product():
    model = llama_with_biases()
    ids = torch.randint(3, 300, (1, 5))
    with torch.inference_mode():
        before = model(ids).logits
        fuse_projections(model)
        attention = modeling.language_layers(model)[0].self_attn
        attention.q_proj(torch.randn(1, 5, 64))  # as if the forward had stopped after q: k and v never taken
        assert torch.allclose(model(ids).logits, before, atol=1e-5)


def test_each_groups_own_weights_are_let_go_before_the_next_is_stacked(monkeypatch):
    model = llama_with_biases()
    mlp_0 = modeling.language_layers(model)[0].mlp
    weights = [weakref.ref(mlp_0.gate_proj.weight), weakref.ref(mlp_0.up_proj.weight)]
    alive_while_stacking = []
    stack = fused_projections.FusedLinear.__init__

    def stacking(self, linears):
        gc.collect()
        alive_while_stacking.append(sum(w() is not None for w in weights))
        stack(self, linears)
    monkeypatch.setattr(fused_projections.FusedLinear, "__init__", stacking)
    assert fuse_projections(model) == 4
    assert alive_while_stacking == [2, 2, 0, 0]  # layer 0's attention, its MLP, then layer 1: its MLP's are gone


class OnlyQAndV(torch.nn.Module):  # an attention-like layer that skips k_proj and feeds v another input
    def __init__(self):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj = (torch.nn.Linear(16, n) for n in (16, 8, 8))

    def forward(self, x):
        return torch.cat([self.q_proj(x), self.v_proj(x * 2)], dim=-1)


def test_a_member_skipped_or_fed_another_input_still_gives_its_own_product():
    layer, x = OnlyQAndV(), torch.randn(2, 3, 16)
    before = layer(x)
    fuse_projections(layer)
    assert torch.allclose(layer(x), before, atol=1e-6)
    assert layer.q_proj.fused.input is None  # released when the layer's call ended, though k was never taken
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    assert torch.allclose(compiled(x), before, atol=1e-6) and layer.q_proj.fused.output is None


def test_only_plain_16_and_32_bit_linear_layers_without_hooks_are_fused(tiny_tokenizer):
    neox = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False)
    assert fuse_projections(neox) == 0  # GPT-NeoX already stores q/k/v as one matrix, no gated MLP
    model = get_peft_model(llama_with_biases(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    assert fuse_projections(model) == 2  # the MLPs only: LoRA's q and v stay as PEFT made them
    attention = modeling.language_layers(model)[0].self_attn
    assert not isinstance(attention.q_proj, Slice) and not isinstance(attention.k_proj, Slice)
    assert fuse_projections(llama_with_biases().to(torch.bfloat16)) == 4
    assert fuse_projections(llama_with_biases().to(torch.float64)) == 0
    hooked = llama_with_biases()
    modeling.language_layers(hooked)[1].mlp.up_proj.register_forward_hook(lambda *_: None)
    assert fuse_projections(hooked) == 3  # the hooked layer's group is left as it was


def test_gen_fuses_where_it_compiles_and_answers_as_before(monkeypatch):
    from transformers import CompileConfig

    model, tokenizer = qwen3(), chat_tokenizer()
    template = load_template("auto", tokenizer)
    before = [a.text for a in gen(model, tokenizer, template, QUESTIONS, max_new_tokens=24, fast=True)]
    # as on a GPU: gen() compiles its decoding step through transformers (captured by dynamo and AOT autograd,
    # not lowered by inductor: a CPU test)
    monkeypatch.setattr(generation, "compiles", lambda core: True)
    model.generation_config.compile_config = CompileConfig(backend="aot_eager", fullgraph=True)
    after = [a.text for a in gen(model, tokenizer, template, QUESTIONS, max_new_tokens=24, fast=True)]
    assert after == before and all(before)
    layer = modeling.language_layers(model)[0]
    assert isinstance(layer.mlp.up_proj, Slice) and isinstance(layer.self_attn.k_proj, Slice)
    weight = layer.self_attn.q_proj.fused.weight
    assert not weight.is_inference()  # stacked inside gen()'s inference mode, still an ordinary tensor
