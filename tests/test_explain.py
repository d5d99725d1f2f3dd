"""Why this moment (g2l/explain.py): each word's Shapley value for how far a query's top moment
leads its runner-up (or its raw score, or its margin over the mean), on the real demo model and on
a game whose scores the test sets. The axioms hold on the model's own game: efficiency (the values sum
to v(all) - v(none)), symmetry (two players that own the same tokens get the same value), dummy (a
word the tokenizer cut off gets 0); sampled values converge to the exact ones."""

import json

import numpy as np
import pytest
import torch

from g2l.assets import demo_checkpoint, demo_example
from g2l.cli import ground_main
import g2l.explain as explain_module
from g2l.explain import WordGame, coalition_scores, display_word, explain_top_moment, find_top_cell, word_game
from g2l.inference import Grounder, GroundingError
from g2l.ops.shapley_values import exact_shapley_from_value_table, shapley_values
from tests.reference.shapley_values import mask_permutation_shapley


@pytest.fixture(scope="module")
def demo():
    # fp32: identities to 1e-5 need exact arithmetic (bf16, what auto picks on some CPUs, rounds by batch shape).
    grounder = Grounder.from_checkpoint(demo_checkpoint(), device="cpu", precision="fp32")
    video_path, queries = demo_example()
    return grounder, grounder.encode_video(video_path), queries


def top_cell(grounder, video, query):
    """``(Moment, cell_c (d), cell_u (d))`` of the query's top moment in the whole video."""
    top = find_top_cell(grounder, video, query, None)
    return top.moment, top.cells_c[top.cell], top.cells_u[top.cell]


@pytest.mark.parametrize("window_s", [None, 16.0])
def test_the_top_cell_is_the_top_moment_ground_returns(demo, window_s):
    """``find_top_cell`` goes through ``Grounder.video_cells`` and ``query_scores`` and ranks with
    ``rank_moments``: its moment is ``ground``'s first, to the bit, in a window of the video too,
    and its cells are that window's."""
    grounder, video, queries = demo
    for query in [*queries, "a red circle moves left"]:
        first = grounder.ground(video, [query], top_k=1, window_s=window_s)[0].moments[0]
        top = find_top_cell(grounder, video, query, window_s)
        assert top.moment == first
        cells = grounder.video_cells(video, window_s)
        windows = [w for w in range(len(cells.windows_s)) if top.cells_c.data_ptr() == cells.cells_c[w].data_ptr()]
        assert len(windows) == 1 and top.rivals.shape == (cells.num_cells,) and not top.rivals[top.cell]
        spans = cells.spans[windows[0] * cells.num_cells:][top.cell]
        assert (float(spans[0]), min(float(spans[1]), video.duration_s)) == (first.start_s, first.end_s)


def test_the_explained_moment_is_the_top_moment_and_the_values_sum_to_its_score_gain(demo):
    grounder, video, queries = demo
    for query in queries:
        top, second = grounder.ground(video, [query], top_k=2)[0].moments
        for target, expected_all in (("raw", top.score), ("runner_up", top.score - second.score)):
            explanation = explain_top_moment(grounder, video, query, target=target)
            assert explanation.exact and explanation.num_evaluations == 2 ** len(query.split())
            assert [w.word for w in explanation.words] == query.rstrip(".").split()  # "smaller." shows as "smaller"
            assert (explanation.moment.start_s, explanation.moment.end_s) == (top.start_s, top.end_s)
            # The runner-up is the second moment ground returns: the best one NMS keeps beside the top one.
            assert explanation.value_all == pytest.approx(expected_all, abs=1e-5)
            total = sum(w.value for w in explanation.words)
            assert total == pytest.approx(explanation.value_all - explanation.value_none, abs=1e-9)  # efficiency
            assert f"{explanation.value_all:+.3f}" in explanation.relative_to
    assert explain_top_moment(grounder, video, queries[0]).target == "runner_up"  # the default


@pytest.mark.parametrize("word, shown", [("coffee.", "coffee"), ("(red)", "red"), ('"stop!"', "stop"),
                                         ("«vite»,", "vite"), ("don't", "don't"), ("e-mail", "e-mail"),
                                         ("...", "..."), ("green", "green")])
def test_a_word_is_shown_without_the_punctuation_around_it(word, shown):
    assert display_word(word) == shown


def test_the_explanation_table_shows_words_without_punctuation_and_values_as_before(demo):
    grounder, video, _ = demo
    query = "a white square gets smaller."
    plain = explain_top_moment(grounder, video, query.rstrip("."))
    dotted = explain_top_moment(grounder, video, query)
    assert [w.word for w in dotted.words] == ["a", "white", "square", "gets", "smaller"]
    # The game is unchanged: the period stays in the text encoder's input, so the values are those of
    # the query as written (the same tokens per word), not those of the query without the period.
    game = word_game(grounder.model.tokenizer, query, grounder.cfg.model.text_max_tokens)
    assert game.words[-1] == "smaller." and dotted.value_all != pytest.approx(plain.value_all, abs=1e-9)
    total = sum(w.value for w in dotted.words)
    assert total == pytest.approx(dotted.value_all - dotted.value_none, abs=1e-9)


def controlled_game(monkeypatch, effects: np.ndarray, base: np.ndarray):
    """Replace the text encoder's scores by ``base (C) + sum of the present words' effects (n C)``."""
    def scores(grounder, game, coalitions, cells_c, cells_u, **_):
        assert coalitions.shape[1] == effects.shape[0] and cells_c.shape[0] == effects.shape[1]
        return base + coalitions.astype(np.float64) @ effects  # (k C)

    monkeypatch.setattr(explain_module, "coalition_scores", scores)


@pytest.mark.parametrize("target", ["runner_up", "mean", "raw"])
def test_the_targets_on_a_game_whose_scores_are_known(demo, monkeypatch, target):
    grounder, video, queries = demo
    query = "the yellow triangle turns green."  # five words (the game is set by hand below)
    top = explain_module.find_top_cell(grounder, video, query, None)
    cells = top.cells_c.shape[0]
    rival = int(np.flatnonzero(top.rivals)[0])
    rng = np.random.default_rng(3)
    effects = rng.uniform(-0.01, 0.01, size=(5, cells))
    effects[:, top.cell] = [0.05, -0.02, 0.03, 0.0, 0.01]
    effects[:, rival] = [0.01, 0.01, -0.01, 0.02, 0.0]
    base = np.zeros(cells)
    base[rival] = 0.5  # the rival beats every other cell in every coalition: the runner-up game is additive
    controlled_game(monkeypatch, effects, base)
    explanation = explain_top_moment(grounder, video, query, target=target)
    # An additive game: each word's value is its own effect on the target, worked out by hand.
    expected = {"raw": effects[:, top.cell], "mean": effects[:, top.cell] - effects.mean(axis=1),
                "runner_up": effects[:, top.cell] - effects[:, rival]}[target]
    assert np.allclose([w.value for w in explanation.words], expected, atol=1e-12)
    assert explanation.value_none == pytest.approx({"raw": 0.0, "mean": -0.5 / cells, "runner_up": -0.5}[target])
    total = sum(w.value for w in explanation.words)
    assert total == pytest.approx(explanation.value_all - explanation.value_none, abs=1e-12)  # efficiency


def test_the_runner_up_game_is_not_additive_and_keeps_efficiency(demo, monkeypatch):
    """Two rivals that take turns being the runner-up: the values are worked out by enumeration."""
    grounder, video, queries = demo
    query = "red blue"
    top = explain_module.find_top_cell(grounder, video, query, None)
    rivals = np.flatnonzero(top.rivals)[:2]
    cells = top.cells_c.shape[0]
    effects, base = np.zeros((2, cells)), np.full(cells, -1.0)
    base[top.cell], base[rivals] = 0.0, [0.2, 0.1]
    effects[0, rivals[0]] = -0.3  # "red" knocks the first rival down: the second becomes the runner-up
    effects[1, top.cell] = 0.4  # "blue" raises the top moment
    controlled_game(monkeypatch, effects, base)
    explanation = explain_top_moment(grounder, video, query)
    # v(none) = 0 - 0.2, v(red) = 0 - 0.1, v(blue) = 0.4 - 0.2, v(both) = 0.4 - 0.1:
    # red = ((v(red) - v(none)) + (v(both) - v(blue))) / 2 = 0.1; blue = 0.4.
    assert [w.value for w in explanation.words] == pytest.approx([0.1, 0.4], abs=1e-12)
    assert (explanation.value_none, explanation.value_all) == pytest.approx((-0.2, 0.3), abs=1e-12)


def test_an_unknown_target_and_a_query_without_letters_are_refused(demo):
    grounder, video, queries = demo
    with pytest.raises(GroundingError, match="target must be one of runner_up, mean, raw"):
        explain_top_moment(grounder, video, queries[0], target="score")
    with pytest.raises(GroundingError, match="has no letters"):
        explain_top_moment(grounder, video, "\u200b \u200b")


def test_sampling_over_boolean_coalitions_matches_the_exact_values():
    """``shapley_values``' sampled path (boolean coalitions, any number of players) on a
    non-additive game: the same orderings and values as the 64-bit-mask sampler it replaced
    (tests/reference/shapley_values.py), efficiency in every draw, convergence to the exact values
    of ``exact_shapley_from_value_table``."""
    n = 6
    table = np.array([np.sin(mask * 0.7) + bin(mask).count("1") ** 1.5 for mask in range(1 << n)])  # a non-additive game
    exact = exact_shapley_from_value_table(table)
    weights = 1 << np.arange(n)

    def value_of(coalitions):
        return table[coalitions.astype(np.int64) @ weights]

    errors = []
    for permutations in (4, 4096):
        estimate = shapley_values(value_of, n, max_exact_players=0, num_permutations=permutations, seed=0)
        assert estimate.values.sum() == pytest.approx(table[-1] - table[0], abs=1e-9)
        assert (estimate.value_all, estimate.value_none) == (table[-1], table[0])
        masks, _, evaluations, _, _ = mask_permutation_shapley(value_of, n, num_permutations=permutations, seed=0)
        assert np.allclose(estimate.values, masks, atol=1e-12) and estimate.num_evaluations == evaluations
        errors.append(np.abs(estimate.values - exact).max())
    assert errors[1] < errors[0] / 8
    assert np.all(np.abs(estimate.values - exact) <= 5 * estimate.stderr)  # 2048 pairs: the stderr is reliable


@pytest.mark.parametrize("max_tokens", [64, 120])
def test_a_query_of_more_than_62_words_is_explained_by_sampling(demo, monkeypatch, max_tokens):
    grounder, video, _ = demo
    monkeypatch.setattr(grounder.cfg.model, "text_max_tokens", max_tokens)
    words = ("the yellow triangle turns green while a white square gets smaller " * 7).split()[:70]
    explanation = explain_top_moment(grounder, video, " ".join(words), num_permutations=4)
    assert not explanation.exact and [w.word for w in explanation.words] == words
    total = sum(w.value for w in explanation.words)
    assert total == pytest.approx(explanation.value_all - explanation.value_none, abs=1e-9)
    if max_tokens == 64:  # 62 words fit: the 8 cut off are dummies with exactly 0
        assert [w.value for w in explanation.words[62:]] == [0.0] * 8
    else:  # all 70 are players (past the 64-bit masks of shapley_values)
        assert sum(w.value != 0 for w in explanation.words) > 62


def test_symmetric_players_get_equal_values_and_a_dummy_gets_zero(demo):
    grounder, video, queries = demo
    query = queries[1]  # "the yellow triangle turns green."
    game = word_game(grounder.model.tokenizer, query, grounder.cfg.model.text_max_tokens)
    _, cell_c, cell_u = top_cell(grounder, video, query)
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
        if permutations >= 64:  # a standard error estimated from 4 orderings can be far too small
            assert np.all(np.abs(values - exact_values) <= 5 * np.array([w.stderr for w in sampled.words]) + 1e-6)
        errors.append(np.abs(values - exact_values).max())
    assert errors[-1] < errors[0] / 4


def test_packing_the_attended_tokens_gives_the_masked_scores(demo, monkeypatch):
    grounder, video, _ = demo
    monkeypatch.setattr(grounder, "_forward_dtype", None)  # an identity of exact arithmetic: float32 (bf16 rounds by shape)
    query = "the small yellow triangle slowly turns green while a white square shrinks"
    game = word_game(grounder.model.tokenizer, query, grounder.cfg.model.text_max_tokens)
    _, cell_c, cell_u = top_cell(grounder, video, query)
    coalitions = np.random.default_rng(0).random((40, len(game.words))) < 0.5
    packed = coalition_scores(grounder, game, coalitions, cell_c, cell_u, pack=True, batch_size=8)
    masked = coalition_scores(grounder, game, coalitions, cell_c, cell_u, pack=False)
    assert np.allclose(packed, masked, atol=1e-5)


def test_ground_explain_json(capsys):
    video_path, queries = demo_example()
    assert ground_main([str(video_path), *queries, "--explain", "--json", "--top-k", "2"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    for query, result in zip(queries, results):
        assert [entry["word"] for entry in result["explanation"]] == query.rstrip(".").split()
        assert all(isinstance(entry["value"], float) for entry in result["explanation"])
        assert all(entry["stderr"] == 0.0 for entry in result["explanation"])  # short queries: exact values


def test_the_json_carries_each_words_standard_error():
    # A sampled explanation's error bars (the plot draws them) are in the JSON too, word by word.
    from g2l.explain import Explanation, WordValue
    from g2l.inference import result_json
    from g2l.inference import Moment, QueryResult

    words = [WordValue("red", 0.25, 0.01), WordValue("circle", -0.125, 0.03)]
    explanation = Explanation("red circle", Moment(1.0, 2.0, 0.5), words, 0.5, 0.375, False, 64)
    out = result_json(QueryResult("red circle", [Moment(1.0, 2.0, 0.5)]), explanation)
    assert out["explanation"] == [{"word": "red", "value": 0.25, "stderr": 0.01},
                                  {"word": "circle", "value": -0.125, "stderr": 0.03}]
