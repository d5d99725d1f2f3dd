"""Independent reference implementations that the tests compare g2l with, one file per thing
referenced (each file's docstring says what it references and where it comes from). Test code only:
nothing in g2l or bench/ imports these.

- ``mmn.py``: MMN's published evaluation (IoU, score map to moments, NMS, recall).
- ``moment_detr_eval.py``: Moment-DETR's QVHighlights standalone evaluation.
- ``moment_detr_clip.py``: Moment-DETR's CLIP video feature extractor.
- ``geodesic_closeness.py``: the geodesic closeness G from its definition (numpy kNN graph, scipy Dijkstra).
- ``shapley_interaction.py``: the pairwise Shapley interaction by exact enumeration, and the plain
  Monte Carlo estimator (Numba, and plain Python drawing the same coalitions).
- ``shapley_values.py``: the word Shapley sampler that g2l/ops/shapley_values.py replaced.
- ``moment_map_full.py``: the map encoder computed on its whole padded grid (what the cropped map equals).
- ``losses_ablation_2026_12.py``: the loss terms of the code at git tag ablation-2026-12; a script that
  writes tests/losses/data/reference_losses.json.
"""
