"""One quick look at the model hub before loading weights, so a machine without it fails fast.

Without this, huggingface_hub retries every download with long timeouts (about a minute in
total at startup on a machine with no route to the hub) before the real error, "these weights
are not in the cache", can be reported. We send the endpoint one request with a short timeout;
when it gets no answer we switch huggingface_hub to offline mode, so cached weights still load
and missing ones fail at once with our message. Nothing is probed when every weight is a local file.
"""
from __future__ import annotations

import os
import urllib.error
import urllib.request


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """One real HTTP request to the hub's endpoint. Connecting is not enough: a proxy or firewall that
    accepts TCP but fails TLS would pass a connect probe, and huggingface_hub would then retry for a minute."""
    import huggingface_hub.constants as hf

    try:
        urllib.request.urlopen(urllib.request.Request(hf.ENDPOINT.rstrip("/") + "/api/whoami-v2", method="HEAD"),
                               timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return True  # the hub answered (401 without a token): it is reachable
    except (OSError, ValueError):  # URLError, TLS errors, timeouts, refused, bad endpoint
        return False
    return True


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


def uses_hub(config) -> bool:
    """Does loading ``config`` (a PipelineConfig) need the hub at all (not when every source is a local file)?"""
    if config.random_weights:
        return False
    local = lambda w: bool(w) and os.path.isfile(os.path.expanduser(w))  # noqa: E731
    return not local(config.encoder_weights) or (config.mask_source == "sam2" and not local(config.sam2_weights))


def fetch_weights(config) -> None:
    """Every weight file ``config`` needs, local before any model is built: one error names all that are missing."""
    from ..encoders.weights import WeightsUnavailableError, fetch_open_clip

    missing = []
    try:
        fetch_open_clip(config.encoder_model, config.encoder_weights, config.random_weights)
    except WeightsUnavailableError as exc:
        missing.append(f"image-text encoder: {exc}")
    if config.mask_source == "sam2":
        from ..masks.sam2_build import fetch_sam2

        try:
            fetch_sam2(config.sam2_model, config.sam2_weights, config.random_weights)
        except WeightsUnavailableError as exc:
            missing.append(f"SAM2: {exc}")
    if len(missing) == 1:
        raise WeightsUnavailableError(missing[0])
    if missing:
        raise WeightsUnavailableError(f"{len(missing)} weight sources are missing:\n" +
                                      "\n".join(f"({i + 1}) {m}" for i, m in enumerate(missing)))
