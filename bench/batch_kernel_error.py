"""How far each int4 kernel's products are from the 16-bit ones, at the 12.8b shape's four weight shapes: what
moving the int4 export onto mslk's kernel for batches (kochat/batch_kernels.py) costs in accuracy. From the
repository root, on an NVIDIA GPU (mslk: Hopper, the mslk-cuda wheel):

    python3 -m bench.batch_kernel_error --out=RESULT.json

Random weights (normal, std 0.02, as a model is initialised) and random inputs (16 rows, normal): real weights
have outliers these lack, so the figures compare the kernels with each other, not with a trained model's loss.
Per shape and kernel, the relative error ||y - y16|| / ||y16|| of the product with the bf16 one (computed in
float32), for: tinygemm (the int4 export); mslk from the export, as serve_ko.py moves it: --batch_kernel=exact
(the same weights, activations in bf16) and fp8 (rounded again, activations in float8); mslk with float8
activations from the 16-bit weights (the same kernel quantizing the original weights once); int8 weight-only
(torchao, the int8 export); and float8 weights and activations with a scale per row (an 8-bit candidate).
"""
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from kochat import cli, runs
from kochat.errors import UserError
from kochat.batch_kernels import onto_batch_kernel

# ---- constants: override on the command line as --name=value ------------------------------------------
OUT = ""                    # the result JSON; required
SHAPES = ["5120x15360", "5120x5120", "5120x20480", "20480x5120"]  # in x out features: polyglot-ko-12.8b's
ROWS = 16                   # input rows
SEED = 0


class Exported(torch.nn.Module):
    """One linear layer dressed as a transformers model with an int4 export's config, as the server sees one."""

    def __init__(self, linear, quantization_config: str):
        super().__init__()
        self.linear, self.device = linear, linear.weight.device
        self.config, self.dtype = type("Config", (), {"quantization_config": quantization_config})(), torch.bfloat16


def main(argv):
    cli.apply_command_line(globals(), argv, {}, {}, Path(__file__), __doc__)
    cli.require(globals(), "OUT")
    if not torch.cuda.is_available():
        raise UserError("this bench measures CUDA kernels and this machine has no NVIDIA GPU")
    from torchao.quantization import (Float8DynamicActivationFloat8WeightConfig,
                                      Float8DynamicActivationInt4WeightConfig, Int4WeightOnlyConfig,
                                      Int8WeightOnlyConfig, PerRow, quantize_)
    results = {"device": torch.cuda.get_device_name(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "versions": runs.versions(),
               "command": " ".join(["python3 -m bench.batch_kernel_error", *argv]), "shapes": {}}
    tinygemm = Int4WeightOnlyConfig(group_size=128, int4_packing_format="tile_packed_to_4d")  # the int4 export's
    torch.manual_seed(SEED)
    for shape in SHAPES:
        k, n = (int(v) for v in shape.split("x"))
        weight = torch.randn(n, k, device="cuda") * 0.02
        x = torch.randn(ROWS, k, device="cuda").bfloat16()
        exact = x.float() @ weight.t()

        def error(linear) -> float:
            with torch.no_grad():
                return round(((linear(x).float() - exact).norm() / exact.norm()).item(), 5)

        def layer(config=None):
            linear = torch.nn.Linear(k, n, bias=False, device="cuda", dtype=torch.bfloat16)
            linear.weight.data.copy_(weight)
            if config is not None:
                quantize_(linear, config)
            return linear
        figures = {"bf16": error(layer())}
        figures["tinygemm int4"] = error(layer(tinygemm))
        for choice, name in (("exact", "mslk int4, from the export"),
                             ("fp8", "mslk int4 + fp8 activations, from the export")):
            exported = Exported(layer(tinygemm), "Int4WeightOnlyConfig()")
            figures[f"moved, {choice}"] = moved = onto_batch_kernel(exported, choice)
            if not moved or "moved onto" not in moved:  # else the figure below would be tinygemm's
                reason = moved or "it needs a Hopper GPU and mslk-cuda"
                raise UserError(f"the export's int4 weights were not moved onto mslk ({reason})")
            figures[name] = error(exported.linear)
        figures["mslk int4 + fp8 activations, from bf16"] = error(
            layer(Float8DynamicActivationInt4WeightConfig(int4_packing_format="preshuffled")))
        figures["int8 weight-only"] = error(layer(Int8WeightOnlyConfig()))
        figures["float8 weights and activations, per row"] = error(
            layer(Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())))
        results["shapes"][shape] = figures
        print(shape, figures, flush=True)
        runs.write_json(Path(OUT), results)


if __name__ == "__main__":
    sys.exit(cli.run(main))
