import pytest
import torch
from transformers import StaticCache
from transformers.cache_utils import StaticLayer

from kochat import decode_attention, generation, kv_cache, modeling, tiny
from kochat.generation import gen
from kochat.kv_cache import Int8CacheLayer, PooledCache, cache_bytes, from_int8_rows, static_cache, to_int8_rows

QUESTIONS = ["한국의 수도는 어디인가요?", ("다음 단어의 반대말을 쓰세요.", "크다"), "하늘은 왜 파란가요?",
             "김치는 어떻게 만드나요? 자세히 알려 주세요."]


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    return modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False).eval()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_int8_rows_keep_each_vector_within_half_a_step_of_its_own_scale(dtype):
    sizes = torch.tensor([1e-4, 1e-2, 1.0, 30.0, 500.0, 6e4 / 4])[:, None]  # rows from tiny to near fp16's largest
    states = (torch.randn(2, 3, 6, 64) * sizes).to(dtype)
    states[0, 0, 0] = 0  # a row of zeros stays zeros
    rows = to_int8_rows(states)
    assert rows.dtype == torch.int8 and rows.shape == (2, 3, 6, 65)
    back = from_int8_rows(rows, dtype)
    assert back.dtype == dtype and (back[0, 0, 0] == 0).all()
    largest = states.float().abs().amax(-1, keepdim=True)
    error = (back.float() - states.float()).abs()
    own_rounding = torch.finfo(dtype).eps * states.float().abs() + torch.finfo(dtype).smallest_normal
    assert (error <= largest / 127 * 2 ** 0.25 / 2 + own_rounding).all()  # half a step (the scale at most
    # 2 ** (1/4) above largest / 127), and the dtype's own rounding of the scale and the product


def test_cache_bytes_is_what_each_cache_holds(model, tiny_tokenizer):
    ids = torch.tensor([tiny_tokenizer("안녕하세요")["input_ids"]] * 4, device=model.device)
    full, eight = static_cache(model, 4, 128, cache_8bit=False), static_cache(model, 4, 128, cache_8bit=True)
    for cache in (full, eight):
        model(input_ids=ids, past_key_values=cache, use_cache=True)
    held = sum(layer.keys.nbytes + layer.values.nbytes for layer in full.layers)
    assert held == cache_bytes(full, model.config, 4, model.dtype.itemsize) > 0
    assert all(isinstance(layer, Int8CacheLayer) and layer.keys.dtype == torch.int8 for layer in eight.layers)
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    assert sum(layer.keys.nbytes + layer.values.nbytes for layer in eight.layers) == \
        held * (head_dim + 1) // (head_dim * model.dtype.itemsize)  # a byte a value, and one a row


def test_auto_takes_8_bits_only_where_the_cache_would_not_fit_and_keeps_its_choice(model, monkeypatch, caplog):
    def is_8bit(batch, length):
        return isinstance(static_cache(model, batch, length, None).layers[0], Int8CacheLayer)

    assert not is_8bit(16, 512)  # a CPU, or a GPU with room for 16 tiny rows
    need = cache_bytes(static_cache(model, 16, 256, False), model.config, 16, model.dtype.itemsize) + \
        kv_cache.HEADROOM_GIB * 2 ** 30
    monkeypatch.setattr(kv_cache, "free_bytes", lambda device: need - 1)
    assert is_8bit(16, 256)
    assert [r.getMessage() for r in caplog.records] == [  # said once, in one line
        f"16 rows of 256 tokens: key/value cache in 8 bits (in {str(model.dtype)[6:]} it would take 0.0 GiB, "
        f"{(need - 1) / 2 ** 30:.1f} GiB free)"]
    monkeypatch.setattr(kv_cache, "free_bytes", lambda device: need)
    assert is_8bit(16, 256)  # decided once for this batch and length: its compiled step stays valid
    assert not is_8bit(8, 256)  # other shapes decide for themselves


@pytest.fixture
def caches_made(monkeypatch):
    made = []
    monkeypatch.setattr(generation, "batch_cache", lambda *args: made.append(kv_cache.batch_cache(*args)) or made[-1])
    return made


def test_an_8_bit_cache_answers_as_the_model_dtype_cache(model, tiny_tokenizer, koalpaca_template, caches_made):
    for questions in (QUESTIONS[:1], QUESTIONS):  # one row: a static cache; a batch: pooled
        full, eight = (gen(model, tiny_tokenizer, koalpaca_template, questions, max_new_tokens=40, fast=True,
                           cache_8bit=bits) for bits in (False, True))
        assert [a.text for a in eight] == [a.text for a in full] and all(a.text for a in full)
    static, static8, pooled, pooled8 = caches_made
    assert [type(static.layers[0]), type(static8.layers[0])] == [StaticLayer, Int8CacheLayer]
    assert static8.layers[0].keys.dtype == torch.int8  # the answers above came through it
    assert isinstance(pooled, PooledCache) and pooled.pools[0][0].dtype == model.dtype
    assert pooled8.pools[0][0].dtype == torch.int8


def test_a_pooled_cache_holds_each_rows_prompt_and_answer_and_answers_as_the_default_path(
        model, tiny_tokenizer, koalpaca_template, caches_made):
    limits = [30, 5, 40, 12]  # rows that stop early keep writing their own last slot, not a neighbour's
    default = gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS, max_new_tokens=limits, min_new_tokens=40)
    fast = gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS, max_new_tokens=limits, min_new_tokens=40,
               fast=True)
    assert [a.text for a in fast] == [a.text for a in default] and [a.new_tokens for a in fast] == limits
    [cache] = caches_made
    prompts = [a.prompt_tokens for a in fast]
    need = sum(prompts) + sum(limits)  # no padding: each row its prompt and a slot for each token it may generate
    assert cache.slots == -(-need // (kv_cache.POOL_STEP * 4)) * kv_cache.POOL_STEP * 4
    width_and_answer = -(-(max(prompts) + max(limits)) // generation.CACHE_STEP) * generation.CACHE_STEP
    assert cache.slots < 4 * width_and_answer  # what a static cache would hold for these rows
    layers, per_token = model.config.num_hidden_layers, kv_cache.bytes_per_token(model.config, model.dtype.itemsize)
    assert sum(pool.nbytes for pools in cache.pools for pool in pools) == cache.slots * layers * per_token
    assert model.config._attn_implementation == decode_attention.NAME


def test_models_whose_layers_cannot_pool_keep_a_static_cache(model):
    mask = torch.ones(2, 5, dtype=torch.long, device=model.device)
    assert isinstance(kv_cache.batch_cache(model, mask, [8, 8], 128, False), PooledCache)
    assert isinstance(kv_cache.batch_cache(model, mask[:1], [8], 128, False), StaticCache)  # one row: no padding
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig  # sliding-window layers
    config = Gemma3TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=8)
    gemma = Gemma3ForCausalLM(config).eval()
    assert isinstance(kv_cache.batch_cache(gemma, mask, [8, 8], 128, False), StaticCache)
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM  # caches latents, not each head's keys
    config = DeepseekV3Config(vocab_size=64, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                              num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, q_lora_rank=8,
                              kv_lora_rank=8, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8, n_routed_experts=2,
                              num_experts_per_tok=1, n_group=1, topk_group=1)
    deepseek = DeepseekV3ForCausalLM(config).eval()
    assert isinstance(kv_cache.batch_cache(deepseek, mask, [8, 8], 128, False), StaticCache)


def test_a_row_with_nothing_to_say_keeps_to_its_own_slot(model, tiny_tokenizer):
    prompts, limits = ["", "한국의 수도는", "서울은"], [0, 10, 1]  # no prompt, no tokens: still a slot of its own
    default, fast = (gen(model, tiny_tokenizer, None, prompts, max_new_tokens=limits, fast=f) for f in (False, True))
    assert [a.text for a in fast] == [a.text for a in default] and fast[1].text


@pytest.mark.parametrize("rows, cache_8bit", [(4, False), (4, True), (1, True)],
                         ids=["pooled", "pooled-8-bit", "static-8-bit"])
def test_the_compiled_decode_step_reads_its_cache_as_the_eager_one(model, tiny_tokenizer, koalpaca_template,
                                                                   monkeypatch, rows, cache_8bit):
    # on a GPU the decode step is compiled (inductor, CUDA graphs) with the cache's writes and reads inside its
    # graph; here the same compiled call on the CPU must lower them and pick the tokens the eager step picks
    kwargs = dict(max_new_tokens=40, min_new_tokens=40, fast=True, cache_8bit=cache_8bit)
    eager = gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS[:rows], **kwargs)
    monkeypatch.setattr(generation, "compiled_forward", lambda core: core.get_compiled_call(None))
    compiled = gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS[:rows], **kwargs)
    assert hasattr(model, "_compiled_call")  # the compiled path really ran
    assert [a.text for a in compiled] == [a.text for a in eager] and [a.new_tokens for a in compiled] == [40] * rows


def test_after_warming_up_a_batch_of_any_size_or_length_reuses_the_compiled_step(model, tiny_tokenizer,
                                                                                koalpaca_template, monkeypatch):
    # serve_ko.py's warm-up answers batches of 1, 2, 4, 8, 16: torch compiles one row (static cache), then two rows
    # or more once, the batch and pool sizes as symbols (PooledCache.step); what clients send later compiles nothing
    torch._dynamo.reset()  # other tests' compiles of the same frames count towards torch's recompile limit
    compiles = []

    def counting(graph, example_inputs):  # a torch.compile backend: counts, runs the graph as traced
        compiles.append(graph)
        return graph.forward
    step = torch.compile(model.__call__, backend=counting, dynamic=None)
    monkeypatch.setattr(generation, "compiled_forward", lambda core: step)
    for rows in (1, 2, 4, 8, 16):
        gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS[:1] * rows, max_new_tokens=8, fast=True)
    assert len(compiles) == 2
    for rows, limit in [(16, 30), (3, 12), (8, 50)]:  # other questions, other lengths
        gen(model, tiny_tokenizer, koalpaca_template, (QUESTIONS * 4)[:rows], max_new_tokens=limit, fast=True)
    assert len(compiles) == 2
