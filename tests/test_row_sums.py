import torch
from transformers import CompileConfig

from kochat import generation, modeling, tiny
from kochat.generation import gen
from kochat.prompts import load_template
from kochat.row_sums import Apart, holds_int8, keep_apart, row_products_are_sums


def logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=ids).logits


def test_each_mlp_gelu_is_wrapped_once_with_the_same_logits(tiny_tokenizer):
    model = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False).eval()  # GPT-NeoX: act, GELU
    ids = torch.randint(3, 300, (2, 9))
    before = logits(model, ids)
    layers = model.config.num_hidden_layers
    assert keep_apart(model) == layers
    assert keep_apart(model) == 0  # done before
    assert sum(isinstance(m, Apart) for m in model.modules()) == layers
    assert torch.equal(logits(model, ids), before)
    assert "GELUActivation, as its own kernel" in repr(model)
    chat = modeling.load_model(tiny.CHAT_MODEL_ID, modeling.load_tokenizer(tiny.CHAT_MODEL_ID), four_bit=False)
    assert keep_apart(chat) == 0  # Qwen3's SiLU: cheap to recompute, measured slower apart
    chat.model.layers[0].mlp.act_fn = torch.nn.GELU(approximate="tanh")  # a gated GELU, as Gemma's
    assert keep_apart(chat) == 0


def test_a_compiled_graph_calls_the_activation_as_one_opaque_op(tiny_tokenizer):
    model = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False).eval()
    keep_apart(model)
    graphs = []

    def capture(gm, example_inputs):  # a torch.compile backend: keeps the graph, runs it as traced
        graphs.append(gm)
        return gm.forward
    compiled = torch.compile(model, backend=capture, fullgraph=True)
    ids = torch.randint(3, 300, (1, 5))
    with torch.inference_mode():
        assert torch.equal(compiled(input_ids=ids).logits, model(input_ids=ids).logits)
    calls = [n for n in graphs[0].graph.nodes if n.target is torch.ops.kochat.apart_activation]
    assert len(calls) == model.config.num_hidden_layers
    assert not [n for n in graphs[0].graph.nodes if "gelu" in str(n.target)]  # nothing left to inline


def test_only_where_one_row_products_become_sums(monkeypatch):
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor, "coordinate_descent_tuning", False)  # whatever an earlier test quantized with
    assert not row_products_are_sums(None) and not row_products_are_sums(CompileConfig())  # transformers' default
    assert row_products_are_sums(CompileConfig(options={"coordinate_descent_tuning": True}))
    assert row_products_are_sums(CompileConfig(mode="max-autotune"))  # the mode turns the tuning on
    monkeypatch.setattr(inductor, "coordinate_descent_tuning", True)  # as torchao's int8/int4 configs set it
    assert row_products_are_sums(None) and row_products_are_sums(CompileConfig())
    assert not row_products_are_sums(CompileConfig(options={"coordinate_descent_tuning": False}))


def test_gen_keeps_it_apart_under_the_tuned_compile_and_answers_as_before(monkeypatch, tiny_tokenizer):
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor, "coordinate_descent_tuning", False)  # whatever an earlier test quantized with
    model, tokenizer = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False).eval(), tiny_tokenizer
    template = load_template("koalpaca", tokenizer)
    question = "연차는 며칠인가요?"
    before = gen(model, tokenizer, template, question, max_new_tokens=16, fast=True)[0].text
    monkeypatch.setattr(generation, "compiles", lambda core: True)  # as on a GPU; captured, not lowered
    model.generation_config.compile_config = CompileConfig(backend="aot_eager", fullgraph=True)
    gen(model, tokenizer, template, question, max_new_tokens=16, fast=True)
    assert not any(isinstance(m, Apart) for m in model.modules())  # the default compile: products stay products
    model.generation_config.compile_config = CompileConfig(backend="aot_eager", fullgraph=True, mode=None,
                                                           options={"coordinate_descent_tuning": True})
    after = gen(model, tokenizer, template, question, max_new_tokens=16, fast=True)[0].text
    assert sum(isinstance(m, Apart) for m in model.modules()) == model.config.num_hidden_layers
    assert after == before and before


def test_one_row_of_int8_weights_compiles_with_torchaos_settings_and_nothing_else_does(monkeypatch, tiny_tokenizer):
    import torch._inductor.config as inductor
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    monkeypatch.setattr(inductor, "coordinate_descent_tuning", False)  # whatever an earlier test quantized with
    model, tokenizer = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False).eval(), tiny_tokenizer
    template = load_template("koalpaca", tokenizer)
    tuned_while_compiling = []

    def capture(gm, example_inputs, **options):  # a torch.compile backend: notes the setting it compiles under
        tuned_while_compiling.append(inductor.coordinate_descent_tuning)
        return gm.forward
    monkeypatch.setattr(generation, "compiles", lambda core: True)  # as on a GPU; captured, not lowered
    model.generation_config.compile_config = CompileConfig(backend=capture, fullgraph=True)
    assert not holds_int8(model)
    gen(model, tokenizer, template, "연차는 며칠인가요?", max_new_tokens=4, fast=True)
    assert tuned_while_compiling == [False]  # 16-bit weights: transformers' default compile
    quantize_(model, Int8WeightOnlyConfig(set_inductor_config=False))  # as an int8 export loads: nothing set
    assert holds_int8(model)
    torch._dynamo.reset()
    tuned_while_compiling.clear()
    answers = gen(model, tokenizer, template, ["연차는 며칠인가요?", "출장비는요?"], max_new_tokens=4, fast=True)
    assert tuned_while_compiling == [False] and all(a.text for a in answers)  # two rows: untouched
    one = gen(model, tokenizer, template, "연차는 며칠인가요?", max_new_tokens=4, fast=True)[0]
    assert tuned_while_compiling == [False, True] and one.text  # one row: tuned while it compiled
    assert not inductor.coordinate_descent_tuning  # and undone after
    assert sum(isinstance(m, Apart) for m in model.modules()) == model.config.num_hidden_layers  # sums: GELU apart
