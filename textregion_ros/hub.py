"""One quick look at the model hub before loading weights, so a machine without it fails fast.

Without this, huggingface_hub retries every download with long timeouts (about a minute in
total at startup on a machine with no route to the hub) before the real error, "these weights
are not in the cache", can be reported. We probe the endpoint once with a short timeout; when it
is unreachable we switch huggingface_hub to offline mode, so cached weights still load and
missing ones fail at once with our message.
"""
from __future__ import annotations

import os
import socket
from urllib.parse import urlparse


def hub_reachable(timeout_s: float = 3.0) -> bool:
    import huggingface_hub.constants as hf

    url = urlparse(hf.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def prefer_cache_when_offline(timeout_s: float = 3.0) -> bool:
    """-> True when the hub is used, False when we went offline (cache only)."""
    import huggingface_hub.constants as hf

    if hf.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "") in ("1", "true", "TRUE", "yes"):
        return False
    if hub_reachable(timeout_s):
        return True
    hf.HF_HUB_OFFLINE = True  # is_offline_mode() reads this at call time
    os.environ["HF_HUB_OFFLINE"] = "1"
    return False
