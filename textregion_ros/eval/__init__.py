"""Quality evaluation: the TextRegion paper's protocols on a user's data (no ROS here).

    textregion-eval semantic  --layout voc --root VOCdevkit/VOC2012 --classes cls_voc21.txt --preset paper
    textregion-eval referring --refs refcoco_val.jsonl --images train2014 --preset paper
    textregion-eval convert-refcoco --refer-dir refcoco --split val --out refcoco_val.jsonl

metrics.py (confusion matrix, IoU, referring tallies), protocol.py (the official label-map rule and
referring box rule), datasets.py (layouts and loaders), run.py (the loops, per-image cache),
report.py (JSON, Markdown, plots), refcoco.py (the refer converter), cli.py (the command).
"""
