"""Ground sentences in a video file: ``Grounder`` encodes a video once and grounds any number of
queries against it in one batch.

    grounder = Grounder.from_checkpoint("checkpoints/demo.pt")
    video = grounder.encode_video("examples/demo.mp4")          # decode + frame features, once
    for result in grounder.ground(video, ["the red circle grows", "a blue square leaves"]):
        print(result.query, result.moments[0])

How a video maps onto the map: the frame features of the whole video (one row per sample at the
checkpoint's frame rate) are resampled to P pre-clips and pooled to N clips, so each clip covers
``duration / N`` seconds whatever the length; a moment's resolution is that clip length. A video
much longer than the training videos spreads each clip over more time than the model ever saw;
``window_s`` grounds it in overlapping windows of that length (stride half a window), each a map
of its own, and merges the windows' candidates by score with NMS.

A query's answer does not depend on the other queries of the call: each query goes through the
text encoder and the score on its own (a batch of one, no padding), so it meets the same kernels
alone as among others, and its moments and scores are the same to the last bit on one machine.
The forward pass runs in float32 whatever precision the checkpoint was trained in
(g2l/engine/precision.py): on another CPU the scores differ by float32 rounding only, within
1e-5 (other kernels on one CPU move them by about 1e-7: bench/precision_agreement.py), so the
moments are the same unless two of them score within that of each other. ``precision="bf16"``
is faster on CPUs with bf16 dot products and on GPUs; its scores differ from float32 by up to
about 1e-3, and moments whose scores tie in bf16 may come in another order.
"""

from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from g2l.data.features import l2_normalize, resample_features
from g2l.engine.precision import GROUNDING_PRECISION, autocast
from g2l.errors import G2LError
from g2l.models.grounding import score_cells
from g2l.ops.spans import RankedMoments, rank_moments, window_cell_spans


class GroundingError(G2LError):
    """Bad input to grounding (empty query, unusable checkpoint for video files, ...)."""


@dataclass
class Moment:
    start_s: float
    end_s: float
    score: float


@dataclass
class QueryResult:
    query: str
    moments: list[Moment]
    score_map: np.ndarray | None = None  # (t t) of the whole video (or the best window), 0 off the mask
    match: bool | None = None  # the best score >= the model's match threshold; None: the model has none


def result_json(result: QueryResult, explanation=None) -> dict:
    """One query's answer as ``g2l-ground --json`` gives it (README, *File formats*): its moments,
    ``match`` when the model has a match threshold (g2l/eval/match.py), and, with an explanation,
    each word's value with its standard error (0 when computed exactly; the plot's error bars) and what
    the values are relative to."""
    out = {"moments": [{"start": m.start_s, "end": m.end_s, "score": m.score} for m in result.moments]}
    if result.match is not None:
        out["match"] = result.match
    if explanation is not None:
        out["explanation"] = [{"word": w.word, "value": w.value, "stderr": w.stderr} for w in explanation.words]
        out["explanation_target"] = explanation.target
        out["explanation_relative_to"] = explanation.relative_to
    return out


@dataclass(eq=False)  # compared and hashed by identity: a Grounder caches its map features per video
class EncodedVideo:
    """A video's frame features, computed once: ``features (T, F)`` sampled at ``fps``."""

    name: str
    duration_s: float
    features: np.ndarray
    fps: float


@dataclass
class VideoCells:
    """A video as one model sees it (``Grounder.video_cells``): the windows it is grounded in and
    the normalised features of every valid cell of each window's map."""

    windows_s: list[tuple[float, float]]  # (start_s, length_s) of each window: one for the whole video
    cells_c: torch.Tensor  # (w C d) m^c
    cells_u: torch.Tensor  # (w C d) m^u
    spans: np.ndarray  # (w*C 2) float32 seconds of every cell, window by window (ends not cut at the duration)

    @property
    def num_cells(self) -> int:
        """``C``: the valid cells of one window's map."""
        return self.cells_c.shape[1]


def check_queries(queries: list[str]) -> list[str]:
    """The queries stripped of surrounding whitespace; a query that is empty, not valid text (a
    lone surrogate) or has no letter at all (only spaces, punctuation, digits or invisible
    characters such as zero-width spaces) is refused with a sentence that names it."""
    cleaned = [q.strip() for q in queries]
    if not cleaned or any(not q for q in cleaned):
        raise GroundingError("every query must be a non-empty sentence")
    for number, query in enumerate(cleaned, start=1):
        try:  # a lone surrogate (argv bytes that are not UTF-8): the tokenizer takes only real text
            query.encode("utf-8")
        except UnicodeEncodeError:
            raise GroundingError(f"query {number} ({query[:40]!r}) is not valid text (bytes that are not UTF-8); "
                                 "write each query as UTF-8 text") from None
        if not any(character.isalpha() for character in query):
            raise GroundingError(f"query {number} ({query[:40]!r}) has no letters; write each query as a sentence "
                                 "in words")
    return cleaned


def check_video_readable(spec: dict | None) -> None:
    """Refuse a model whose features g2l cannot make from a video file, with the sentence of
    ``g2l.video.frame_encoders.video_unreadable_reason`` (no encoder recorded, CLIP + SlowFast, ...)."""
    from g2l.video.frame_encoders import video_unreadable_reason

    reason = video_unreadable_reason(spec)
    if reason is not None:
        raise GroundingError(reason)


def frame_encoder_name(spec: dict) -> str:
    """The ``build_frame_encoder`` name that rebuilds the encoder a spec describes."""
    check_video_readable(spec)
    if str(spec.get("name", "")).startswith("mobilenet_v2"):
        return spec["name"]
    if spec.get("name") in ("clip", "clip_release") and str(spec.get("weights", "")).startswith("hub:"):
        return f"{spec['name']}:" + spec["weights"][len("hub:"):]
    raise GroundingError(
        f"cannot rebuild the frame encoder {spec.get('name')!r} ({spec.get('weights')}) recorded in the checkpoint; "
        "pass frame_encoder='clip:<folder>' (tools/ground.py --frame-encoder) pointing at the same weights"
    )


def to_moments(ranked: RankedMoments, duration_s: float) -> list[Moment]:
    """Ranked moments as ``Moment``s in seconds, each end cut at the video's ``duration_s``."""
    return [Moment(float(start_s), float(min(end_s, duration_s)), float(score))
            for (start_s, end_s), score in zip(ranked.spans, ranked.scores)]


class Grounder:
    """A checkpoint ready to ground: ``encode_video`` (or ``encode_features``) once per video, then
    ``ground`` any number of queries. Its steps are public for tools built on it (the explanation,
    the library): ``video_cells`` (a video's windows and cell features, cached), ``query_scores``
    (one query's scores of them) and ``encode_tokens`` (sentence features of token ids); ``ground``
    ranks the scores with ``g2l.ops.spans.rank_moments``."""

    def __init__(self, model, cfg, *, frame_encoder_spec: dict | None, device: torch.device, frame_encoder=None,
                 precision: str | None = None, source: str = "the checkpoint"):
        from g2l.engine.precision import autocast_dtype
        from g2l.video.decoding import check_sampling_fps

        if frame_encoder_spec is not None:  # before the frame encoder is built or any video decoded
            check_sampling_fps(frame_encoder_spec.get("fps", 1.0),
                               what=f"the frame rate recorded in {source} (frame_encoder.fps)",
                               fix="the checkpoint is damaged or was edited; use one written by g2l-train or g2l-export")

        self.model = model.eval()
        self.cfg = cfg
        self.device = device
        # The forward pass's precision: fp32 unless asked (fp32|bf16|auto), never the checkpoint's
        # train.precision, so that answers do not change with the CPU (g2l/engine/precision.py).
        self.precision = precision or GROUNDING_PRECISION
        self._forward_dtype = autocast_dtype(self.precision, device)
        self.frame_encoder_spec = frame_encoder_spec
        self._frame_encoder = frame_encoder
        # This model's VideoCells of each video it has grounded, per window setting; an entry goes
        # when its video does. (Kept here, not on the video: another model's cells differ.)
        self._cells_of: weakref.WeakKeyDictionary[EncodedVideo, dict] = weakref.WeakKeyDictionary()
        self.match: dict | None = None  # the checkpoint's fitted match decision (g2l/eval/match.py), if any
        self.domain: dict | None = None  # the checkpoint's summary of its training videos (g2l/data/domain.py)

    @property
    def match_threshold(self) -> float | None:
        """The score at or above which a query's best moment counts as "its answer is here" (fitted
        leave-one-video-out on a validation split, g2l/eval/match.py); None for a model without one,
        or whose fit's AUROC is below g2l/eval/match.py's ``MIN_AUROC`` (it decides nothing)."""
        from g2l.eval.match import decides

        return float(self.match["threshold"]) if decides(self.match) else None

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str = "auto", frame_encoder: str | None = None,
                        precision: str | None = None) -> "Grounder":
        """A checkpoint file, a folder written by ``g2l-export``, or a Hugging Face repo id of one.
        ``precision``: the forward pass's, ``"fp32"`` when None (not the checkpoint's train.precision);
        ``"bf16"`` or ``"auto"`` is faster where the hardware has bf16, with answers that may differ from fp32."""
        from g2l.engine.distributed import resolve_device
        from g2l.models.checkpoint import model_from_checkpoint
        from g2l.models.checkpoint import load_model_source

        torch_device = resolve_device(device, setting="device")  # before the slow part
        payload, source = load_model_source(path)
        model, cfg = model_from_checkpoint(payload, source)
        grounder = cls(model.to(torch_device), cfg, frame_encoder_spec=payload.get("frame_encoder"), device=torch_device,
                       precision=precision, source=str(source))
        grounder._frame_encoder_name = frame_encoder
        grounder.match = payload.get("match")
        grounder.domain = payload.get("domain")
        return grounder

    @classmethod
    def from_pretrained(cls, folder_or_repo_id: str | Path, *, device: str = "auto",
                        frame_encoder: str | None = None, precision: str | None = None) -> "Grounder":
        """The Hugging Face convention: a folder written by ``g2l-export`` or a hub repo id
        (``org/name``, downloaded once into the standard cache); a checkpoint file works too."""
        return cls.from_checkpoint(folder_or_repo_id, device=device, frame_encoder=frame_encoder, precision=precision)

    # Video side ------------------------------------------------------------------------------------
    @property
    def frame_encoder(self):
        if self._frame_encoder is None:
            from g2l.video.frame_encoders import build_frame_encoder, check_encoder_compatible

            spec = self.frame_encoder_spec
            check_video_readable(spec)
            named = getattr(self, "_frame_encoder_name", None)
            name = named or frame_encoder_name(spec)
            options = {"clip_len_s": spec.get("clip_len_s", 2.0)} if name.startswith("clip_release:") else {}
            encoder = build_frame_encoder(name, device=self.device, **options)
            # A named encoder (a local copy of the weights) is taken on the caller's word for the weights.
            ignored = {"fps"} | ({"weights"} if named else set())
            expected = {k: v for k, v in spec.items() if k not in ignored}
            actual = {k: v for k, v in encoder.spec.items() if k not in ignored}
            check_encoder_compatible(expected, actual, what="the checkpoint's frame encoder")
            self._frame_encoder = encoder
        return self._frame_encoder

    @property
    def fps(self) -> float:
        """The frame rate at which ``encode_video`` samples a video: the one the model was trained on."""
        return float((self.frame_encoder_spec or {}).get("fps", 1.0))

    def encode_video(self, path: str | Path, *, batch_size: int = 32, progress=None) -> EncodedVideo:
        """Decode ``path`` at the checkpoint's frame rate and encode its frames (once per video);
        ``progress(fraction)`` is called as frames are encoded."""
        from g2l.video.feature_extraction import extract_video_features

        encoder = self.frame_encoder
        features, duration_s = extract_video_features(path, encoder, fps=self.fps, batch_size=batch_size,
                                                      progress=progress)
        return EncodedVideo(Path(path).name, float(duration_s), features, self.fps)

    def encode_features(self, features: np.ndarray, duration_s: float, name: str = "features", fps: float | None = None) -> EncodedVideo:
        """Wrap precomputed ``(T, F)`` features (rows evenly spread over ``duration_s``)."""
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[0] == 0:
            raise GroundingError(f"features must be a non-empty (T, F) array, got shape {features.shape}")
        return EncodedVideo(name, float(duration_s), features, fps or features.shape[0] / duration_s)

    def check_window(self, window_s: float | None, fps: float, *, what: str = "window_s") -> str | None:
        """Refuse a window that is not a positive length or holds fewer than two frames at ``fps``;
        return a warning when it holds fewer frames than the map has clips (its moments would be
        finer than what the model sees), else None. ``what`` names the setting in messages."""
        if window_s is None:
            return None
        if not (math.isfinite(window_s) and window_s > 0):
            raise GroundingError(f"{what} must be a positive number of seconds, got {window_s}")
        frames, clips = window_s * fps, self.model.num_clips
        if frames < 2:
            raise GroundingError(
                f"{what} {window_s:g} s holds {frames:.2g} frames at the model's {fps:g} frames/s, too few to ground "
                f"in; use windows of at least {clips / fps:g} s"
            )
        if frames < clips:
            return (f"windows of {window_s:g} s hold only {frames:.3g} frames at {fps:g} frames/s, fewer than the "
                    f"model's {clips} clips, so their moments are finer than what the model sees; windows of at least "
                    f"{clips / fps:g} s avoid that")
        return None

    def _windows(self, video: EncodedVideo, window_s: float | None) -> list[tuple[float, float, np.ndarray]]:
        """``[(start_s, duration_s, rows (T_w, F))]``: the whole video, or overlapping windows."""
        note = self.check_window(window_s, video.fps)
        if window_s is None or window_s >= video.duration_s:
            return [(0.0, video.duration_s, video.features)]
        if note:
            warnings.warn(note, stacklevel=4)
        times = (np.arange(video.features.shape[0]) + 0.5) / video.fps
        starts = list(np.arange(0.0, max(video.duration_s - window_s, 0.0), window_s / 2))
        starts.append(video.duration_s - window_s)
        windows = []
        for start in starts:
            rows = video.features[(times >= start) & (times < start + window_s)]
            if rows.shape[0]:
                windows.append((float(start), float(window_s), rows))
        return windows

    @torch.inference_mode()
    def video_cells(self, video: EncodedVideo, window_s: float | None = None) -> VideoCells:
        """``video`` as this model sees it: its windows (the whole video, or overlapping windows of
        ``window_s``) and the normalised features and spans of every valid cell of each window's map,
        computed once per video and window setting. A query's scores of them are ``query_scores``;
        ``ground`` ranks them (``g2l.ops.spans.rank_moments``)."""
        cached = self._cells_of.setdefault(video, {})
        if window_s not in cached:
            windows = self._windows(video, window_s)
            pre_clips = np.stack([resample_features(l2_normalize(rows), self.cfg.data.num_pre_clips)
                                  for _, _, rows in windows])  # (w p F)
            if pre_clips.shape[-1] != self.cfg.data.feature_dim:
                raise GroundingError(
                    f"features of width {pre_clips.shape[-1]} do not fit this checkpoint, which expects "
                    f"{self.cfg.data.feature_dim}; use features from the encoder it was trained with"
                )
            with autocast(self._forward_dtype, self.device, exact=True):
                cells_c, cells_u = self.model.encode_video(torch.from_numpy(pre_clips).to(self.device))  # (w C d)
            windows_s = [(start_s, length_s) for start_s, length_s, _ in windows]
            spans = window_cell_spans(self.model.cell_start_idx.cpu().numpy(), self.model.cell_end_idx.cpu().numpy(),
                                      self.model.num_clips, windows_s)  # (w*C 2)
            cached[window_s] = VideoCells(windows_s, cells_c, cells_u, spans)
        return cached[window_s]

    def domain_check(self, video: EncodedVideo) -> dict | None:
        """``{"distance", "threshold", "outside"}``: how far the whole video's features, prepared as
        the model reads them, lie from the training videos' (g2l/data/domain.py); ``outside`` is the
        warning. None for a model whose checkpoint has no such summary."""
        if self.domain is None:
            return None
        from g2l.data.domain import domain_verdict

        rows = resample_features(l2_normalize(video.features), self.cfg.data.num_pre_clips)  # (p F)
        if rows.shape[-1] != self.domain["mean"].shape[0]:
            raise GroundingError(
                f"features of width {rows.shape[-1]} do not fit this checkpoint, which expects "
                f"{self.domain['mean'].shape[0]}; use features from the encoder it was trained with")
        return domain_verdict(self.domain, rows)

    # Query side ------------------------------------------------------------------------------------
    def encode_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      position_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids ``(q l)`` -> sentence features ``s^c, s^u`` ``(q d)``, on the Grounder's device
        and in its precision: every score of a query (``ground``, the word explanation) goes through here."""
        with autocast(self._forward_dtype, self.device, exact=True):
            return self.model.encode_text(input_ids.to(self.device), attention_mask.to(self.device),
                                          None if position_ids is None else position_ids.to(self.device))

    def _query_features(self, query: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One query's ``s^c, s^u`` ``(1 d)``: the query on its own (a batch of one, no padding)."""
        tokens = self.model.tokenizer([query], truncation=True, max_length=self.cfg.model.text_max_tokens,
                                      return_tensors="pt")
        return self.encode_tokens(tokens["input_ids"], tokens["attention_mask"])  # (1 d)

    @torch.inference_mode()
    def query_scores(self, query: str, cells_c: torch.Tensor, cells_u: torch.Tensor) -> torch.Tensor:
        """One query's float32 scores ``(w C)`` of the cells ``(w C d)``: the query on its own
        (a batch of one, no padding), so its scores are the same whatever else is grounded with it."""
        s_c, s_u = self._query_features(query)  # (1 d)
        return score_cells(torch.einsum("d,wcd->wc", s_c[0], cells_c), torch.einsum("d,wcd->wc", s_u[0], cells_u),
                           self.cfg.eval.score_gamma).float()  # (w C)

    @torch.inference_mode()
    def ground(self, video: EncodedVideo, queries: list[str], *, top_k: int = 5, window_s: float | None = None,
               keep_maps: bool = False) -> list[QueryResult]:
        """The top-k moments (seconds, after NMS) of every query; each query's answer is the one
        it gets alone (see ``query_scores``)."""
        if isinstance(queries, str):
            queries = [queries]
        cleaned = check_queries(queries)
        cells = self.video_cells(video, window_s)
        limit = self.cfg.model.text_max_tokens
        for query, ids in zip(cleaned, self.model.tokenizer(cleaned, truncation=False)["input_ids"]):
            if len(ids) > limit:
                warnings.warn(f"the query '{query[:40]}...' is longer than the model's {limit} tokens "
                              f"(model.text_max_tokens) and only its beginning is grounded", stacklevel=2)
        scores = np.stack([self.query_scores(query, cells.cells_c, cells.cells_u).cpu().numpy()
                           for query in cleaned])  # (q w C)
        results = []
        for q, query in enumerate(cleaned):
            ranked = rank_moments(scores[q].reshape(-1), cells.spans, self.cfg.eval.nms_thresh, top_k)
            moments = to_moments(ranked, video.duration_s)
            score_map = None
            if keep_maps:
                best_window = int(ranked.index[0] // cells.num_cells) if len(ranked.index) else 0
                score_map = np.zeros((self.model.num_clips, self.model.num_clips), np.float32)
                score_map[self.model.cell_start_idx.cpu().numpy(), self.model.cell_end_idx.cpu().numpy()] = \
                    scores[q, best_window]
            threshold = self.match_threshold
            match = None if threshold is None else bool(moments and moments[0].score >= threshold)
            results.append(QueryResult(query, moments, score_map, match))
        return results

    # Library side: the two halves of a score, kept apart (g2l/library) --------------------------
    @torch.inference_mode()
    def moment_embeddings(self, video: EncodedVideo, window_s: float | None = None
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every candidate moment of ``video`` as ``ground`` sees it, without a query:
        ``spans_s (k 2)`` float32 seconds (window offsets added, ends not yet cut at the duration)
        and the normalised cell features ``cells_c, cells_u (k d)`` float32, window by window in
        ``ground``'s candidate order. A query's scores are ``score_cells(cells_c @ s_c, cells_u @ s_u,
        cfg.eval.score_gamma)`` with ``s_c, s_u`` from ``query_embeddings``."""
        cells = self.video_cells(video, window_s)
        d = cells.cells_c.shape[-1]
        return (cells.spans.copy(), cells.cells_c.float().reshape(-1, d).cpu().numpy(),  # (w*C d)
                cells.cells_u.float().reshape(-1, d).cpu().numpy())

    @torch.inference_mode()
    def query_embeddings(self, queries: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The sentence features ``s_c, s_u (q d)`` float32 of ``queries`` (checked as ``ground``
        checks them), each query encoded on its own as ``ground`` encodes it."""
        if isinstance(queries, str):
            queries = [queries]
        pairs = [self._query_features(query) for query in check_queries(queries)]
        return (torch.cat([s_c for s_c, _ in pairs]).float().cpu().numpy(),
                torch.cat([s_u for _, s_u in pairs]).float().cpu().numpy())
