"""Good-only anomaly detection: a model taught from good units alone.

A pretrained backbone turns a region of interest into patch features (one ONNX file,
FP32 reference and INT8 Q/DQ, like the detector); a memory of good-unit patch features
(a coreset of them) is the model of "good"; a patch is as anomalous as its distance to
the nearest remembered good patch. Deploy modules (`features`, `memory`, `model`) import
neither torch nor any training code; `export` and `fit` are the teaching side.
"""
