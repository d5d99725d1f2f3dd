"""The feature rows of synthetic videos: each row's hidden latent (global direction, scene
background, present objects, event and filler activity, AR(1) noise), then one random projection,
bias, noise and activation for all rows (the model is in :mod:`g2l.synthetic.benchmark`'s docstring)."""

from __future__ import annotations

import numpy as np

from g2l.synthetic.world import (
    BACKGROUND_WEIGHT,
    FEATURE_NOISE,
    FILLER_LEVEL,
    GLOBAL_WEIGHT,
    LATENT_DIM,
    LATENT_NOISE,
    NOISE_CORRELATION,
    PRESENCE_WEIGHT,
    PRESET_CODES,
    PROFILE_SUBSAMPLES,
    RAMP_FRACTION,
    RENDER_STREAM,
    SPLIT_CODES,
    LatentWorld,
    SyntheticEvent,
    SyntheticVideo,
)

def render_latents(world: LatentWorld, video: SyntheticVideo, rng: np.random.Generator) -> np.ndarray:
    """The hidden latent of every feature row of ``video``: ``(T, K)`` float32."""
    num_rows, duration_s = video.num_rows, video.duration_s
    k = LATENT_DIM
    offsets = (np.arange(PROFILE_SUBSAMPLES) + 0.5) / PROFILE_SUBSAMPLES
    times_s = (np.arange(num_rows)[:, None] + offsets[None, :]) * (duration_s / num_rows)  # (T, S) sub-samples

    latent = np.tile(GLOBAL_WEIGHT * world.global_latent, (num_rows, 1))  # (T, K)
    scene_edges_s = np.concatenate([[0.0], video.scene_cuts_s, [np.inf]])
    row_centres_s = times_s.mean(axis=1)
    for scene in range(len(scene_edges_s) - 1):
        background = rng.standard_normal(k)
        background /= np.linalg.norm(background)
        inside = (row_centres_s >= scene_edges_s[scene]) & (row_centres_s < scene_edges_s[scene + 1])
        latent[inside] += BACKGROUND_WEIGHT * background
    for object_idx in video.present_object_idx:
        latent += PRESENCE_WEIGHT * world.object_latents[object_idx]
    # Events share one unit of activity where they overlap (so a busy stretch does not give them
    # away); filler activity takes the room they leave below FILLER_LEVEL.
    profiles = [_profile(event, times_s) for event in video.events]  # each (T, S)
    coverage = np.sqrt(np.sum(np.square(profiles), axis=0)) if profiles else np.zeros_like(times_s)  # (T, S)
    share = 1.0 / np.maximum(coverage, 1.0)
    for event, profile in zip(video.events, profiles):
        weight = event.amplitude * (profile * share).mean(axis=1)  # (T,)
        latent += weight[:, None] * world.event_latent(event.action_idx, event.object_idx)
    room = np.maximum(FILLER_LEVEL - coverage, 0.0)  # (T, S)
    for filler in video.fillers:
        weight = filler.amplitude * (_profile(filler, times_s) * room).mean(axis=1)
        latent += weight[:, None] * world.event_latent(filler.action_idx, filler.object_idx)
    innovations = rng.standard_normal((num_rows, k))
    noise = np.empty_like(innovations)
    noise[0] = innovations[0]
    scale = np.sqrt(1.0 - NOISE_CORRELATION**2)
    for row in range(1, num_rows):
        noise[row] = NOISE_CORRELATION * noise[row - 1] + scale * innovations[row]
    latent += LATENT_NOISE * noise
    return latent.astype(np.float32)


def render_features(world: LatentWorld, videos: list[SyntheticVideo], seed: int, preset: str) -> list[np.ndarray]:
    """The feature rows of each video, ``(T, F)`` float32 (see the module docstring).

    All rows go through the projection in one matrix product: one BLAS call per batch rather than
    per video keeps generation fast on a busy machine.
    """
    rngs = [np.random.default_rng([seed, PRESET_CODES[preset], SPLIT_CODES[video.split], video.index, RENDER_STREAM])
            for video in videos]
    latents = [render_latents(world, video, rng) for video, rng in zip(videos, rngs)]
    projected = np.concatenate(latents) @ world.projection + world.bias  # (sum T, F)
    features = []
    for rows, rng in zip(np.split(projected, np.cumsum([len(z) for z in latents])[:-1]), rngs):
        rows += np.float32(FEATURE_NOISE) * rng.standard_normal(rows.shape, dtype=np.float32)
        if world.activation == "relu":
            np.maximum(rows, 0.0, out=rows)
        features.append(rows)
    return features


def _profile(event: SyntheticEvent, times_s: np.ndarray) -> np.ndarray:
    """Trapezoid, 0.5 at the start and end of the event, ramps over RAMP_FRACTION of its length."""
    ramp_s = max(RAMP_FRACTION * (event.end_s - event.start_s), 1e-6)
    rise = np.clip((times_s - event.start_s) / ramp_s + 0.5, 0.0, 1.0)
    fall = np.clip((event.end_s - times_s) / ramp_s + 0.5, 0.0, 1.0)
    return rise * fall
