"""Why this moment: the Shapley value of each word of a query for how much its top moment stands out.

The game: the players are the query's words (split on whitespace); a coalition's sentence is the
query with the words outside the coalition masked out of the text encoder's attention mask (and so
out of its mean pooling too); the special tokens ([CLS], [SEP]) always stay. The top moment is the
one ``Grounder.ground`` ranks first, found once with the whole query, and a coalition's value is
one of three targets (``target=``), all read off the scores (docs/method.md section 1) that the
coalition's sentence gives the cells of the top moment's map (its window of the video):

* ``"runner_up"`` (the default): the top moment's score minus the best score among the moments
  NMS keeps beside it (IoU with it at most ``eval.nms_thresh``): how far it leads its nearest
  distinct rival, the margin by which the query chose it.
* ``"mean"``: the top moment's score minus the mean score of all the map's moments.
* ``"raw"``: the top moment's score itself.

Why the runner-up: a score also rises and falls with how well the sentence fits the video as a
whole, and a Shapley value credits that to the words; the empty sentence already singles out the
moments it likes, so under ``"raw"`` and ``"mean"`` the words of a good query can all look
harmful. Against the runner-up the empty sentence is close to indifferent and the credit goes to
the words that make this moment win (docs/benchmarks.md has the demo model's figures). The values
sum to ``v(all) - v(none)`` (efficiency): a positive value is a word that makes this moment win by
more. ``Explanation.relative_to`` says so in one sentence, for tables, JSON, plots and the app.

    explanation = explain_top_moment(grounder, video, "the yellow triangle turns green.")
    print(explanation.relative_to)
    for word in explanation.words:
        print(word.word, word.value)

The cost is the text encoder: one forward pass per distinct coalition, batched. Queries of up to
``max_exact_words`` words enumerate all 2^n coalitions (exact); longer ones sample orderings
(``g2l.ops.shapley_values.shapley_values``, seeded, with a standard error per word), so a query of
any length is explained. Words the tokenizer cut off (past ``model.text_max_tokens``) own no token,
are dummies and get exactly 0 without being players.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np
import torch

from g2l.inference import EncodedVideo, Grounder, GroundingError, Moment, check_queries, to_moments
from g2l.models.grounding import score_cells
from g2l.ops.shapley_values import shapley_values
from g2l.ops.spans import rank_moments, span_iou

MAX_EXACT_WORDS = 8  # 2^8 = 256 forward passes, about 1 s of MiniLM on two CPU cores
NUM_PERMUTATIONS = 12  # for longer queries: 12 orderings (6 antithetic pairs)
BATCH_SIZE = 32  # coalitions per text-encoder call (packed by length: short batches are cheap)
TARGETS = ("runner_up", "mean", "raw")


def display_word(word: str) -> str:
    """A query word as tables, JSON and plots show it: without the punctuation around it
    ("coffee." -> "coffee", "(red)" -> "red"; "don't" is kept); a word that is all punctuation stays."""
    shown = word.strip("".join(c for c in set(word) if unicodedata.category(c).startswith("P")))
    return shown or word


@dataclass
class WordValue:
    word: str  # as shown (display_word): the query's own word is game.words[i]
    value: float
    stderr: float = 0.0


@dataclass
class Explanation:
    query: str
    moment: Moment  # the top moment explained (its score is the raw score)
    words: list[WordValue]
    value_all: float  # the target with all words (for "raw": the moment's score)
    value_none: float  # the target with no word: only the special tokens
    exact: bool
    num_evaluations: int  # text-encoder passes (distinct coalitions)
    target: str = "runner_up"  # one of TARGETS
    relative_to: str = ""  # one sentence: what the values measure and what they sum to


@dataclass
class WordGame:
    """The tokens of one query and which tokens belong to which word."""

    words: list[str]
    input_ids: torch.Tensor  # (l,) the tokenized query, special tokens included
    always_on: torch.Tensor  # (l,) bool: special tokens, attended in every coalition
    word_tokens: torch.Tensor  # (n l) bool: tokens of each word (a word cut off by truncation has none)


def word_game(tokenizer, query: str, max_tokens: int) -> WordGame:
    """Tokenize ``query`` and map its tokens to its whitespace-separated words (a fast tokenizer's
    character offsets)."""
    words, starts = [], []
    position = 0
    for word in query.split():
        position = query.index(word, position)
        words.append(word)
        starts.append(position)
        position += len(word)
    if not words:
        raise GroundingError("every query must be a non-empty sentence")
    if not getattr(tokenizer, "is_fast", False):
        raise GroundingError("explaining a grounding needs a fast (Rust) tokenizer, which this checkpoint's text "
                             "encoder does not have")
    encoded = tokenizer(query, truncation=True, max_length=max_tokens, return_offsets_mapping=True,
                        return_special_tokens_mask=True)
    ids = torch.tensor(encoded["input_ids"])
    special = torch.tensor(encoded["special_tokens_mask"], dtype=torch.bool)
    ends = [s + len(w) for s, w in zip(starts, words)]
    word_tokens = torch.zeros(len(words), len(ids), dtype=torch.bool)
    for t, (a, b) in enumerate(encoded["offset_mapping"]):
        if special[t] or b <= a:
            continue
        for w, (s, e) in enumerate(zip(starts, ends)):
            if a < e and b > s:
                word_tokens[w, t] = True
                break
    return WordGame(words, ids, special, word_tokens)


def _accepts_position_ids(backbone) -> bool:
    """Absolute-position encoders (BERT, MiniLM, RoBERTa, ...) take ``position_ids``; with them a
    coalition's attended tokens can be packed to the front of a shorter sequence."""
    import inspect

    return "position_ids" in inspect.signature(backbone.forward).parameters and \
        getattr(backbone.config, "position_embedding_type", "absolute") == "absolute"


@torch.inference_mode()
def coalition_scores(grounder: Grounder, game: WordGame, coalitions: np.ndarray, cells_c: torch.Tensor,
                     cells_u: torch.Tensor, *, batch_size: int = BATCH_SIZE, pack: bool | None = None) -> np.ndarray:
    """``(k n)`` bool coalitions of words -> their scores of the cells whose normalised features
    are ``cells_c, cells_u``: ``(k,)`` for one cell ``(d)``, ``(k C)`` for ``C`` cells ``(C d)``.

    A coalition's sentence is the query with the absent words' tokens masked out of the attention.
    With ``pack`` (the default when the backbone takes position ids) the attended tokens are
    moved to the front, keeping their positions, and coalitions of similar length are batched
    together: the same numbers as masking (a masked token neither attends nor is attended to, nor
    pooled), at about half the cost, since most coalitions hold about half the words."""
    one_cell = cells_c.ndim == 1
    cells_c, cells_u = cells_c.reshape(-1, cells_c.shape[-1]), cells_u.reshape(-1, cells_u.shape[-1])  # (C d)
    present = torch.from_numpy(np.ascontiguousarray(coalitions)).float()  # (k n)
    attend = (present @ game.word_tokens.float()).bool() | game.always_on  # (k l)
    if pack is None:
        pack = _accepts_position_ids(grounder.model.text_encoder.backbone)
    lengths = attend.sum(dim=1)  # (k,)
    order = torch.argsort(lengths, stable=True) if pack else torch.arange(attend.shape[0])
    out = torch.empty(attend.shape[0], cells_c.shape[0], dtype=torch.float64)  # (k C)
    for begin in range(0, attend.shape[0], batch_size):
        rows = order[begin:begin + batch_size]
        if pack:
            width = int(lengths[rows].max())
            # Attended token positions first (stable), the rest after; keep the first ``width``.
            positions = torch.argsort((~attend[rows]).to(torch.int8), dim=1, stable=True)[:, :width]  # (k' width)
            ids = game.input_ids[positions]
            mask = (torch.arange(width) < lengths[rows, None]).long()
            extra = positions
        else:
            mask = attend[rows].long()
            ids = game.input_ids.expand(mask.shape[0], -1)
            extra = None
        s_c, s_u = grounder.encode_tokens(ids, mask, extra)  # (k' d)
        scores = score_cells(s_c @ cells_c.T, s_u @ cells_u.T, grounder.cfg.eval.score_gamma)  # (k' C)
        out[rows] = scores.double().cpu()
    return out[:, 0].numpy() if one_cell else out.numpy()


@dataclass
class TopCell:
    """The query's top moment and the map it was found in (one window of the video)."""

    moment: Moment
    cell: int  # its index among the window's valid cells
    cells_c: torch.Tensor  # (C d) normalised features of every valid cell of that window
    cells_u: torch.Tensor  # (C d)
    rivals: np.ndarray  # (C,) bool: the cells NMS keeps beside the top one (IoU at most eval.nms_thresh)


@torch.inference_mode()
def find_top_cell(grounder: Grounder, video: EncodedVideo, query: str, window_s: float | None) -> TopCell:
    """The query's top moment as ``ground`` finds it (its cells and scores: ``Grounder.video_cells``,
    ``Grounder.query_scores``; ranked by ``rank_moments``), with its window's cells."""
    cells = grounder.video_cells(video, window_s)
    scores = grounder.query_scores(query, cells.cells_c, cells.cells_u).cpu().numpy()  # (w C), as ground scores it
    ranked = rank_moments(scores.reshape(-1), cells.spans, grounder.cfg.eval.nms_thresh, max_keep=1)
    w, c = divmod(int(ranked.index[0]), cells.num_cells)
    spans = cells.spans[w * cells.num_cells:(w + 1) * cells.num_cells]  # (C 2): the top moment's window
    rivals = span_iou(spans, spans[c]) <= np.float32(grounder.cfg.eval.nms_thresh)  # (C,) NMS keeps IoU <= thresh
    rivals[c] = False
    if not rivals.any():  # every cell overlaps the top one: the runner-up is the best other cell
        rivals = np.arange(len(spans)) != c
    return TopCell(to_moments(ranked, video.duration_s)[0], c, cells.cells_c[w], cells.cells_u[w], rivals)


def target_values(scores: np.ndarray, top: TopCell, target: str) -> np.ndarray:
    """``(k C)`` coalition scores of the window's cells -> ``(k,)`` values of ``target``."""
    mine = scores[:, top.cell]  # (k,)
    if target == "raw":
        return mine
    if target == "mean":
        return mine - scores.mean(axis=1)
    if target == "runner_up":
        return mine - scores[:, top.rivals].max(axis=1)
    raise GroundingError(f"the explanation target must be one of {', '.join(TARGETS)}, got {target!r}")


def describe_target(target: str, value_all: float, value_none: float, num_cells: int) -> str:
    """The sentence that says what the word values are relative to."""
    what = {
        "mean": f"the top moment's score minus the mean score of all {num_cells} moments of its map",
        "runner_up": "the top moment's lead over its runner-up (its score minus that of the best moment NMS keeps beside it)",
        "raw": "the top moment's score",
    }[target]
    return (f"each word's share of {what}: they sum to {value_all:+.3f} with the whole query minus "
            f"{value_none:+.3f} with no words")


def explain_top_moment(grounder: Grounder, video: EncodedVideo, query: str, *, target: str = "runner_up",
                       window_s: float | None = None, max_exact_words: int = MAX_EXACT_WORDS,
                       num_permutations: int = NUM_PERMUTATIONS, seed: int = 0) -> Explanation:
    """The Shapley value of each word of ``query`` for ``target`` of its top moment in ``video``
    (``"runner_up"``, ``"mean"`` or ``"raw"``: see the module's docstring)."""
    if target not in TARGETS:
        raise GroundingError(f"the explanation target must be one of {', '.join(TARGETS)}, got {target!r}")
    query = check_queries([query])[0]
    game = word_game(grounder.model.tokenizer, query, grounder.cfg.model.text_max_tokens)
    top = find_top_cell(grounder, video, query, window_s)
    players = np.flatnonzero(game.word_tokens.any(dim=1).numpy())  # words that own a token; the rest are dummies
    n = len(players)
    if n == 0:
        raise GroundingError(f"no word of the query {query[:40]!r} reaches the text encoder; write the query in words")

    def value_of(coalitions: np.ndarray) -> np.ndarray:  # (k n) over the players -> (k,)
        words = np.zeros((coalitions.shape[0], len(game.words)), dtype=bool)
        words[:, players] = coalitions
        return target_values(coalition_scores(grounder, game, words, top.cells_c, top.cells_u), top, target)

    estimate = shapley_values(value_of, n, max_exact_players=max_exact_words, num_permutations=num_permutations,
                              seed=seed)
    values, stderr = np.zeros(len(game.words)), np.zeros(len(game.words))
    values[players], stderr[players] = estimate.values, estimate.stderr
    words = [WordValue(display_word(w), float(v), float(e)) for w, v, e in zip(game.words, values, stderr)]
    relative_to = describe_target(target, estimate.value_all, estimate.value_none, len(top.rivals))
    return Explanation(query, top.moment, words, estimate.value_all, estimate.value_none, estimate.exact,
                       estimate.num_evaluations, target, relative_to)
