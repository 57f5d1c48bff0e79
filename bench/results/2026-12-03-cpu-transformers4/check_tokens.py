import sys, json
from transformers import AutoTokenizer
t = AutoTokenizer.from_pretrained(sys.argv[1])
print(json.dumps({"cls": type(t).__name__, "ids": t("### 질문: 한국의 수도는?<|endoftext|><|sep|>")["input_ids"], "eos": t.eos_token, "eos_id": t.eos_token_id, "pad": t.pad_token, "pad_id": t.pad_token_id,
 "special": sorted(t.all_special_tokens), "decode": t.decode([480, 534, 2, 3])}, ensure_ascii=False))
