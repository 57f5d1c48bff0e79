"""kochat.export.llamacpp: llama.cpp opened without the AMX buffers that crash some Intel CPUs; its defaults kept."""
import pytest

from kochat.export import llamacpp
from support import needs_llama_cpp


@needs_llama_cpp
@pytest.mark.parametrize("amx", [True, False])
def test_llama_cpp_loads_without_its_amx_buffers_on_a_cpu_with_amx(amx, tmp_path, monkeypatch):
    """llama.cpp's AMX matrix product crashes on some Intel Xeons (this project's CI machine among them): where the
    CPU has AMX, open_llama loads with llama.cpp's extra weight buffers off, and leaves its defaults as they were."""
    import llama_cpp
    import llama_cpp.llama as llama_module

    info = b"CPU : AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 |" if amx else b"CPU : AVX2 = 1 | REPACK = 1 |"
    monkeypatch.setattr(llama_cpp, "llama_print_system_info", lambda: info)
    loaded = []
    monkeypatch.setattr(llama_cpp, "Llama", lambda **options: loaded.append(
        (options, llama_module.llama_cpp.llama_model_default_params().use_extra_bufts)) or "model")
    assert llamacpp.open_llama(tmp_path / "m.gguf", "testing", n_ctx=8) == "model"
    assert loaded == [({"model_path": str(tmp_path / "m.gguf"), "n_ctx": 8}, not amx)]
    assert llama_module.llama_cpp.llama_model_default_params().use_extra_bufts  # llama.cpp's default, restored
