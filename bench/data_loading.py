"""Videos per second through the real loader (HDF5 store -> L2 norm -> resample -> IoU maps ->
collate with tokenisation) against the same pipeline reading the same raw arrays from memory, on
one core, for one epoch of the synthetic charades preset at the real benchmark's size.

    python bench/data_loading.py [--data /tmp/g2l-synthetic-charades-full] [--batch-size 48]

The data is generated on first use (tools/make_synthetic.py --size full). Target: the loader
within 2x of the in-memory rate.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from g2l.data.annotations import load_annotations  # noqa: E402
from g2l.data.dataset import Collate, GroundingDataset  # noqa: E402
from g2l.data.features import VideoFeatures  # noqa: E402


class MemoryStore:
    """A FeatureStore look-alike over a dict of raw (T, F) arrays."""

    def __init__(self, arrays: dict):
        self.arrays = arrays

    def __contains__(self, video_id):
        return video_id in self.arrays

    def shape(self, video_id):
        return self.arrays[video_id].shape

    def read(self, video_id):
        return self.arrays[video_id]

    def encoder_spec(self):
        return None


def epoch_rate(dataset, collate, batch_size: int) -> tuple[float, int]:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    videos = 0
    for batch in loader:
        videos += batch.num_videos
    return videos / (time.perf_counter() - start), videos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/tmp/g2l-synthetic-charades-full")
    parser.add_argument("--batch-size", type=int, default=48)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = Path(args.data)
    if not (data / "features.hdf5").is_file():
        from g2l.synthetic.benchmark import generate_synthetic

        print(f"generating the full-size charades preset in {data} ...", flush=True)
        generate_synthetic(data, "charades", 0, size="full")
    annotations, _ = load_annotations(data / "train.json")
    from g2l.models.text_encoder import load_text_backbone

    _, tokenizer = load_text_backbone("minilm")
    collate = Collate(tokenizer, 64)

    disk = GroundingDataset(annotations, VideoFeatures(str(data / "features.hdf5"), num_pre_clips=32), num_clips=16)
    memory_features = VideoFeatures(str(data / "features.hdf5"), num_pre_clips=32)
    store = memory_features.stores[0]
    arrays = {video_id: store.read(video_id) for video_id, _ in disk.videos}
    memory_features.stores = [MemoryStore(arrays)]
    memory = GroundingDataset(annotations, memory_features, num_clips=16)
    size_gb = sum(a.nbytes for a in arrays.values()) / 1e9
    print(f"{len(disk)} training videos, {disk.num_queries} queries, {size_gb:.2f} GB of raw features, batch {args.batch_size}, 1 thread")
    epoch_rate(memory, collate, args.batch_size)  # warm the page cache and the tokenizer
    mem_rate, n = epoch_rate(memory, collate, args.batch_size)
    disk_rate, _ = epoch_rate(disk, collate, args.batch_size)
    print(f"{'in memory':<22} {mem_rate:9.1f} videos/s")
    print(f"{'HDF5 loader':<22} {disk_rate:9.1f} videos/s   ({mem_rate / disk_rate:.2f}x slower; target <= 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
