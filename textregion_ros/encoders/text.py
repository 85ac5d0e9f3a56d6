"""Text side: prompt-template ensembles, synonyms within a label, and a cache.

A label "sofa; couch" holds two synonyms; each is embedded separately and the
label scores the max over them. Each synonym's embedding is the re-normalized
mean of its normalized template embeddings. Embeddings are cached per string,
so a vocabulary or query is encoded once, not per frame.
"""
from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..files import atomic_write
from ..labels import split_synonyms
from .base import ImageTextEncoder

TEMPLATE_SETS: Dict[str, Tuple[str, ...]] = {
    "none": ("{}",),
    "short": ("a photo of a {}.", "a photo of the {}.", "a close-up photo of a {}.", "a photo of a small {}.",
              "a photo of a large {}.", "a cropped photo of a {}.", "a bright photo of a {}."),
    "imagenet": (
        "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
        "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.",
        "a bad photo of the {}.", "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.",
        "a photo of a hard to see {}.", "a bright photo of a {}.", "a photo of a clean {}.",
        "a photo of a dirty {}.", "a dark photo of the {}.", "a drawing of a {}.", "a photo of my {}.",
        "the plastic {}.", "a photo of the cool {}.", "a close-up photo of a {}.",
        "a black and white photo of the {}.", "a painting of the {}.", "a painting of a {}.",
        "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
        "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
        "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
        "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
        "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.",
        "a doodle of the {}.", "a origami {}.", "a low resolution photo of a {}.", "the toy {}.",
        "a rendition of the {}.", "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.",
        "a photo of a nice {}.", "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.",
        "art of a {}.", "a sketch of the {}.", "a embroidered {}.", "a pixelated photo of a {}.",
        "itap of the {}.", "a jpeg corrupted photo of the {}.", "a good photo of a {}.", "a plushie {}.",
        "a photo of the nice {}.", "a photo of the small {}.", "a photo of the weird {}.", "the cartoon {}.",
        "art of the {}.", "a drawing of the {}.", "a photo of the large {}.",
        "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.", "itap of a {}.",
        "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
        "a photo of a small {}.", "a tattoo of the {}."),
}

# Distinct synonyms kept in memory. Queries from the network are unbounded, so the cache is an LRU;
# labels in use are re-embedded only if more than this many other strings came since.
CACHE_SIZE = 4096
# Texts per encoder call when a vocabulary is embedded: bounds the activations (imagenet's 80 templates
# times a few hundred labels would otherwise be one batch of tens of thousands).
TEXT_BATCH = 256


@dataclass
class LabelEmbeddings:
    labels: Tuple[str, ...]
    embeddings: torch.Tensor  # (S, E) one row per synonym, L2-normalized
    group: torch.Tensor  # (S,) label index of each synonym row

    def __len__(self) -> int:
        return len(self.labels)


def disk_cache_dir(model_name: str, weights: str, templates: str, root: Optional[str] = None,
                   variant: str = "") -> str:
    """Where a model's text embeddings persist: keyed by model, weights, the template texts and a variant
    (text_cache_dir: the dtype).

    A checkpoint file is identified by its path, size and modification time, so replacing it
    invalidates the cache; a tag names fixed weights.
    """
    ident = weights
    path = os.path.expanduser(weights) if weights else ""
    if path and os.path.isfile(path):
        st = os.stat(path)
        ident = f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}"
    key = "\n".join([model_name, ident, *TEMPLATE_SETS[templates]] + ([variant] if variant else []))
    root = root or os.environ.get("TEXTREGION_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "textregion_ros", "text")
    return os.path.join(root, hashlib.sha256(key.encode()).hexdigest()[:24])


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A hash of the text side's weights (every parameter and buffer outside ``visual``): what identifies
    random weights, which a tag or a path cannot. 0.2 s for ViT-B-16's 63 M text values on a 2-core CPU."""
    digest = hashlib.sha256()
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if name.startswith("visual."):
            continue
        t = t.detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}{tuple(t.shape)}".encode())
        digest.update(memoryview(t.numpy()).cast("B"))
    return digest.hexdigest()[:24]


def text_cache_dir(encoder: ImageTextEncoder, model_name: str, weights: str, templates: str,
                   random_weights: bool) -> str:
    """The disk cache of a loaded encoder's text embeddings, per dtype (bf16's embeddings are not fp32's).
    Random weights are also keyed by their fingerprint: a draw from the same seed (the node seeds them,
    loading.py) shares its embeddings, another draw never does. The tag stays in the key: its metadata
    (QuickGELU for openai) changes the tower without changing its values."""
    variant = str(encoder.dtype)
    if random_weights:
        variant += "|random:" + weights_fingerprint(encoder.model)
    return disk_cache_dir(model_name, weights, templates, variant=variant)


class TextEmbedder:
    def __init__(self, encoder: ImageTextEncoder, templates: str = "imagenet", cache_size: int = CACHE_SIZE,
                 disk_dir: Optional[str] = None):
        if templates not in TEMPLATE_SETS:
            raise ValueError(f"unknown template set {templates!r}; choose one of {sorted(TEMPLATE_SETS)}")
        self.encoder = encoder
        self.templates = TEMPLATE_SETS[templates]
        self.cache_size = cache_size
        self.disk_dir = disk_dir  # None: memory only (random weights, or caching switched off)
        self._cache: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        self._lock = threading.Lock()  # the node embeds from its inference, text and service threads

    def _disk_path(self, name: str) -> str:
        return os.path.join(self.disk_dir, hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest() + ".pt")

    def _load(self, name: str) -> Optional[torch.Tensor]:
        if not self.disk_dir:
            return None
        try:
            return torch.load(self._disk_path(name), map_location=self.encoder.device, weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError):
            return None  # absent or damaged: embed again

    def _store(self, name: str, emb: torch.Tensor) -> None:
        if not self.disk_dir:
            return
        try:
            os.makedirs(self.disk_dir, exist_ok=True)
            atomic_write(self._disk_path(name), lambda f: torch.save(emb.detach().cpu(), f))
        except OSError:
            pass  # a read-only or full disk only costs the next startup time

    def _cached(self, name: str) -> Optional[torch.Tensor]:
        with self._lock:
            hit = self._cache.get(name)
            if hit is not None:
                self._cache.move_to_end(name)
                return hit
        hit = self._load(name)
        if hit is not None:
            self._remember(name, hit)
        return hit

    def _remember(self, name: str, emb: torch.Tensor) -> None:
        with self._lock:
            self._cache[name] = emb
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def _embed_new(self, names: Sequence[str]) -> List[torch.Tensor]:
        """Names not cached, all templates of all of them in few encoder calls: one call per name was
        mostly per-call overhead (on the CPU 5.8 s against 3.7 s for the default vocabulary)."""
        texts = [t.format(n) for n in names for t in self.templates]
        with torch.inference_mode():
            per_text = torch.cat([self.encoder.encode_text(texts[i:i + TEXT_BATCH])
                                  for i in range(0, len(texts), TEXT_BATCH)])
            means = F.normalize(per_text.view(len(names), len(self.templates), -1).mean(1), dim=-1)
        out = [row.clone() for row in means]  # each its own storage: a cached row must not keep the batch alive
        for name, emb in zip(names, out):
            self._store(name, emb)
            self._remember(name, emb)
        return out

    def embed_names(self, names: Sequence[str]) -> List[torch.Tensor]:
        """Synonyms -> their (E,) template-ensembled, normalized embeddings (LRU- and disk-cached)."""
        found = {n: self._cached(n) for n in dict.fromkeys(names)}
        new = [n for n, e in found.items() if e is None]
        if new:
            found.update(zip(new, self._embed_new(new)))
        return [found[n] for n in names]

    def embed_name(self, name: str) -> torch.Tensor:
        """One synonym -> (E,) template-ensembled, normalized embedding."""
        return self.embed_names([name])[0]

    def embed_labels(self, labels: Sequence[str]) -> LabelEmbeddings:
        labels = tuple(labels)
        pairs = [(i, name) for i, label in enumerate(labels) for name in split_synonyms(label)]
        group = [i for i, _ in pairs]
        rows = self.embed_names([name for _, name in pairs])
        device = self.encoder.device
        if not rows:
            return LabelEmbeddings(labels, torch.zeros((0, 0), device=device), torch.zeros(0, dtype=torch.long))
        return LabelEmbeddings(labels, torch.stack(rows), torch.tensor(group, device=device))