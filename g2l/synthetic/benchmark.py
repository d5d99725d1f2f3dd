"""The built-in synthetic grounding benchmark: no download, deterministic by seed.

``generate_synthetic(out_dir, preset, seed)`` writes, in the public on-disk layouts::

    out_dir/train.json, val.json, test.json   {video_id: {"duration": s, "timestamps": [[s, e], ...],
                                              "sentences": [...]}} (ActivityNet Captions format)
    out_dir/features.hdf5                     f[video_id] -> (T, F) float32, every split's videos;
                                              attrs: preset, seed, generator_version, ...
    out_dir/meta.json                         generation parameters, vocabulary, counts

so that the real annotation parser and feature store are what read it. Same preset, seed and
sizes give byte-identical files (on one machine: BLAS may round differently elsewhere); video
``i`` of a split, its events and sentences, does not depend on how many videos are asked for.

It is a grounding problem, not a lookup. Every video holds several events, each an *action*
applied to an *object* (``"a person opens the door."``); some are queried (one or more
paraphrased sentences), the others are distractors nobody asks about. Events in one video are
chosen to be confusable: most share the action or the object of an earlier event, and paired
actions (open/close, pick up/put down, turn on/turn off) on the same object are favoured. Queried
events and distractors are drawn from the same distribution, and unannotated *filler* activity
(other action/object pairs, back to back over the whole video) fills the time the events leave
free, so neither "where something happens" nor "where the boundaries are" tells which event a
sentence is about: a text-blind model stays near the prior.

Hidden latent model (one "world" per preset and seed; every video of every split shares it):

* ``K = LATENT_DIM = 64`` latent dimensions. Unit latents per action and per object; paired
  actions share a direction (cosine ``ACTION_PAIR_COSINE``), as do a few object groups
  (door/window/fridge, phone/laptop, towel/bag; cosine ``OBJECT_GROUP_COSINE``). An activity
  (event or filler) has the latent ``v = ACTION_WEIGHT * action + OBJECT_WEIGHT * object``.
* A row at time ``t`` of a video has the latent::

      z(t) = GLOBAL_WEIGHT * g + BACKGROUND_WEIGHT * b_scene(t) + PRESENCE_WEIGHT * sum_o o
             + sum_e a_e h_e(t) / max(1, c(t)) v_e + max(0, FILLER_LEVEL - c(t)) sum_f a_f h_f(t) v_f
             + LATENT_NOISE * n(t),           c(t) = sqrt(sum_e h_e(t)^2)

  ``g``: one world-wide direction (features of all videos look alike, as real CNN features do);
  ``b_scene``: a random per-video background that changes at random scene cuts (boundaries that
  are not events); ``o``: a faint presence of some event objects over the whole video (an object
  alone does not locate its event); ``e``: events with amplitude ``a_e ~ U(0.7, 1.3)`` and a
  trapezoid profile ``h_e`` that is 0.5 exactly at the annotated start and end and ramps over
  ``RAMP_FRACTION`` of the event's length (soft but locatable boundaries), sharing one unit of
  activity where they overlap (``c``), so that busy stretches do not single events out; ``f``:
  the fillers, same profiles, in the room the events leave; ``n``: AR(1) noise
  (``NOISE_CORRELATION``).
  Profiles are averaged over ``PROFILE_SUBSAMPLES`` points per row, so events shorter than a row
  still leave a trace.
* Features ``x(t) = act(z(t) @ W + c + FEATURE_NOISE * m(t))``, ``W (K, F) ~ N(0, 1/K)`` a fixed
  random projection, ``c ~ N(FEATURE_BIAS_MEAN, FEATURE_BIAS_STD)`` a fixed bias, ``m`` white
  noise; ``act`` is a ReLU for the VGG16/C3D presets (non-negative, ~40% non-zero) and the
  identity for ActivityNet's PCA-reduced C3D (signed features).

Statistics: durations, normalised moment lengths and positions, and queries per video follow the
real training splits (:mod:`g2l.synthetic.real_stats` records them; its docstring says how they are
sampled). Sentences per event, distractors and the feature rate are per preset (:data:`PRESETS`).
Feature rate: ``T = clamp(round(duration_s * rows_per_second), min_rows, max_rows)`` rows spread
evenly over the video: Charades 1 row/s (T ~ 30 for a 30 s video, about P = 32 pre-clips);
ActivityNet 0.5 row/s (T median ~ 57, at most 256 = P); TACoS 1 row/s (T median ~ 150, at most
512 = 2 P). Long videos thus get a lower rate; the loaders resample every video to P rows anyway.

The parts: :mod:`g2l.synthetic.world` (presets, vocabulary, the latent model's parameters and
world), :mod:`g2l.synthetic.plan` (one video's events, windows and sentences),
:mod:`g2l.synthetic.features` (its feature rows); this module writes the files.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import h5py
from tqdm import tqdm

from g2l.errors import G2LError
from g2l.io.atomic import atomic_path, write_text_atomic
from g2l.synthetic.features import render_features
from g2l.synthetic.plan import count_unannotated_repeats, plan_video
from g2l.synthetic.world import (
    ACTION_PAIR_COSINE,
    ACTION_WEIGHT,
    ACTIONS,
    AMPLITUDE_RANGE,
    BACKGROUND_WEIGHT,
    COMBINATIONS,
    FEATURE_BIAS_MEAN,
    FEATURE_BIAS_STD,
    FEATURE_NOISE,
    FILLER_LEVEL,
    GENERATOR_VERSION,
    GLOBAL_WEIGHT,
    LATENT_DIM,
    LATENT_NOISE,
    NOISE_CORRELATION,
    OBJECT_GROUP_COSINE,
    OBJECT_GROUPS,
    OBJECT_WEIGHT,
    OBJECTS,
    PRESENCE_PROBABILITY,
    PRESENCE_WEIGHT,
    PRESETS,  # noqa: F401 (the presets a caller of generate_synthetic chooses from)
    RAMP_FRACTION,
    SCENE_CUTS_MEAN,
    SIMILAR_PROBABILITY,
    SIZES,
    SPLITS,
    TEMPLATES,
    Preset,
    SyntheticVideo,
    build_world,
    get_preset,
    render_sentence,
)

RENDER_BATCH = 64  # videos per projection product
# features.hdf5 beyond its float32 rows, measured with h5py 3 (tests/synthetic: the estimate against
# what a small benchmark writes): a few kB for the file, and per video its dataset's header and
# link (f[video_id]), or a group and a dataset (f[video_id][feature_key]).
HDF5_FILE_BYTES = 8 * 1024
HDF5_VIDEO_BYTES, HDF5_GROUPED_VIDEO_BYTES = 400, 1450
SPACE_MARGIN_BYTES = 64 * 2**20  # left free beyond the estimate

def split_sizes(preset: str, size: str = "default", num_train: int | None = None, num_val: int | None = None,
                num_test: int | None = None) -> dict[str, int]:
    """Videos per split: the preset's ``size`` table, overridden by any count given."""
    config = get_preset(preset)
    if size not in SIZES:
        raise G2LError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    counts = dict(zip(SPLITS, config.sizes[size]))
    for split, given in zip(SPLITS, (num_train, num_val, num_test)):
        if given is not None:
            if isinstance(given, bool) or not isinstance(given, int) or given < 1:
                raise G2LError(f"num_{split} must be a positive whole number of videos, got {given!r}")
            counts[split] = given
    return counts


def generate_synthetic(out_dir: str | Path, preset: str, seed: int, size: str = "default", num_train: int | None = None,
                       num_val: int | None = None, num_test: int | None = None, *, feature_key: str | None = None,
                       sparse_annotation: float = 0.0, progress: bool = True,
                       on_estimate: Callable[[int], None] | None = None) -> Path:
    """Write the synthetic benchmark ``preset`` at ``seed`` into ``out_dir``; return ``out_dir``.

    ``feature_key``: ``None`` stores ``f[video_id] -> (T, F)``; a name such as ``"c3d_features"``
    stores ``f[video_id][feature_key]`` instead (the public ActivityNet layout). Every file is
    written to a temporary name in ``out_dir`` and renamed when complete; ``meta.json`` last.
    ``sparse_annotation`` P in [0, 1]: in the training split a fraction P of the queried events
    happen twice and only one occurrence is annotated (G2L's premise); val and test are unchanged,
    each queried event happening once, so scoring stays unambiguous.
    Before writing anything it estimates the bytes it will write (``on_estimate`` hears it) and
    refuses, with a ``G2LError``, when the disk of ``out_dir`` has less free.
    """
    config = get_preset(preset)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise G2LError(f"seed must be a non-negative whole number, got {seed!r}")
    if not 0.0 <= sparse_annotation <= 1.0:
        raise G2LError(f"sparse_annotation must be a fraction in [0, 1], got {sparse_annotation!r}")
    counts = split_sizes(preset, size, num_train, num_val, num_test)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise G2LError(f"output {out_dir} exists and is not a folder; pass a folder path")

    plans = {split: [plan_video(preset, seed, split, i, sparse_annotation) for i in range(counts[split])] for split in SPLITS}
    texts = {f"{split}.json": _annotations_text(plans[split]) for split in SPLITS}
    texts["meta.json"] = json.dumps(_describe(config, seed, size, counts, plans, feature_key, sparse_annotation),
                                    indent=2) + "\n"
    estimate = features_bytes(config.feature_dim, plans, feature_key) + sum(len(t.encode()) for t in texts.values())
    if on_estimate is not None:
        on_estimate(estimate)
    existing = next(folder for folder in (out_dir, *out_dir.absolute().parents) if folder.exists())
    free = shutil.disk_usage(existing).free
    if free < estimate + SPACE_MARGIN_BYTES:
        raise G2LError(f"the {preset} benchmark needs about {format_bytes(estimate)} and the disk of {out_dir} has "
                       f"{format_bytes(free)} free; free some space, write it elsewhere (--out), or ask for fewer "
                       "videos (--num-train, --num-val, --num-test)")
    out_dir.mkdir(parents=True, exist_ok=True)

    world = build_world(preset, seed)
    total = sum(counts.values())
    features_path = out_dir / "features.hdf5"
    with atomic_path(features_path) as temporary:
        with h5py.File(temporary, "w", track_order=False) as store:
            store.attrs.update({"preset": preset, "seed": seed, "generator_version": GENERATOR_VERSION,
                                "sparse_annotation": float(sparse_annotation),
                                "feature_dim": config.feature_dim, "rows_per_second": config.rows_per_second})
            bar = tqdm(total=total, desc=f"synthetic {preset}", unit="video", disable=not progress)
            for split in SPLITS:
                for first in range(0, len(plans[split]), RENDER_BATCH):
                    batch = plans[split][first:first + RENDER_BATCH]
                    for video, rows in zip(batch, render_features(world, batch, seed, preset)):
                        if not feature_key:
                            store.create_dataset(video.video_id, data=rows)
                        else:
                            store.create_group(video.video_id).create_dataset(feature_key, data=rows)
                    bar.update(len(batch))
            bar.close()
    for name, text in texts.items():  # meta.json last
        write_text_atomic(out_dir / name, text)
    return out_dir


def features_bytes(feature_dim: int, plans: dict[str, list[SyntheticVideo]], feature_key: str | None) -> int:
    """The size of features.hdf5 for ``plans``: its float32 rows and HDF5's own bytes."""
    videos = sum(len(videos) for videos in plans.values())
    rows = sum(v.num_rows for videos in plans.values() for v in videos)
    per_video = HDF5_GROUPED_VIDEO_BYTES if feature_key else HDF5_VIDEO_BYTES
    return 4 * feature_dim * rows + per_video * videos + HDF5_FILE_BYTES


def format_bytes(count: int) -> str:
    """``1234567890`` -> ``"1.2 GB"`` (decimal units, as ``df -H`` and file managers show them)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def _annotations_text(videos: list[SyntheticVideo]) -> str:
    entries = {
        video.video_id: {
            "duration": video.duration_s,
            "timestamps": [[video.events[q.event_idx].start_s, video.events[q.event_idx].end_s] for q in video.queries],
            "sentences": [q.sentence for q in video.queries],
        }
        for video in videos
    }
    return json.dumps(entries, indent=None, separators=(", ", ": ")) + "\n"


def _describe(config: Preset, seed: int, size: str, counts: dict[str, int], plans: dict[str, list[SyntheticVideo]],
              feature_key: str | None, sparse_annotation: float = 0.0) -> dict:
    splits = {}
    for split in SPLITS:
        videos = plans[split]
        splits[split] = {
            "videos": len(videos),
            "queries": sum(len(v.queries) for v in videos),
            "events": sum(len(v.events) for v in videos),
            "rows": sum(v.num_rows for v in videos),
            "unannotated_repeats": sum(count_unannotated_repeats(v) for v in videos),
        }
    words = sorted({w.strip(".") for a, o in COMBINATIONS for t in range(len(TEMPLATES))
                    for w in render_sentence(a, o, t).split()})
    return {
        "generator": "g2l.synthetic.benchmark",
        "generator_version": GENERATOR_VERSION,
        "preset": config.name,
        "seed": seed,
        "size": size,
        "splits": splits,
        "files": {"annotations": [f"{s}.json" for s in SPLITS], "features": "features.hdf5",
                  "feature_layout": "f[video_id] -> (T, F) float32" if not feature_key
                  else f"f[video_id][{feature_key!r}] -> (T, F) float32"},
        "features": {"dim": config.feature_dim, "imitates": config.feature_name, "activation": config.activation,
                     "rows_per_second": config.rows_per_second, "min_rows": config.min_rows,
                     "max_rows": config.max_rows},
        "events": {"sentences_per_event": config.sentences_per_event, "distractors_mean": config.distractors_mean,
                   "similar_probability": SIMILAR_PROBABILITY, "sparse_annotation": sparse_annotation},
        "vocabulary": {
            "actions": [asdict(a) for a in ACTIONS],
            "objects": list(OBJECTS),
            "combinations": [[ACTIONS[a].name, OBJECTS[o]] for a, o in COMBINATIONS],
            "templates": list(TEMPLATES),
            "sentence_style": config.sentence_style,
            "words": words,
        },
        "latent_model": {
            "latent_dim": LATENT_DIM, "action_pair_cosine": ACTION_PAIR_COSINE,
            "object_groups": [list(g) for g in OBJECT_GROUPS], "object_group_cosine": OBJECT_GROUP_COSINE,
            "global_weight": GLOBAL_WEIGHT, "background_weight": BACKGROUND_WEIGHT,
            "scene_cuts_mean": SCENE_CUTS_MEAN, "presence_probability": PRESENCE_PROBABILITY,
            "presence_weight": PRESENCE_WEIGHT, "action_weight": ACTION_WEIGHT, "object_weight": OBJECT_WEIGHT,
            "amplitude_range": list(AMPLITUDE_RANGE), "ramp_fraction": RAMP_FRACTION,
            "latent_noise": LATENT_NOISE, "noise_correlation": NOISE_CORRELATION,
            "feature_noise": FEATURE_NOISE, "feature_bias_mean": FEATURE_BIAS_MEAN,
            "feature_bias_std": FEATURE_BIAS_STD, "filler_level": FILLER_LEVEL,
        },
        "statistics": asdict(config.statistics),
    }
