"""What the feature cache's key and checks cost on a 30-minute video (g2l/feature_cache.py): the
stat key it uses against a content hash of the whole file (and a sampled one), the cost of checking
an entry when it is loaded, and, for scale, encoding such a video.

    python bench/cache_key.py [--minutes 30] [--size 1280x720] [--fps 30] [--bitrate 2000000] [--repeats 5]
                              [--workdir DIR] [--encode-full]

The video: a 60-second H.264 segment (PyAV, libx264 ultrafast, a moving square over noise, so that
the encoder spends its bitrate) remuxed end to end to ``--minutes`` (a real, playable file of a
30-minute 720p video's usual size, 400-600 MB, made in well under a minute). Warm: the file in
the page cache; cold: its pages dropped first (``posix_fadvise(DONTNEED)``, this file only), so
the read comes from disk. Each figure is the median of ``--repeats``. Encoding is timed on the
first 60 s and scaled to the whole length (``--encode-full`` times the whole file: minutes).
"""

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SEGMENT_S = 60
CHUNK_BYTES = 1 << 20


def write_segment(path: Path, width: int, height: int, fps: int, bitrate: int) -> None:
    import av

    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 40, (height, width, 3), dtype=np.uint8) for _ in range(8)]
    base = np.zeros((height, width, 3), np.uint8)
    base[..., 0] = np.linspace(0, 200, width, dtype=np.uint8)[None]
    side = height // 4
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate, stream.options = bitrate, {"preset": "ultrafast"}
        for i in range(SEGMENT_S * fps):
            frame = base + noise[i % len(noise)]
            x = (i * 9) % (width - side)
            frame[side:2 * side, x:x + side] = (i % 255, 200, 90)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def remux_repeated(segment: Path, out: Path, times: int) -> None:
    """``segment`` played ``times`` times in a row, as one file (packets copied, timestamps shifted)."""
    import av

    with av.open(str(segment)) as source:
        stream = source.streams.video[0]
        packets = [(bytes(p), p.pts, p.dts, p.duration, p.is_keyframe) for p in source.demux(stream) if p.size]
        span = max(pts + (duration or 0) for _, pts, _, duration, _ in packets) - min(p[1] for p in packets)
        with av.open(str(out), "w") as target:
            copy = target.add_stream_from_template(stream)
            for repeat in range(times):
                for data, pts, dts, duration, keyframe in packets:
                    packet = av.Packet(data)
                    packet.pts, packet.dts = pts + repeat * span, dts + repeat * span
                    packet.duration, packet.is_keyframe, packet.time_base = duration, keyframe, stream.time_base
                    packet.stream = copy
                    target.mux(packet)


def drop_from_page_cache(*paths: Path) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def hash_whole(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb", buffering=0) as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def hash_sampled(path: Path, samples: int = 16, block: int = 64 * 1024) -> str:
    """The size and ``samples`` blocks spread evenly over the file (first and last included)."""
    size = os.stat(path).st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb", buffering=0) as file:
        for offset in np.linspace(0, max(0, size - block), samples).astype(np.int64):
            file.seek(int(offset))
            digest.update(file.read(block))
    return digest.hexdigest()


def timed(function, repeats: int, before=None) -> float:
    runs = []
    for _ in range(repeats):
        if before:
            before()
        start = time.perf_counter()
        function()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def old_load(entry: Path) -> None:
    """The cache's load before this change: np.load and a finite check, nothing else."""
    with np.load(entry, allow_pickle=False) as data:
        features = np.asarray(data["features"], dtype=np.float32)
        float(data["duration_s"])
    assert np.isfinite(features).all()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--bitrate", type=int, default=2_000_000, help="bits per second of the generated video")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", default=None, help="keep the generated video here (reused when present)")
    parser.add_argument("--encode-full", action="store_true", help="time encoding the whole video (minutes)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from g2l.assets import demo_checkpoint
    from g2l.feature_cache import FeatureCache
    from g2l.inference import EncodedVideo, Grounder
    from g2l.video.decoding import read_video_frames

    width, height = map(int, args.size.split("x"))
    temporary = None if args.workdir else tempfile.TemporaryDirectory()
    work = Path(args.workdir or temporary.name)
    work.mkdir(parents=True, exist_ok=True)
    segment, video = work / f"segment-{args.size}.mp4", work / f"video-{args.minutes}min-{args.size}.mp4"
    started = time.perf_counter()
    if not video.exists():
        write_segment(segment, width, height, args.fps, args.bitrate)
        remux_repeated(segment, video, args.minutes * 60 // SEGMENT_S)
    size = video.stat().st_size
    print(f"video: {video.name}, {size / 1e6:.0f} MB, {args.size} {args.fps} fps H.264 "
          f"({time.perf_counter() - started:.1f} s to make or find)")

    grounder = Grounder.from_checkpoint(str(demo_checkpoint()), device="cpu")
    cache = FeatureCache.open(work / "cache", encoder_spec=grounder.frame_encoder_spec, fps=grounder.fps,
                              feature_dim=grounder.frame_encoder_spec["output_dim"])
    cold = lambda: drop_from_page_cache(video)  # noqa: E731
    rows = []  # (what, seconds)
    rows.append(("stat key (what the cache uses)", timed(lambda: cache.entry_path(video), args.repeats * 20)))
    for algorithm in ("sha256", "blake2b"):
        hash_whole(video, algorithm)  # into the page cache
        rows.append((f"{algorithm} of the whole file, warm", timed(lambda: hash_whole(video, algorithm), args.repeats)))
    rows.append(("sha256 of the whole file, cold", timed(lambda: hash_whole(video, "sha256"), args.repeats, cold)))
    rows.append(("sampled sha256 (16 x 64 KiB), warm", timed(lambda: hash_sampled(video), args.repeats)))
    rows.append(("sampled sha256 (16 x 64 KiB), cold", timed(lambda: hash_sampled(video), args.repeats, cold)))

    # An entry of the real shape: 1 row a second, the encoder's width.
    sampled = read_video_frames(video, fps=grounder.fps, size=None)
    features = np.random.default_rng(0).uniform(0, 5, (len(sampled), cache.feature_dim)).astype(np.float32)
    cache.get(video)  # a miss on a fresh folder
    cache.put(video, EncodedVideo(video.name, sampled.duration_s, features, grounder.fps))
    entry = cache.entry_path(video)
    assert cache.get(video) is not None
    cold_both = lambda: drop_from_page_cache(video, entry)  # noqa: E731
    rows.append((f"load an entry ({entry.stat().st_size / 1e6:.1f} MB), old: np.load + isfinite",
                 timed(lambda: old_load(entry), args.repeats)))
    rows.append(("  the same, cold (old)", timed(lambda: old_load(entry), args.repeats, cold_both)))
    rows.append(("load an entry, checked: FeatureCache.get", timed(lambda: cache.get(video), args.repeats)))
    rows.append(("  the same, cold (checked)", timed(lambda: cache.get(video), args.repeats, cold_both)))
    rows.append(("  of which the video's index (decord, no frame decoded)",
                 timed(lambda: read_video_frames(video, fps=grounder.fps, size=None), args.repeats)))
    rows.append(("  the same, cold (index)",
                 timed(lambda: read_video_frames(video, fps=grounder.fps, size=None), args.repeats, cold)))

    if args.encode_full:
        start = time.perf_counter()
        grounder.encode_video(video)
        rows.append((f"encode the whole video (measured, {args.minutes} min)", time.perf_counter() - start))
    else:
        if not segment.exists():
            write_segment(segment, width, height, args.fps, args.bitrate)
        start = time.perf_counter()
        grounder.encode_video(segment)
        once = time.perf_counter() - start
        rows.append((f"encode the video ({SEGMENT_S} s measured x {args.minutes * 60 // SEGMENT_S})",
                     once * args.minutes * 60 / SEGMENT_S))

    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the end (others' work makes figures noisy)")
    print(f"{'what':<62} {'seconds':>10}")
    for what, seconds in rows:
        print(f"{what:<62} {seconds:>10.6f}")
    print(json.dumps({what: round(seconds, 6) for what, seconds in rows}))
    if temporary:
        temporary.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
