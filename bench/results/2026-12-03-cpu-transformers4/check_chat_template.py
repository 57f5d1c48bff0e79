import sys
from transformers import AutoTokenizer
t = AutoTokenizer.from_pretrained(sys.argv[1])
print(repr(t.apply_chat_template([{"role": "system", "content": "도우미"}, {"role": "user", "content": "안녕"}], tokenize=False, add_generation_prompt=True)))
