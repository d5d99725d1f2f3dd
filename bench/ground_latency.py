"""End-to-end grounding latency on generated videos of 30 s, 5 min and 30 min: decoding, frame
features, grounding 1 and 10 queries, and peak memory, with the shipped demo checkpoint.

    python bench/ground_latency.py [--lengths 30,300,1800] [--size 640x360] [--fps 10] [--threads 2]

Each length runs in a fresh process so that its peak memory (max RSS) is its own. "decode" is
decord reading the sampled frames alone; "features" is decoding plus MobileNetV2 as Grounder does
it (decoding overlapped with encoding); "first query" is the whole map for the video plus one
query; "each further query" is (10 queries - 1 query) / 9 on the encoded video. "Cold start" is
then the user's command, `g2l-ground VIDEO QUERY` on the shortest video, timed from launch to exit
in fresh processes (median of --cold-runs): interpreter, imports, checkpoint, features, the query
and the printed answer. Targets: a 30 s video grounded end to end in under 3 s (cold: under 2.5 s);
each further query under 50 ms; peak memory that does not grow with the video's length.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

QUERIES = ["the red circle grows.", "a blue square leaves.", "the green triangle moves left.", "the yellow circle appears.",
           "a white square turns red.", "the red square shrinks.", "the blue circle moves up.", "a green circle fades in.",
           "the yellow triangle disappears.", "the white circle is growing."]


def write_video(path: Path, seconds: float, width: int, height: int, fps: int) -> None:
    """A synthetic clip (a moving, colour-cycling square over a gradient), H.264 with PyAV."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28"}
        base = np.zeros((height, width, 3), np.uint8)
        base[..., 0] = np.linspace(0, 120, width, dtype=np.uint8)[None, :]
        base[..., 2] = np.linspace(0, 120, height, dtype=np.uint8)[:, None]
        side = height // 4
        for i in range(int(seconds * fps)):
            frame = base.copy()
            x = int((i * 7) % (width - side))
            y = int((height - side) / 2 * (1 + np.sin(i / 25)))
            frame[y:y + side, x:x + side] = ((i * 3) % 255, 200, (255 - i) % 255)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def measure(video: str, checkpoint: str, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from g2l.video.decoding import read_video_frames
    from g2l.inference import Grounder

    start = time.perf_counter()
    grounder = Grounder.from_checkpoint(checkpoint, device="cpu")
    encoder = grounder.frame_encoder
    load_s = time.perf_counter() - start
    fps = grounder.frame_encoder_spec["fps"]

    start = time.perf_counter()
    frames = 0
    for chunk in read_video_frames(video, fps=fps, size=encoder.input_size):
        frames += len(chunk.frames)
    decode_s = time.perf_counter() - start

    start = time.perf_counter()
    encoded = grounder.encode_video(video)
    features_s = time.perf_counter() - start

    start = time.perf_counter()
    grounder.ground(encoded, QUERIES[:1])
    first_s = time.perf_counter() - start  # builds the map of the video, then one query
    timings = {}
    for count in (1, 10):
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            grounder.ground(encoded, QUERIES[:count])
            runs.append(time.perf_counter() - start)
        timings[count] = sorted(runs)[len(runs) // 2]
    return {
        "duration_s": encoded.duration_s, "frames": frames, "load_s": load_s, "decode_s": decode_s,
        "features_s": features_s, "first_query_s": first_s, "one_query_s": timings[1], "ten_queries_s": timings[10],
        "per_extra_query_s": (timings[10] - timings[1]) / 9,
        "end_to_end_s": load_s + features_s + first_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="30,300,1800", help="video lengths in seconds")
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--fps", type=int, default=10, help="frame rate of the generated videos")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "demo.pt"))
    parser.add_argument("--cold-runs", type=int, default=3, help="fresh `g2l-ground` processes timed (0: none)")
    parser.add_argument("--workdir", default="/tmp/g2l-latency")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print("RESULT" + json.dumps(measure(args.measure, args.checkpoint, args.threads)))
        return 0
    width, height = (int(v) for v in args.size.split("x"))
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rows, videos = [], []
    for seconds in (float(s) for s in args.lengths.split(",")):
        video = work / f"video_{int(seconds)}s_{width}x{height}_{args.fps}fps.mp4"
        if not video.is_file():
            print(f"writing {video.name} ...", file=sys.stderr, flush=True)
            write_video(video, seconds, width, height, args.fps)
        videos.append(video)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        proc = subprocess.run([sys.executable, __file__, "--measure", str(video), "--checkpoint", args.checkpoint,
                               "--threads", str(args.threads)], capture_output=True, text=True, env=env)
        result = next((json.loads(line[6:]) for line in proc.stdout.splitlines() if line.startswith("RESULT")), None)
        if result is None:
            raise RuntimeError(proc.stderr[-2000:])
        rows.append(result)
    print(f"CPU, {args.threads} threads, {width}x{height} videos at {args.fps} fps, demo checkpoint "
          "(MobileNetV2 at its 1 frame/s)")
    header = (f"{'video':>8} {'frames':>7} {'load s':>7} {'decode s':>9} {'features s':>11} {'1st query s':>12} "
              f"{'1 query ms':>11} {'10 queries ms':>14} {'+query ms':>10} {'end-to-end s':>13} {'peak MiB':>9}")
    print(header)
    for r in rows:
        print(f"{r['duration_s']:>7.0f}s {r['frames']:>7} {r['load_s']:>7.2f} {r['decode_s']:>9.2f} {r['features_s']:>11.2f} "
              f"{r['first_query_s']:>12.3f} {1000 * r['one_query_s']:>11.1f} {1000 * r['ten_queries_s']:>14.1f} "
              f"{1000 * r['per_extra_query_s']:>10.1f} {r['end_to_end_s']:>13.2f} {r['peak_rss_mb']:>9.0f}")
    if args.cold_runs > 0:
        shortest = videos[min(range(len(rows)), key=lambda i: rows[i]["duration_s"])]
        command = [sys.executable, str(REPO / "tools" / "ground.py"), str(shortest), QUERIES[0], "--checkpoint", args.checkpoint]
        runs = []
        for _ in range(args.cold_runs):
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
            runs.append(time.perf_counter() - start)
        print(f"cold start: g2l-ground {shortest.name} '{QUERIES[0]}' in a fresh process, launch to exit: "
              f"{sorted(runs)[len(runs) // 2]:.2f} s median of {len(runs)} (min {min(runs):.2f}, max {max(runs):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
