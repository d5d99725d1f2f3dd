"""Why this moment (g2l/explain.py): each word's Shapley value for the score of a query's top
moment, on the real demo model. The axioms hold on the model's own game: efficiency (the values sum
to v(all) - v(none)), symmetry (two players that own the same tokens get the same value), dummy (a
word the tokenizer cut off gets 0); sampled values converge to the exact ones."""

import json

import numpy as np
import pytest
import torch

from g2l.assets import demo_checkpoint, demo_example
from g2l.cli import ground_main
from g2l.explain import WordGame, coalition_scores, explain_top_moment, top_cell, word_game
from g2l.inference import Grounder
from g2l.ops.shapley_values import shapley_values


@pytest.fixture(scope="module")
def demo():
    grounder = Grounder.from_checkpoint(demo_checkpoint(), device="cpu")
    video_path, queries = demo_example()
    return grounder, grounder.encode_video(video_path), queries


def test_the_explained_moment_is_the_top_moment_and_the_values_sum_to_its_score_gain(demo):
    grounder, video, queries = demo
    for query in queries:
        top = grounder.ground(video, [query], top_k=1)[0].moments[0]
        explanation = explain_top_moment(grounder, video, query)
        assert explanation.exact and explanation.num_evaluations == 2 ** len(query.split())
        assert [w.word for w in explanation.words] == query.split()
        assert (explanation.moment.start_s, explanation.moment.end_s) == (top.start_s, top.end_s)
        assert explanation.value_all == pytest.approx(top.score, abs=1e-5)
        total = sum(w.value for w in explanation.words)
        assert total == pytest.approx(explanation.value_all - explanation.value_none, abs=1e-9)  # efficiency


def test_symmetric_players_get_equal_values_and_a_dummy_gets_zero(demo):
    grounder, video, queries = demo
    query = queries[1]  # "the yellow triangle turns green."
    game = word_game(grounder.model.tokenizer, query, grounder.cfg.model.text_max_tokens)
    _, cell_c, cell_u = top_cell(grounder, video, query, None)
    # Players: the words, a second owner of the tokens of word 2 (symmetric with it: the tokens are
    # attended when either is present) and a player that owns no token (a dummy).
    tokens = torch.cat([game.word_tokens, game.word_tokens[2:3], torch.zeros_like(game.word_tokens[:1])])
    extended = WordGame(game.words + ["twin", "nothing"], game.input_ids, game.always_on, tokens)
    n = tokens.shape[0]
    estimate = shapley_values(lambda c: coalition_scores(grounder, extended, c, cell_c, cell_u), n, max_exact_players=n)
    assert estimate.values[2] == pytest.approx(estimate.values[n - 2], abs=1e-9)
    assert estimate.values[n - 1] == pytest.approx(0.0, abs=1e-9)
    assert estimate.values.sum() == pytest.approx(estimate.value_all - estimate.value_none, abs=1e-9)


def test_a_word_cut_off_by_the_token_limit_is_a_dummy(demo, monkeypatch):
    grounder, video, queries = demo
    monkeypatch.setattr(grounder.cfg.model, "text_max_tokens", 5)  # [CLS] a white square [SEP]
    explanation = explain_top_moment(grounder, video, "a white square gets smaller.")
    assert [w.value for w in explanation.words[3:]] == [0.0, 0.0]
    assert all(w.value != 0 for w in explanation.words[:3])


def test_sampled_values_converge_to_the_exact_ones_on_the_model(demo):
    grounder, video, _ = demo
    query = "a small white square gets smaller"
    exact = explain_top_moment(grounder, video, query)
    exact_values = np.array([w.value for w in exact.words])
    errors = []
    for permutations in (4, 64, 1024):
        sampled = explain_top_moment(grounder, video, query, max_exact_words=0, num_permutations=permutations, seed=1)
        values = np.array([w.value for w in sampled.words])
        assert not sampled.exact and values.sum() == pytest.approx(exact_values.sum(), abs=1e-6)
        assert np.all(np.abs(values - exact_values) <= 5 * np.array([w.stderr for w in sampled.words]) + 1e-6)
        errors.append(np.abs(values - exact_values).max())
    assert errors[-1] < errors[0] / 4


def test_packing_the_attended_tokens_gives_the_masked_scores(demo, monkeypatch):
    grounder, video, _ = demo
    monkeypatch.setattr(grounder, "_forward_dtype", None)  # an identity of exact arithmetic: float32 (bf16 rounds by shape)
    query = "the small yellow triangle slowly turns green while a white square shrinks"
    game = word_game(grounder.model.tokenizer, query, grounder.cfg.model.text_max_tokens)
    _, cell_c, cell_u = top_cell(grounder, video, query, None)
    coalitions = np.random.default_rng(0).random((40, len(game.words))) < 0.5
    packed = coalition_scores(grounder, game, coalitions, cell_c, cell_u, pack=True, batch_size=8)
    masked = coalition_scores(grounder, game, coalitions, cell_c, cell_u, pack=False)
    assert np.allclose(packed, masked, atol=1e-5)


def test_ground_explain_json(capsys):
    video_path, queries = demo_example()
    assert ground_main([str(video_path), *queries, "--explain", "--json", "--top-k", "2"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    for query, result in zip(queries, results):
        assert [entry["word"] for entry in result["explanation"]] == query.split()
        assert all(isinstance(entry["value"], float) for entry in result["explanation"])
