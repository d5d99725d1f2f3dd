"""Corpus retrieval and the match decision of a trained model on a split (issue 27, items 3 and 4).

    python bench/corpus.py --checkpoint CKPT [--fit-split val] [--split test] [--refit] [key=value ...]

Encodes the fit and test splits once (g2l/eval/corpus.py), prints on the test split the corpus
R@{1,5,10,100} at IoU {0.5, 0.7} beside single-video R@k, video retrieval R@{1,10}, the AUROC of
a query's best score over the library with its own video against without it (leave-one-video-out),
and the match precision and recall at the threshold stored in the checkpoint (or, with --refit or
when it has none, the threshold fitted on --fit-split). Then the best score over the test library
of a few sentences that describe nothing in it, against the threshold, and where it falls among
the real queries' best scores. Also the time of the corpus pass (encoding apart); noisy on a
shared machine.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from g2l.data.dataset import build_dataset  # noqa: E402
from g2l.eval.corpus import (  # noqa: E402
    CORPUS_IOU_THRESHOLDS,
    CORPUS_RECALL_AT,
    corpus_metrics,
    corpus_scores,
    encode_split,
    format_corpus_table,
)
from g2l.eval.match import auroc, fit_threshold, precision_recall  # noqa: E402
from g2l.models.checkpoint import load_model_source, model_from_checkpoint  # noqa: E402

NONSENSE = ["a dog jumps over a car.", "the chef slices an onion.", "a man plays the guitar on stage.",
            "two people shake hands."]


def encoded(model, cfg, split):
    dataset, _ = build_dataset(cfg.data, split, cfg.model.num_clips)
    return encode_split(model, dataset, device=torch.device("cpu"), batch_size=cfg.eval.batch_size,
                        max_tokens=cfg.model.text_max_tokens)


def evaluate(embeddings, cfg):
    e = cfg.eval
    start = time.perf_counter()
    result = corpus_metrics(embeddings, gamma=e.score_gamma, nms_thresh=e.nms_thresh,
                            single_recall_at=sorted(set(e.recall_at) | set(CORPUS_RECALL_AT)),
                            single_iou_thresholds=sorted(set(e.iou_thresholds) | set(CORPUS_IOU_THRESHOLDS)))
    return result, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--fit-split", default="val")
    parser.add_argument("--refit", action="store_true", help="fit on --fit-split even if the checkpoint has a threshold")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(1)
    payload, source = load_model_source(args.checkpoint)
    model, cfg = model_from_checkpoint(payload, source, args.overrides)
    model.eval()

    test = encoded(model, cfg, args.split)
    result, seconds = evaluate(test, cfg)
    print(f"{args.checkpoint} on the {args.split} split ({len(test.queries)} queries, {len(test.video_ids)} videos); "
          f"corpus pass {seconds:.2f} s after encoding")
    print(format_corpus_table(result.metrics))
    absent = result.absent[np.isfinite(result.absent)]
    print(f"match AUROC (own video in the library vs not), {args.split}: {100 * auroc(result.present, absent):.2f}")

    match = payload.get("match")
    if match is None or args.refit:
        fit_result, _ = evaluate(encoded(model, cfg, args.fit_split), cfg)
        match = fit_threshold(fit_result.present, fit_result.absent, f"{args.fit_split} split").as_dict()
        print(f"threshold fitted here on the {args.fit_split} split: {match['threshold']:.4f} "
              f"(there: precision {100 * match['precision']:.2f}, recall {100 * match['recall']:.2f}, "
              f"AUROC {100 * match['auroc']:.2f})")
    else:
        print(f"threshold stored in the checkpoint: {match['threshold']:.4f} ({match.get('fitted_on')})")
    precision, recall = precision_recall(result.present, result.absent, match["threshold"])
    print(f"match at that threshold on {args.split}: precision {100 * precision:.2f}, recall {100 * recall:.2f} "
          "(positives: best over the whole library; negatives: best over the library without the query's video and "
          "any other annotated with its sentence)")

    with torch.inference_mode():
        tokens = model.tokenizer(NONSENSE, padding=True, truncation=True, max_length=cfg.model.text_max_tokens,
                                 return_tensors="pt")
        s_c, s_u = model.encode_text(tokens["input_ids"], tokens["attention_mask"])
        best = corpus_scores(s_c, s_u, test.cells_contrast, test.cells_iou, cfg.eval.score_gamma).amax(dim=(1, 2))
    for sentence, score in zip(NONSENSE, best.tolist()):
        above = float((result.present < score).mean())
        print(f"  {sentence!r}: best {score:.4f} -> match {score >= match['threshold']}; above {100 * above:.0f}% of "
              "the real queries' best scores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
