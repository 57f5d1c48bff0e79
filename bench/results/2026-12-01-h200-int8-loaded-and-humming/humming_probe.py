"""humming-kernels' int4 (group 128, zero point) against tinygemm at the 12.8b layer shapes, 1 and 16 rows, CUDA graphs."""
import glob, json, os, sys, time
import torch
out = os.environ["OUT"] + "/humming.json"
res = {"torch": torch.__version__}
def save(): open(out, "w").write(json.dumps(res, indent=1))
res["nvidia_dirs"] = sorted(glob.glob("/opt/torch/.venv/lib/python3.12/site-packages/nvidia/*")) + glob.glob("/usr/local/cuda*")
res["cu13_include"] = sorted(glob.glob("/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/include/*"))[:80]
save()
from humming.layer import HummingLayer
from torchao.quantization import Int4WeightOnlyConfig, quantize_

def timed(fn, reps=50):
    fn(); torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        for _ in range(reps): fn()
    g.replay(); torch.cuda.synchronize()
    t = time.perf_counter(); g.replay(); torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps * 1e6

for n, k in [(15360, 5120), (5120, 5120), (20480, 5120), (5120, 20480)]:
    key = f"{n}x{k}"
    try:
        w = torch.randn(n, k, dtype=torch.bfloat16, device="cuda") / 50
        t0 = time.perf_counter()
        lin = HummingLayer(shape_n=n, shape_k=k, torch_dtype=torch.bfloat16,
                           weight_config={"dtype": "uint4", "group_size": 128, "has_zero_point": True}).cuda()
        lin.load_from_unquantized(w); lin.transform()
        tg = torch.nn.Linear(k, n, bias=False, dtype=torch.bfloat16, device="cuda"); tg.weight.data.copy_(w)
        quantize_(tg, Int4WeightOnlyConfig(group_size=128, int4_packing_format="tile_packed_to_4d", set_inductor_config=False))
        r = {"prepare_s": round(time.perf_counter() - t0, 1)}
        for m in (1, 16):
            x = torch.randn(m, k, dtype=torch.bfloat16, device="cuda")
            ref = x @ w.t()
            y = lin(x); yt = tg(x)
            r[f"m{m}_rel_err_humming"] = float((y - ref).norm() / ref.norm())
            r[f"m{m}_rel_err_tinygemm"] = float((yt - ref).norm() / ref.norm())
            us_h = timed(lambda: lin(x)); us_t = timed(lambda: tg(x)); us_b = timed(lambda: x @ w.t())
            gb = n * k / 2 / 1e9
            r[f"m{m}_us"] = {"humming": round(us_h, 1), "tinygemm": round(us_t, 1), "bf16": round(us_b, 1)}
            r[f"m{m}_tb_s_int4"] = {"humming": round(gb / us_h * 1e3, 2), "tinygemm": round(gb / us_t * 1e3, 2)}
        res[key] = r
    except Exception as e:
        import traceback; res[key] = {"error": traceback.format_exc()[-3000:]}
    print(key, res[key], flush=True); save()
    if "error" in res[key]: break
