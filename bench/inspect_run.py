"""What a run folder's adapter and each checkpoint hold: tensors, values, empty ones, layers whose lora_B has
left zero (LoRA starts lora_B at zero: non-zero means trained and saved), and each checkpoint's files and sizes.
From the repository root:

    python3 -m bench.inspect_run --run=/tmp/run-fsdp-2

bench/several_gpus.sh and bench/fsdp_resume.sh print it for their FSDP runs (the Trainer's own FSDP checkpoints
once held an adapter of 0 bytes: bench/results/2026-11-30-h200x2-fsdp/).
"""
import sys
from pathlib import Path

from safetensors.torch import load_file

from kochat import cli
from kochat.errors import UserError

# ---- constants: override on the command line as --name=value ------------------------------------------
RUN = ""    # a finetune_ko.py run folder; required


def adapter_line(path: Path) -> str:
    if not path.is_file():
        return "missing"
    weights = load_file(str(path))
    trained = sum(1 for k, t in weights.items() if "lora_B" in k and t.abs().sum() > 0)
    return (f"{len(weights)} tensors, {sum(t.numel() for t in weights.values()):,} values, "
            f"empty {sum(t.numel() == 0 for t in weights.values())}, lora_B non-zero {trained}")


def main(argv):
    cli.apply_command_line(globals(), argv, {}, {}, Path(__file__), __doc__)
    cli.require(globals(), "RUN")
    run = Path(RUN)
    if not run.is_dir():
        raise UserError(f"--run={RUN} is not a folder")
    print("final adapter:", adapter_line(run / "adapter_model.safetensors"))
    for checkpoint in sorted((run / "checkpoints").glob("checkpoint-*")):
        print(checkpoint.name)
        for f in sorted(p for p in checkpoint.rglob("*") if p.is_file()):
            print(f"   {f.relative_to(checkpoint)} {f.stat().st_size:,}")
        print("   adapter:", adapter_line(checkpoint / "adapter_model.safetensors"))


if __name__ == "__main__":
    sys.exit(cli.run(main))
