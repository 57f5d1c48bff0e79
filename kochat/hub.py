"""Hub access for air-gapped machines: decide once whether the hub is reachable, and say how to copy a repo in.

Without HF_HUB_OFFLINE=1, every hub call on a machine with no route out retries for about 30 s before
failing. One quick connection attempt decides instead; when it fails, this process works offline
(local folders and the hub cache), exactly as if HF_HUB_OFFLINE=1 had been set.
"""
from __future__ import annotations

import os
import socket
from functools import lru_cache
from urllib.parse import urlparse

from .cli import flag

PROBE_TIMEOUT_S = 3


@lru_cache(maxsize=None)
def use_offline_if_unreachable() -> bool:
    """True if this process works offline (HF_HUB_OFFLINE set, or the hub did not answer)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return True
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return False  # a proxy may reach what a direct connection cannot: let the hub client try
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=PROBE_TIMEOUT_S).close()
        return False
    except OSError:
        import datasets.config

        # Both libraries read these module flags at call time; HF_HUB_OFFLINE=1 sets the same flags at import.
        constants.HF_HUB_OFFLINE = True
        datasets.config.HF_HUB_OFFLINE = True
        print(f"note: {url.hostname} is not reachable, working offline (local folders and the hub cache); "
              f"set HF_HUB_OFFLINE=1 to skip this check")
        return True


def download_hint(repo_id: str, repo_type: str = "model", option: str = "") -> str:
    """How to bring a hub repo into an offline network, as the end of an error message; `option`: the script's
    constant that names it ("" = MODEL_ID for a model, DATA for a dataset)."""
    name = repo_id.split("/")[-1]
    where = f"/models/{name}" if repo_type == "model" else f"./data/{name}"
    option = flag(option or ("MODEL_ID" if repo_type == "model" else "DATA"), where)
    kind = "" if repo_type == "model" else " --repo-type dataset"
    return (f"on a connected machine run `hf download {repo_id}{kind} --local-dir {where}`, copy that folder "
            f"here and pass {option}; HF_HUB_OFFLINE=1 is honoured")
