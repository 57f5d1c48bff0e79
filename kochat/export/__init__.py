"""Export a run for the engines a company runs: `merged` (a 16-bit transformers folder, for vLLM too),
`quantized` (int8/int4 weight-only with torchao, for chat_ko.py and serve_ko.py), `gguf` (llama.cpp, Ollama).
export_ko.py is the entry point."""
