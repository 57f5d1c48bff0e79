import torch

from bench import row_kernels


def test_int4_levels_pack_two_to_a_byte_and_come_back_as_tinygemm_computes_them():
    torch.manual_seed(0)
    q = torch.randint(0, 16, (4, 256))
    scale_and_zero = torch.rand(2, 4, 2)  # tinygemm's [K/128, N, 2]
    packed = row_kernels.pack_int4(q)
    assert packed.shape == (4, 128) and packed.dtype == torch.uint8
    assert packed[0, 0] == q[0, 0] | (q[0, 64] << 4)  # a group's byte j: its columns j and j + 64
    scale, zero = (scale_and_zero[..., i].t().repeat_interleave(128, dim=1) for i in (0, 1))
    assert torch.equal(row_kernels.dequantize_int4(packed, scale_and_zero), (q - 8) * scale + zero)
