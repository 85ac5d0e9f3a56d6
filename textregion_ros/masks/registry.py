"""The mask source registry: name -> (module in this package, class). No imports, so the knob table can read it.

Each class has ``from_config(config, device)`` and the MaskSource interface (base.py).
"""
SOURCES = {
    "sam2": ("sam2_everything", "Sam2Everything"),  # SAM2's automatic mask generator, "segment everything"
    "superpixels": ("superpixels", "Superpixels"),  # SLIC: no model, for CPU-only tests and demos
    "given": ("given", "GivenMasks"),  # masks handed in with each frame (a dataset's, another segmenter's)
}
