"""Why this moment: the Shapley value of each word of a query for the score of its top moment.

The game: the players are the query's words (split on whitespace); a coalition's value is the
score (docs/method.md section 1) of the query's top moment, the one ``Grounder.ground`` ranks
first, when the words outside the coalition are masked out of the text encoder's attention mask
(and so out of its mean pooling too); the special tokens ([CLS], [SEP]) always stay. ``v(all)``
is the moment's score; ``v(none)`` the score of an empty sentence. The values sum to
``v(all) - v(none)`` (efficiency): a positive value is a word that raises this moment's score.

    explanation = explain_top_moment(grounder, video, "the yellow triangle turns green.")
    for word in explanation.words:
        print(word.word, word.value)

The cost is the text encoder: one forward pass per distinct coalition, batched. Queries of up to
``max_exact_words`` words enumerate all 2^n coalitions (exact); longer ones sample orderings
(``g2l.ops.shapley_values.shapley_values``, seeded, with a standard error per word).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from g2l.inference import EncodedVideo, Grounder, GroundingError, Moment
from g2l.models.grounding import score_cells
from g2l.ops.shapley_values import shapley_values
from g2l.ops.spans import cells_to_spans

MAX_EXACT_WORDS = 8  # 2^8 = 256 forward passes, about 1 s of MiniLM on two CPU cores
NUM_PERMUTATIONS = 12  # for longer queries: 12 orderings (6 antithetic pairs)
BATCH_SIZE = 32  # coalitions per text-encoder call (packed by length: short batches are cheap)


@dataclass
class WordValue:
    word: str
    value: float
    stderr: float = 0.0


@dataclass
class Explanation:
    query: str
    moment: Moment  # the top moment explained
    words: list[WordValue]
    value_all: float  # v(all words) = the moment's score
    value_none: float  # v(no word): the score with only the special tokens
    exact: bool
    num_evaluations: int  # text-encoder passes (distinct coalitions)


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
def coalition_scores(grounder: Grounder, game: WordGame, coalitions: np.ndarray, cell_c: torch.Tensor,
                     cell_u: torch.Tensor, *, batch_size: int = BATCH_SIZE, pack: bool | None = None) -> np.ndarray:
    """``(k n)`` bool coalitions of words -> ``(k,)`` scores of one cell, whose normalised
    features are ``cell_c, cell_u (d)``.

    A coalition's sentence is the query with the absent words' tokens masked out of the attention.
    With ``pack`` (the default when the backbone takes position ids) the attended tokens are
    moved to the front, keeping their positions, and coalitions of similar length are batched
    together: the same numbers as masking (a masked token neither attends nor is attended to, nor
    pooled), at about half the cost, since most coalitions hold about half the words."""
    present = torch.from_numpy(np.ascontiguousarray(coalitions)).float()  # (k n)
    attend = (present @ game.word_tokens.float()).bool() | game.always_on  # (k l)
    if pack is None:
        pack = _accepts_position_ids(grounder.model.text_encoder.backbone)
    lengths = attend.sum(dim=1)  # (k,)
    order = torch.argsort(lengths, stable=True) if pack else torch.arange(attend.shape[0])
    out = torch.empty(attend.shape[0], dtype=torch.float64)
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
        scores = score_cells(s_c @ cell_c, s_u @ cell_u, grounder.cfg.eval.score_gamma)
        out[rows] = scores.double().cpu()
    return out.numpy()


@torch.inference_mode()
def top_cell(grounder: Grounder, video: EncodedVideo, query: str, window_s: float | None):
    """``(Moment, cell_c (d), cell_u (d))`` of the query's highest-scoring cell over all windows:
    the top moment ``ground`` returns (NMS keeps the best candidate first)."""
    windows, cells_c, cells_u = grounder._cells(video, window_s)  # (w C d)
    tokens = grounder.model.tokenizer([query], truncation=True, max_length=grounder.cfg.model.text_max_tokens,
                                      return_tensors="pt")
    s_c, s_u = grounder.encode_tokens(tokens["input_ids"], tokens["attention_mask"])
    scores = score_cells(torch.einsum("d,wcd->wc", s_c[0], cells_c), torch.einsum("d,wcd->wc", s_u[0], cells_u),
                         grounder.cfg.eval.score_gamma).float()  # (w C)
    best = int(torch.argmax(scores))
    w, c = divmod(best, scores.shape[1])
    start_idx = grounder.model.cell_start_idx[c:c + 1].cpu().numpy()
    end_idx = grounder.model.cell_end_idx[c:c + 1].cpu().numpy()
    offset, length = windows[w]
    span = cells_to_spans(start_idx, end_idx, length, grounder.model.num_clips)[0] + np.float32(offset)
    moment = Moment(float(span[0]), float(min(span[1], video.duration_s)), float(scores[w, c]))
    return moment, cells_c[w, c], cells_u[w, c]


def explain_top_moment(grounder: Grounder, video: EncodedVideo, query: str, *, window_s: float | None = None,
                       max_exact_words: int = MAX_EXACT_WORDS, num_permutations: int = NUM_PERMUTATIONS,
                       seed: int = 0) -> Explanation:
    """The Shapley value of each word of ``query`` for the score of its top moment in ``video``."""
    query = query.strip()
    if not query:
        raise GroundingError("every query must be a non-empty sentence")
    game = word_game(grounder.model.tokenizer, query, grounder.cfg.model.text_max_tokens)
    moment, cell_c, cell_u = top_cell(grounder, video, query, window_s)
    estimate = shapley_values(lambda coalitions: coalition_scores(grounder, game, coalitions, cell_c, cell_u),
                              len(game.words), max_exact_players=max_exact_words,
                              num_permutations=num_permutations, seed=seed)
    words = [WordValue(w, float(v), float(e)) for w, v, e in zip(game.words, estimate.values, estimate.stderr)]
    return Explanation(query, moment, words, estimate.value_all, estimate.value_none, estimate.exact,
                       estimate.num_evaluations)
