import pytest
import torch

from transformers.cache_utils import StaticLayer

from kochat import generation, kv_cache, modeling, tiny
from kochat.generation import gen
from kochat.kv_cache import Int8CacheLayer, cache_bytes, from_int8_rows, static_cache, to_int8_rows

QUESTIONS = ["한국의 수도는 어디인가요?", ("다음 단어의 반대말을 쓰세요.", "크다"), "하늘은 왜 파란가요?",
             "김치는 어떻게 만드나요? 자세히 알려 주세요."]


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    return modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False).eval()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_int8_rows_keep_each_vector_within_half_a_step_of_its_own_scale(dtype):
    states = torch.randn(2, 4, 7, 64, dtype=dtype) * torch.logspace(-3, 2, 7)[:, None].to(dtype)  # rows of all sizes
    states[0, 0, 0] = 0  # a row of zeros stays zeros
    rows = to_int8_rows(states)
    assert rows.dtype == torch.int8 and rows.shape == (2, 4, 7, 65)
    back = from_int8_rows(rows, dtype)
    assert back.dtype == dtype and (back[0, 0, 0] == 0).all()
    largest = states.float().abs().amax(-1, keepdim=True)
    error = (back.float() - states.float()).abs()
    assert (error <= largest / 127 * 2 ** 0.25 / 2 + torch.finfo(dtype).eps * states.float().abs()).all()  # half a
    # step (the scale a power of 2 ** (1/4) at most that much above largest / 127), and the dtype's own rounding


def test_cache_bytes_is_what_the_model_dtype_cache_holds(model, tiny_tokenizer, koalpaca_template):
    cache = static_cache(model, 4, 128, eight_bit=False)
    ids = torch.tensor([tiny_tokenizer("안녕하세요")["input_ids"]] * 4)
    model(input_ids=ids, past_key_values=cache, use_cache=True)
    held = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
    assert held == cache_bytes(model.config, 4, 128, model.dtype.itemsize)
    eight = static_cache(model, 4, 128, eight_bit=True)
    model(input_ids=ids, past_key_values=eight, use_cache=True)
    assert all(isinstance(layer, Int8CacheLayer) and layer.keys.dtype == torch.int8 for layer in eight.layers)
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    assert sum(layer.keys.nbytes + layer.values.nbytes for layer in eight.layers) == \
        held * (head_dim + 1) // (head_dim * 4)  # a byte a value and one a row, against float32's 4 bytes a value


def test_auto_takes_8_bits_only_where_the_model_dtype_cache_would_not_fit(model, monkeypatch):
    assert not any(isinstance(layer, Int8CacheLayer) for layer in static_cache(model, 16, 512, None).layers)  # a CPU
    need = cache_bytes(model.config, 16, 512, model.dtype.itemsize) + kv_cache.HEADROOM_GIB * 2**30
    monkeypatch.setattr(kv_cache, "free_bytes", lambda device: need - 1)
    assert all(isinstance(layer, Int8CacheLayer) for layer in static_cache(model, 16, 512, None).layers)
    monkeypatch.setattr(kv_cache, "free_bytes", lambda device: need)
    assert not any(isinstance(layer, Int8CacheLayer) for layer in static_cache(model, 16, 512, None).layers)


def test_an_8_bit_cache_answers_as_the_model_dtype_cache(model, tiny_tokenizer, koalpaca_template, monkeypatch):
    made = []
    monkeypatch.setattr(generation, "static_cache", lambda *args: made.append(static_cache(*args)) or made[-1])
    full, eight = (gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS, max_new_tokens=40, fast=True,
                       cache_8bit=bits) for bits in (False, True))
    assert [type(cache.layers[0]) for cache in made] == [StaticLayer, Int8CacheLayer]
    assert made[1].layers[0].keys.dtype == torch.int8  # the answers below came through it
    assert [a.text for a in eight] == [a.text for a in full] and all(a.text for a in full)
