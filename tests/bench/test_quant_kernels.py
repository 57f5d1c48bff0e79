import torch

from bench import quant_kernels
from kochat import decode_attention


def test_one_row_flash_attends_a_static_cache_as_a_pool_of_one_row(monkeypatch):
    """--one_row_flash: one row's new token on a static cache (a GQA model's: 8 query heads on 2 key/value heads) goes
    to decode_attention.pooled_flash with the cache as a pool of one row, and gives what gen()'s attention gives; the
    pool's plain products stand in for FlashAttention's kernel on the CPU."""
    torch.manual_seed(0)
    module = type("Attention", (), {"num_key_value_groups": 4})()
    query = torch.randn(1, 8, 1, 16)
    key, value = torch.randn(1, 2, 32, 16), torch.randn(1, 2, 32, 16)
    mask = torch.zeros(1, 1, 1, 32, dtype=torch.bool)
    mask[..., :11] = True  # 11 slots written, the static cache's rest not yet
    expected, _ = decode_attention.attention(module, query, key, value, mask, scaling=0.25)
    pooled = []
    monkeypatch.setattr(decode_attention, "flash_runs", lambda q: True)
    monkeypatch.setattr(decode_attention, "pooled_flash", lambda *a: pooled.append(a[3]) or
                        decode_attention.pooled_products(*a))
    attend = quant_kernels.one_row_flash(decode_attention.attention)
    out, _ = attend(module, query, key, value, mask, scaling=0.25)
    assert len(pooled) == 1 and pooled[0].tolist() == [[True] * 11 + [False] * 21]
    assert out.shape == expected.shape == (1, 1, 8, 16) and torch.allclose(out, expected, atol=1e-5)
    two_rows = query.expand(2, -1, -1, -1)  # a batch, or a prompt of several tokens: as before
    attend(module, two_rows, key.expand(2, -1, -1, -1), value.expand(2, -1, -1, -1), mask.expand(2, -1, -1, -1),
           scaling=0.25)
    assert len(pooled) == 1
