"""How often the out-of-domain warning fires (g2l/data/domain.py): the share of videos a model
flags, on videos like its training ones and on real footage.

    python bench/domain_rates.py CHECKPOINT --group NAME=FOLDER_OR_HDF5 ... [--photos 12]

Each ``--group`` is a folder of videos (decoded and encoded as ``g2l-ground`` does) or a feature
file (HDF5, one (T, F) array per video, as ``g2l-extract`` writes). ``--photos N`` adds a group of
N videos built from real photographs (scikit-learn's sample images, China and a flower): shots of
2-6 s that pan and zoom across one photograph (or its mirror image), cut from one to the next,
written with PyAV (``write_photo_video``). Prints, per group, the videos, the share flagged and
the distances' median and range beside the model's threshold.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch


def write_photo_video(path: Path, *, seconds: float = 30.0, fps: int = 8, size: tuple[int, int] = (160, 120),
                      seed: int = 0) -> Path:
    """A video of real photographs: shots of 2-6 s, each panning (and slowly zooming) across one of
    scikit-learn's sample images, possibly mirrored, with hard cuts between shots; mp4 (libx264)."""
    import av
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    photos = [np.asarray(image) for image in load_sample_images().images]  # (427 640 3) uint8 each
    width, height = size
    frames, total = [], int(round(seconds * fps))
    while len(frames) < total:
        photo = photos[rng.integers(len(photos))]
        if rng.random() < 0.5:
            photo = photo[:, ::-1]
        length = int(rng.integers(2 * fps, 6 * fps + 1))
        zoom0, zoom1 = rng.uniform(0.35, 0.9, size=2)  # the crop's share of the photograph, start and end
        x0, y0, x1, y1 = rng.uniform(0, 1, size=4)  # where the crop sits, start and end
        for i in range(length):
            a = i / max(length - 1, 1)
            zoom, cx, cy = zoom0 + a * (zoom1 - zoom0), x0 + a * (x1 - x0), y0 + a * (y1 - y0)
            crop_h = int(photo.shape[0] * zoom)
            crop_w = min(int(crop_h * width / height), photo.shape[1])
            top = int(cy * (photo.shape[0] - crop_h))
            left = int(cx * (photo.shape[1] - crop_w))
            crop = Image.fromarray(np.ascontiguousarray(photo[top:top + crop_h, left:left + crop_w]))
            frames.append(np.asarray(crop.resize((width, height), Image.BILINEAR)))
    rate = Fraction(fps)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.options = {"crf": "23", "preset": "veryfast", "bf": "0"}
        for i, image in enumerate(frames[:total]):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def group_verdicts(grounder, source: Path) -> list[dict]:
    """``Grounder.domain_check`` of every video of a folder (encoded from the file) or feature file."""
    if source.is_dir():
        return [grounder.domain_check(grounder.encode_video(path)) for path in sorted(source.glob("*.mp4"))]
    import h5py

    with h5py.File(source, "r") as h5:
        return [grounder.domain_check(grounder.encode_features(h5[key][()], float(len(h5[key]))))
                for key in sorted(h5.keys()) if isinstance(h5[key], h5py.Dataset)]


def report(name: str, verdicts: list[dict], threshold: float) -> str:
    d = np.array([v["distance"] for v in verdicts])
    flagged = sum(v["outside"] for v in verdicts)
    return (f"{name:<28} {len(d):>6} videos  flagged {flagged:>4} ({100 * flagged / max(len(d), 1):5.1f}%)  "
            f"distance median {np.median(d):7.3f}  range {d.min():7.3f}-{d.max():7.3f}  (threshold {threshold:.3f})")


def main() -> int:
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--group", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--photos", type=int, default=12, help="real-photo videos to build and check")
    parser.add_argument("--photo-seconds", type=float, default=30.0)
    args = parser.parse_args()
    from g2l.inference import Grounder

    grounder = Grounder.from_checkpoint(args.checkpoint, device="cpu")
    if grounder.domain is None:
        print(f"{args.checkpoint} has no domain summary (fit one with g2l-eval --fit-domain)", file=sys.stderr)
        return 1
    threshold = float(grounder.domain["threshold"])
    print(f"{args.checkpoint}: summary of {grounder.domain['num_videos']} training videos, training distances "
          f"{grounder.domain['quantiles']}, threshold {threshold:.3f}")
    for spec in args.group:
        name, _, path = spec.partition("=")
        print(report(name, group_verdicts(grounder, Path(path)), threshold), flush=True)
    if args.photos:
        with tempfile.TemporaryDirectory() as folder:
            for seed in range(args.photos):
                write_photo_video(Path(folder) / f"photos_{seed:02d}.mp4", seconds=args.photo_seconds, seed=seed)
            print(report("real photographs", group_verdicts(grounder, Path(folder)), threshold), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
