"""Approximate search's candidate fetch on a real library: recall@10 against exact search when the
candidates come by the contrast cosine alone (the first approximate backend) or by the mean of the
two cosines (``fetch_vectors``, the current one), at several candidate counts and probed lists.

    g2l-build-demo --work-dir /tmp/demo-build            # or any folder with the demo's rendered data
    python bench/approximate_real.py /tmp/demo-build/data [--checkpoint C]

The library: every video of the folder's splits (train, val, test: 680 for the demo's default
build) indexed from its features file (``VideoIndex.add_features``) with the model's own moments;
the queries: the distinct val and test sentences. The IVF index is built here exactly (IVF with
about sqrt(moments) lists, Flat), so the rows compare the fetch vectors and nothing else. 680
videos are 92,480 moments: a candidate count is a larger share of them than in a 100k-video
library, so read the rows as how the two fetches compare, not as the recall at 100k.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from g2l.assets import demo_checkpoint  # noqa: E402
from g2l.inference import Grounder  # noqa: E402
from g2l.library import VideoIndex  # noqa: E402
from g2l.library.approximate import fetch_vectors  # noqa: E402
from g2l.library.exact import ExactSearch  # noqa: E402

SETTINGS = [(256, 16), (1024, 16), (1024, 64), (4096, 64)]  # (candidates, probed lists)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", help="a folder with {train,val,test}.json and features.hdf5 (the demo's rendered data)")
    parser.add_argument("--checkpoint", default=str(demo_checkpoint()))
    args = parser.parse_args()
    import faiss
    import h5py

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    data = Path(args.data)
    grounder = Grounder.from_checkpoint(args.checkpoint, device="cpu")
    splits = {split: json.loads((data / f"{split}.json").read_text()) for split in ("train", "val", "test")
              if (data / f"{split}.json").is_file()}
    durations = {video: entry["duration"] for entries in splits.values() for video, entry in entries.items()}
    with tempfile.TemporaryDirectory() as tmp, h5py.File(data / "features.hdf5", "r") as features:
        with VideoIndex.create(Path(tmp) / "index", grounder) as index:
            index.add_features([(v, np.asarray(features[v], np.float32), durations[v]) for v in sorted(durations)],
                               grounder)
        blocks = VideoIndex.open(Path(tmp) / "index", grounder)._blocks()
    queries = sorted({s for split in ("val", "test") for e in splits.get(split, {}).values() for s in e["sentences"]})
    s_c, s_u = grounder.query_embeddings(queries)
    exact = ExactSearch(blocks, gamma=grounder.cfg.eval.score_gamma)
    scores = [exact.scores(c, u) for c, u in zip(s_c, s_u)]
    wanted = [set(exact.rank(s, top_k=10, per_video=None, nms_thresh=0.5)) for s in scores]
    cells_c = np.concatenate([np.asarray(b.cells_c, np.float32) for b in blocks])
    cells_u = np.concatenate([np.asarray(b.cells_u, np.float32) for b in blocks])
    moments = len(cells_c)
    print(f"{len(durations)} videos, {moments} moments, {len(queries)} queries; {args.checkpoint}")
    for name, stored, asked in (("contrast cosine", cells_c, s_c), ("mean of both cosines", fetch_vectors(cells_c, cells_u),
                                                                     fetch_vectors(s_c, s_u))):
        nlist = int(round(np.sqrt(moments)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(stored.shape[1]), stored.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(np.ascontiguousarray(stored, np.float32))
        index.add(np.ascontiguousarray(stored, np.float32))
        for candidates, nprobe in SETTINGS:
            index.nprobe = nprobe
            _, ids = index.search(np.ascontiguousarray(asked, np.float32), candidates)
            recalls = []
            for row, full, want in zip(ids, scores, wanted):
                row = np.unique(row[row >= 0])
                kept = np.full(moments, -np.inf, np.float32)
                kept[row] = full[row]
                recalls.append(len(want & set(exact.rank(kept, top_k=10, per_video=None, nms_thresh=0.5))) / 10)
            print(f"  by the {name:<20}: {candidates:>5} candidates ({100 * candidates / moments:.1f}% of the "
                  f"moments), {nprobe:>2} of {nlist} lists: recall@10 {np.mean(recalls):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
