"""finetune_ko.py --grounded_rows=true: rows with an input are trained as grounded answers, with distractors
drawn from an index, and the run records it."""
import json

from kochat import PROJECT_ROOT
from kochat.documents import grounding, indexing


def test_the_tiny_preset_trains_on_grounded_rows(run_script, tmp_path):
    indexing.update_index(str(PROJECT_ROOT / "data" / "company_docs"), str(tmp_path / "index"), chunk_chars=800,
                          overlap_chars=100, k1=1.2, b=0.9, max_file_bytes=10_000_000)
    result = run_script("finetune_ko.py", "--preset", "tiny", "--grounded_rows=true", "--grounded_index=index",
                        "--max_len=512", "--pack_tokens=1024", "--max_steps=2", "--demo_questions=", "--run_name=g",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "    grounded 66 rows with an input among 2 distractors from index" in result.stdout.splitlines()
    config = json.loads((tmp_path / "outputs" / "g" / "run_config.json").read_text(encoding="utf-8"))
    assert config["constants"]["GROUNDED_ROWS"] is True and config["constants"]["GROUNDED_INDEX"] == "index"
    shown = result.stdout.split("with the input:\n", 1)[1].split("\n[2]", 1)[0]
    assert shown.startswith("      " + grounding.INSTRUCTION) and shown.count("\n      [") == 3  # gold + 2 distractors
