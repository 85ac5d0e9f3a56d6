"""The exported units as plain torch modules: what an ONNX graph computes, cut at the pipeline's own seams.

Each module calls the same code the torch backend runs (sam2's modules as Sam2Everything drives them,
the encoder family's ``encode_values``), so an exported graph and the eager path cannot drift apart:

* ``Sam2ImageGraph``: the normalised SAM2 input -> the image embedding and the two high-resolution maps
  (Sam2Everything.torch_maps);
* ``Sam2PromptGraph``: those maps with a batch of point prompts (a box enters as its two corners, labels
  2 and 3, as sam2's predictor feeds it) -> all four low-resolution masks and their IoUs; the caller keeps
  the multimask three or the single mask, so one graph serves both settings of the runtime knob;
* ``TrunkGraph``: encoder views -> the value features and the last block's input (ValueFeatures).
"""
from __future__ import annotations

import torch


class Sam2ImageGraph(torch.nn.Module):
    def __init__(self, sam):
        super().__init__()
        self.sam = sam  # a masks.sam2_everything.Sam2Everything
        self.model = sam.model  # registered, so the graph's weights are the module's

    def forward(self, x: torch.Tensor):
        image_embed, high_res = self.sam.torch_maps(x)
        return (image_embed, *high_res)


class Sam2PromptGraph(torch.nn.Module):
    def __init__(self, sam):
        super().__init__()
        self.sam = sam
        self.model = sam.model

    def forward(self, image_embed, high_res_0, high_res_1, coords, labels):
        return self.sam.all_prompt_masks(image_embed, [high_res_0, high_res_1], coords, labels)


class TrunkGraph(torch.nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.model = encoder.model

    def forward(self, pixels: torch.Tensor):
        feats = self.encoder.torch_values(pixels)
        return feats.values, feats.block_input
