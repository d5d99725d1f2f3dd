"""The match decision: when is a query's best score over a library a sign that its answer is there?

Fitted leave-one-video-out on a split (g2l/eval/corpus.py): each query gives one positive, its best
score over all the split's videos (``present``: its own video is in the library), and one negative,
its best score over all videos but its own and any other annotated with the same sentence
(``absent``: a library without it; none when every video is). A query is a match
when its best score is ``>= threshold``; the threshold is the one that maximises F1 of "match"
against "present" over these ``2 q`` cases (ties: the highest such threshold). AUROC is the
probability that a random ``present`` score exceeds a random ``absent`` one (ties count one half).

Stored with the model as ``payload["match"] = {"threshold", "fitted_on", "precision", "recall",
"f1", "auroc", "num_queries"}`` (g2l/io/checkpoint.py; ``metrics.json`` of an exported folder).

A fit whose AUROC is below ``MIN_AUROC`` is kept for the record but decides nothing (``decides``;
``Grounder.match_threshold`` is then None and ``match`` is null): its scores do not tell a library
holding the answer from one without it, and the F1-maximising threshold of such a fit lies below
nearly every best score over the library it was fitted on, yet above many correct answers' scores in
a smaller one (the best of 60 videos runs higher than the best of one), so "match" and "no match"
would both mislead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


MIN_AUROC = 0.6  # below it a fitted threshold decides nothing (module docstring)


def decides(match: dict | None) -> bool:
    """Whether a stored fit (``payload["match"]``) makes match decisions: AUROC >= ``MIN_AUROC``."""
    return match is not None and float(match.get("auroc", 0.0)) >= MIN_AUROC


def decision_note(match: dict) -> str:
    """What to add where a fit is reported: nothing when it decides, else that it does not and why."""
    return "" if decides(match) else f"; below AUROC {100 * MIN_AUROC:.0f} the fit decides nothing: 'match' stays null"


@dataclass
class MatchFit:
    threshold: float
    fitted_on: str
    precision: float
    recall: float
    f1: float
    auroc: float
    num_queries: int

    def as_dict(self) -> dict:
        return asdict(self)


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties one half (the Mann-Whitney U over ``n_p n_n``)."""
    positive, negative = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    if positive.size == 0 or negative.size == 0:
        return float("nan")
    negative = np.sort(negative)
    below = np.searchsorted(negative, positive, side="left")  # negatives strictly below each positive
    tied = np.searchsorted(negative, positive, side="right") - below
    return float((below + 0.5 * tied).sum() / (positive.size * negative.size))


def precision_recall(positive: np.ndarray, negative: np.ndarray, threshold: float) -> tuple[float, float]:
    """Precision and recall of ``score >= threshold`` as the decision "positive"."""
    true_pos = int((np.asarray(positive) >= threshold).sum())
    false_pos = int((np.asarray(negative) >= threshold).sum())
    predicted = true_pos + false_pos
    return (true_pos / predicted if predicted else 1.0), (true_pos / max(len(positive), 1))


def fit_threshold(positive: np.ndarray, negative: np.ndarray, fitted_on: str = "") -> MatchFit:
    """The threshold on a score that maximises F1 of ``score >= t`` against the positives."""
    positive = np.asarray(positive, np.float64)
    negative = np.asarray(negative, np.float64)[np.isfinite(negative)]  # -inf: a split of one video
    if positive.size == 0:
        raise ValueError("no queries to fit a match threshold on")
    scores = np.concatenate([positive, negative])
    labels = np.concatenate([np.ones(positive.size), np.zeros(negative.size)])
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    true_pos, predicted = np.cumsum(labels), np.arange(1, scores.size + 1)
    last = np.r_[scores[1:] != scores[:-1], True]  # a threshold takes every case with an equal score
    f1 = np.where(last, 2 * true_pos / (predicted + positive.size), -1.0)
    best = int(np.flatnonzero(f1 == f1.max())[0])  # the highest threshold among the best
    threshold = float(scores[best])
    precision, recall = precision_recall(positive, negative, threshold)
    return MatchFit(threshold=threshold, fitted_on=fitted_on, precision=precision, recall=recall,
                    f1=float(f1[best]), auroc=auroc(positive, negative), num_queries=int(positive.size))


def fit_match(model, dataset, cfg, device, *, fitted_on: str, progress: bool = False) -> tuple[MatchFit, dict]:
    """``(fit, corpus metrics)`` of ``model`` on ``dataset``, leave-one-video-out (module docstring)."""
    from g2l.eval.corpus import evaluate_corpus

    result = evaluate_corpus(model, dataset, cfg, device, progress=progress)
    return fit_threshold(result.present, result.absent, fitted_on), result.metrics


def fit_match_into_checkpoint(path, dataset, device, *, fitted_on: str, also: dict | None = None) -> MatchFit:
    """Fit the match threshold of the model in checkpoint ``path`` (one g2l wrote, e.g. a run's
    best.pt) on ``dataset`` and write it into that checkpoint, atomically, with the entries of
    ``also`` (training's domain summary: one read and one write of the file for both)."""
    from g2l.io.checkpoint import save_payload
    from g2l.models.checkpoint import load_checkpoint, model_from_checkpoint

    payload = load_checkpoint(path)
    model, cfg = model_from_checkpoint(payload, str(path))
    fit, _ = fit_match(model.to(device), dataset, cfg, device, fitted_on=fitted_on)
    save_payload(path, {**payload, "match": fit.as_dict(), **(also or {})})
    return fit
