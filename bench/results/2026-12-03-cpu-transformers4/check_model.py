"""Load a merged folder with whatever transformers is on the path; print the logits of fixed ids and the tokens."""
import sys, json, torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
folder = sys.argv[1]
out = {"version": transformers.__version__}
try:
    tok = AutoTokenizer.from_pretrained(folder)
    out["ids"] = tok("### 질문: 한국의 수도는?\n\n### 답변:")["input_ids"]
    out["tokenizer"] = type(tok).__name__
except Exception as e:
    out["tokenizer_error"] = f"{type(e).__name__}: {str(e)[:200]}"
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32) if transformers.__version__.startswith("5") else AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
c = model.config
out["rotary"] = getattr(c, "rotary_pct", None) or (getattr(c, "rope_parameters", None) or {}).get("partial_rotary_factor")
with torch.no_grad():
    logits = model(torch.tensor([[5, 17, 300, 42, 99, 7, 1000, 3]])).logits[0, -1]
out["logits"] = logits[:8].tolist()
print(json.dumps(out))
