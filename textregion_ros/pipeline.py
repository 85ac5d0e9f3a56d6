"""Pipeline: frame -> masks -> region tokens -> labels and grounding. No ROS here.

    pipe = Pipeline(preset("realtime"))
    pipe.set_vocabulary(["red mug", "laptop"], background=["wall", "floor"])
    result = pipe.process(rgb_uint8, queries=["red mug"])
    result.groundings[0].found, instance_map(result)   # compose.instance_map

Models load once in the constructor; text embeddings are cached; everything
per frame stays on the model's device until a caller asks for host values.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import replace
from typing import Callable, Dict, Iterator, Optional, Sequence

import torch

from . import knobs
from .backends import attach_graphs
from .classify import classify, ground, ground_from_scores, query_scores
from .config import PipelineConfig, preset
from .encoders import ImageTextEncoder, create_encoder
from .encoders.text import LabelEmbeddings, TextEmbedder, text_cache_dir
from .files.hub import fetch_weights
from .labels import check_labels
from .masks import MaskSource, create_mask_source, given_masks
from .masks.sam2_everything import Sam2Everything
from .masks.sam2_prompted import Sam2Prompted
from .masks.sam2_propagate import Sam2Propagator, video_model_like
from .frames.image import image_to_tensor  # noqa: F401 (re-exported: the library's image rule)
from .frames.target import TargetParts, target_frame
from .results import FrameResult, Vocabulary, groundings_from
from .tokens import encode_value_map, region_tokens
from .tracks.locks import TargetLocks
from .tracks.tracker import Tracker

# What a query competes with when no background labels are set, so grounding can still abstain.
FALLBACK_BACKGROUND = ("background",)


def prompter_for(source):
    """The Prompter (masks/base.py) for a mask source: itself when it takes prompts, SAM2's prompt decoder on
    the same model for SAM2's everything-mode, otherwise None (target mode is unavailable)."""
    if hasattr(source, "prompt") and hasattr(source, "encode"):
        return source
    return Sam2Prompted(source) if isinstance(source, Sam2Everything) else None


class Pipeline:
    def __init__(self, config: PipelineConfig, encoder: Optional[ImageTextEncoder] = None,
                 mask_source: Optional[MaskSource] = None, log: Optional[Callable[[str], None]] = None):
        config.validate()
        self.config = config
        self.device = config.torch_device()
        self.dtype = config.torch_dtype()
        if encoder is None and mask_source is None:
            fetch_weights(config)  # every missing source named at once, before minutes of model building
        self.encoder = encoder or create_encoder(config.encoder_model, config.encoder_weights,
                                                 config.random_weights, self.device, self.dtype)
        self.mask_source = mask_source or create_mask_source(config, self.device)
        # Exported graphs in place of the units this pipeline built (backends/); given parts stay as given.
        self.backends = attach_graphs(config, None if encoder is not None else self.encoder,
                                      None if mask_source is not None else self.mask_source, log)
        # Target mode's prompt decoder: the mask source itself when it takes prompts, SAM2's otherwise.
        self.prompter = prompter_for(self.mask_source)
        self.propagator: Optional[Sam2Propagator] = None
        if config.target_tracking == "sam2":  # shares SAM2's weights; built before compile wraps them
            self.propagator = Sam2Propagator(video_model_like(self.mask_source.model, config.sam2_model, self.device,
                                                              config.sam2_input_size))
        if config.compile and self.device.type == "cuda":
            self._compile()
        # Text embeddings persist on disk per model, weights and templates (random weights by their hash):
        # a restart does not re-embed the vocabulary. A given encoder is the caller's, maybe changed since.
        disk = None if encoder is not None else text_cache_dir(
            self.encoder, config.encoder_model, config.encoder_weights, config.templates, config.random_weights)
        self.text = TextEmbedder(self.encoder, config.templates, disk_dir=disk)
        self.global_weight = (config.global_weight if config.global_weight is not None
                              else self.encoder.default_global_weight)
        # The alternative a query competes with when the user gives no background labels (ground()).
        self.fallback_background = self.text.embed_labels(FALLBACK_BACKGROUND)
        self.set_vocabulary(config.vocabulary, config.background)

    def _compile(self) -> None:
        """CUDA graphs for the fixed-shape, launch-bound forwards (shapes never change per frame)."""
        mode = "reduce-overhead"
        if self.backends.get("encoder", "torch") == "torch":  # an exported graph is ONNX Runtime's to optimise
            self.encoder.encode_values = torch.compile(self.encoder.encode_values, mode=mode)
        sam = getattr(self.mask_source, "model", None)
        if sam is not None and self.backends.get("sam2", "torch") == "torch":
            sam.image_encoder = torch.compile(sam.image_encoder, mode=mode)
            sam.sam_mask_decoder = torch.compile(sam.sam_mask_decoder, mode=mode)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "Pipeline":
        return cls(preset(name, **overrides))

    # --- text -----------------------------------------------------------
    def prepare_vocabulary(self, labels: Sequence[str], background: Sequence[str] = ()) -> Vocabulary:
        """Validate and embed a vocabulary without touching the one in use (any thread may call it)."""
        labels, background = tuple(labels), tuple(background)
        if not labels and not background:  # nothing to label regions with: each is "background", queries still ground
            background = FALLBACK_BACKGROUND
        check_labels(labels, "vocabulary")
        check_labels(background, "background")
        return Vocabulary(labels + background, len(background), self.text.embed_labels(labels + background),
                          self.text.embed_labels(background) if background else None)

    def use_vocabulary(self, vocab: Vocabulary) -> None:
        """Swap in a prepared vocabulary; a frame in flight keeps the one it started with."""
        self.vocab = vocab

    def set_vocabulary(self, labels: Sequence[str], background: Sequence[str] = ()) -> None:
        self.use_vocabulary(self.prepare_vocabulary(labels, background))

    # Read-only views of the vocabulary in use.
    labels = property(lambda self: self.vocab.labels)
    num_background = property(lambda self: self.vocab.num_background)
    label_emb = property(lambda self: self.vocab.label_emb)
    background_emb = property(lambda self: self.vocab.background_emb)

    def embed_queries(self, queries: Sequence[str]) -> LabelEmbeddings:
        return self.text.embed_labels(queries)

    def ground(self, tokens: torch.Tensor, queries: LabelEmbeddings, vocab: Optional[Vocabulary] = None):
        """Grounding tensors (region, prob, cosine, margin, found) for pre-embedded queries."""
        vocab = vocab or self.vocab
        cfg = self.config
        return ground(tokens, queries, vocab.background_emb or self.fallback_background, cfg.region_logit_scale,
                      cfg.abstain_threshold, self.encoder.sigmoid_logit())

    def query_scores(self, tokens: torch.Tensor, queries: LabelEmbeddings, vocab: Optional[Vocabulary] = None):
        """(R, Q) P(token is the query) and cosines, by the same rule and background as ground()."""
        vocab = vocab or self.vocab
        return query_scores(tokens, queries, vocab.background_emb or self.fallback_background,
                            self.config.region_logit_scale, self.encoder.sigmoid_logit())

    def update(self, **overrides) -> None:
        """Change per-frame knobs at runtime (models are not rebuilt). Each knob reaches the component the
        knob table names as its consumer; knobs of a rebuilt component (knobs.REBUILD) are refused."""
        consumers = {f.name: k.consumer for f, k in knobs.rows(PipelineConfig)}
        rebuild = sorted(k for k in overrides if consumers.get(k) in knobs.REBUILD)
        if rebuild:
            raise ValueError(f"these need a restart: {rebuild}")
        self.config = self.config.replace(**overrides)
        source_knobs = getattr(self.mask_source, "knobs", {})
        for key, attr in source_knobs.items():
            if key in overrides:
                setattr(self.mask_source, attr, overrides[key])
        if "global_weight" in overrides:
            self.global_weight = (overrides["global_weight"] if overrides["global_weight"] is not None
                                  else self.encoder.default_global_weight)
        if "vocabulary" in overrides or "background" in overrides:
            self.set_vocabulary(self.config.vocabulary, self.config.background)

    # --- frames ---------------------------------------------------------
    @contextmanager
    def _stage(self, timings: Dict[str, float], name: str, sync: bool) -> Iterator[None]:
        if sync and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        yield
        if sync and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        timings[name] = time.perf_counter() - t0

    @torch.inference_mode()
    def process(self, image, queries: Sequence[str] = (), masks: Optional[torch.Tensor] = None,
                profile: bool = False, query_embeddings: Optional[LabelEmbeddings] = None,
                keep_views: bool = False) -> FrameResult:
        """One frame. ``masks`` (R, H, W) bypasses the mask source; ``profile`` syncs per stage.

        ``query_embeddings`` (from embed_queries) skips embedding ``queries`` here. ``keep_views`` keeps the
        encoder's per-view features on the result (``views``), for a second head on the same pass (the
        evaluation's dense fill); the node does not hold them.
        """
        cfg = self.config
        vocab = self.vocab  # one snapshot per frame: a swap mid-frame cannot mix two vocabularies
        timings: Dict[str, float] = {}
        img = image_to_tensor(image, self.device)
        frame_hw = (int(img.shape[1]), int(img.shape[2]))
        q_emb = query_embeddings if query_embeddings is not None else self.embed_queries(queries)
        with self._stage(timings, "masks", profile):
            maskset = given_masks(masks.to(self.device)) if masks is not None else self.mask_source.generate(img)
        with self._stage(timings, "encoder", profile):
            fmap = encode_value_map(self.encoder, img, cfg.tiles, cfg.use_global_view, self.global_weight,
                                    keep_views)
        with self._stage(timings, "pooling", profile):
            rt = region_tokens(self.encoder, fmap, maskset.patch_weights(fmap.grid_hw), cfg.remove_global_patches,
                               cfg.global_patch_threshold, cfg.clip_head)
            maskset = maskset.select(rt.kept)
            maskset.counts["tokens"] = int(rt.kept.numel())
        with self._stage(timings, "classify", profile):
            tokens = rt.tokens if len(rt.kept) else torch.zeros((0, vocab.label_emb.embeddings.shape[1]),
                                                                device=self.device)
            classes = classify(tokens, vocab.label_emb, cfg.region_logit_scale, self.encoder.sigmoid_logit())
            grounding = self.ground(tokens, q_emb, vocab)
        return FrameResult(frame_hw=frame_hw, masks=maskset, tokens=tokens, classes=classes, labels=vocab.labels,
                           num_background=vocab.num_background, queries=tuple(q_emb.labels),
                           groundings=groundings_from(q_emb.labels, grounding), region_logit_scale=cfg.region_logit_scale,
                           timings=timings, vocab=vocab, query_embeddings=q_emb,
                           views=fmap.views)

    @torch.inference_mode()
    def track(self, result: FrameResult, tracker: Tracker, locks: Optional[TargetLocks] = None) -> FrameResult:
        """The frame's regions with track ids; labels and groundings from the tracks' smoothed tokens.

        Frames must come in order. With ``locks``, each query's grounding follows its locked target
        (tracks/locks.py). Host traffic: the tracker's (R, T) cost matrix, and the (R, Q) query scores.
        """
        cfg = self.config
        upd = tracker.update(result)
        tokens = upd.tokens.to(result.tokens.dtype)
        vocab = result.vocab or self.vocab
        classes = classify(tokens, vocab.label_emb, cfg.region_logit_scale, self.encoder.sigmoid_logit())
        q_emb = result.query_embeddings if result.query_embeddings is not None else self.embed_queries(
            result.queries)
        if len(q_emb) and len(tokens):  # the (R, Q) scores serve the grounding and the locks
            probs, cos = query_scores(tokens, q_emb, vocab.background_emb or self.fallback_background,
                                      cfg.region_logit_scale, self.encoder.sigmoid_logit())
            grounding = ground_from_scores(probs, cos, cfg.abstain_threshold)
        else:
            probs = cos = tokens.new_zeros((len(tokens), len(q_emb)))
            grounding = self.ground(tokens, q_emb, vocab)
        groundings = groundings_from(q_emb.labels, grounding, upd.track_ids)
        if locks is not None:
            both = torch.stack([probs.float(), cos.float()]).cpu().numpy()
            groundings = locks.update(groundings, both[0], both[1], upd.track_ids, tracker.is_alive)
        return replace(result, tokens=tokens, classes=classes, groundings=groundings, track_ids=upd.track_ids,
                       query_embeddings=q_emb, timings=dict(result.timings))

    def target_parts(self, vocab: Optional[Vocabulary] = None) -> TargetParts:
        """What a target frame (frames/target.py) uses of these models, with one vocabulary snapshot."""
        vocab = vocab or self.vocab
        return TargetParts(self.encoder, self.prompter, self.config, vocab,
                           vocab.background_emb or self.fallback_background, self.global_weight)

    def process_target(self, image, query_embeddings: LabelEmbeddings,
                       boxes: Optional[Dict[str, torch.Tensor]] = None) -> FrameResult:
        """A target-mode frame (frames/target.py): SAM2 decodes only prompts placed by the queries' patch maps,
        and the result holds each query's best candidate. ``boxes``: query -> the previous frame's (4,) box."""
        if not len(query_embeddings):
            raise ValueError("a target-mode frame needs at least one query (without one, process the full frame)")
        return target_frame(self.target_parts(), image_to_tensor(image, self.device), query_embeddings, boxes)
