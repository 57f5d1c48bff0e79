import pytest
import torch

from bench import row_kernels
from kochat.errors import UserError


def test_int4_levels_pack_two_to_a_byte_a_group_s_halves_together():
    torch.manual_seed(0)
    q = torch.randint(0, 16, (4, 256))
    packed = row_kernels.pack_int4(q)
    assert packed.shape == (4, 128) and packed.dtype == torch.uint8
    halves = packed.reshape(4, 2, 64)  # byte j of group g: its columns j (low nibble) and j + 64 (high)
    assert torch.equal((halves & 15).to(torch.int64), q.reshape(4, 2, 2, 64)[:, :, 0])
    assert torch.equal((halves >> 4).to(torch.int64), q.reshape(4, 2, 2, 64)[:, :, 1])


def test_block_sizes_must_be_powers_of_two(monkeypatch):
    monkeypatch.setattr(row_kernels, "WARPS", "2,4,6")
    with pytest.raises(UserError, match="--warps=2,4,6: give powers of 2"):
        row_kernels.numbers("WARPS")
    monkeypatch.setattr(row_kernels, "WARPS", "4,x")
    with pytest.raises(UserError, match="powers of 2"):
        row_kernels.numbers("WARPS")
    monkeypatch.setattr(row_kernels, "WARPS", "4,8")
    assert row_kernels.numbers("WARPS") == [4, 8]


def test_the_fastest_setting_that_fits_is_kept_with_its_error():
    speeds = {(8, 2): 5.0, (16, 2): 3.0, (16, 4): 1.0}  # microseconds; (16, 4) is made not to fit: never kept

    def run(config):  # a kernel whose result is its own time, against an expected 1
        return torch.full((4,), speeds[config["block_n"], config["warps"]])

    def time_us(fn):
        return fn()[0].item()
    best = row_kernels.fastest(time_us, torch.ones(4), {"block_n": [8, 16], "warps": [2, 4]},
                               lambda c: c["warps"] == 2, run, "none fit")
    assert best == {"us": 3.0, "block_n": 16, "warps": 2, "relative_error": 2.0}
    with pytest.raises(UserError, match="none fit"):
        row_kernels.fastest(time_us, torch.ones(4), {"block_n": [8]}, lambda c: False, run, "none fit")
