"""Annotation parsers on the real public files (exact counts, known records) and on broken input.

The counts below were found by reading the raw files independently (plain json/csv, no project
code) and agree with the published loaders: 2D-TAN's Charades loader (``e = min(e, D)``, keep
``s < e``) drops the same 4 train queries as MMN's JSON release (12,408 -> 12,404); 2D-TAN's
ActivityNet loader (keep ``s < e``, then clamp) drops 4 of 37,421 train queries.
"""

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from g2l.data.annotations import (
    AnnotationError,
    group_by_video,
    guess_format,
    load_annotations,
    parse_jsonl,
)
from g2l.data.records import Annotation

ANNOTATIONS = Path("annotations")

# path under shared/data -> (format, kept, videos, dropped by reason, clamped by reason)
REAL_FILES = {
    "charades_sta/2dtan/charades_sta_train.txt": ("charades_txt", 12404, 5336, {"start >= end": 4}, {"end > duration": 1802}),
    "charades_sta/2dtan/charades_sta_test.txt": ("charades_txt", 3720, 1334, {}, {"end > duration": 562}),
    "charades_sta/mmn/charades_train.json": ("anet_json", 12404, 5336, {}, {}),
    "charades_sta/mmn/charades_test.json": ("anet_json", 3720, 1334, {}, {}),
    "activitynet_captions/2dtan/train.json": ("anet_json", 37417, 10009, {"start >= end": 4}, {"end > duration": 261}),
    "activitynet_captions/2dtan/val.json": ("anet_json", 17505, 4917, {}, {"end > duration": 134}),
    "activitynet_captions/2dtan/test.json": ("anet_json", 17031, 4885, {}, {"end > duration": 111}),
    "tacos/2dtan/train.json": ("tacos_json", 9790, 75, {}, {"end > duration": 43}),
    "tacos/2dtan/val.json": ("tacos_json", 4436, 27, {}, {}),
    "tacos/2dtan/test.json": ("tacos_json", 4001, 25, {}, {"end > duration": 5}),
    "qvhighlights/highlight_train_release.jsonl": ("qvhighlights", 7218, 7100, {}, {}),
    "qvhighlights/highlight_val_release.jsonl": ("qvhighlights", 1550, 1519, {}, {}),
    "qvhighlights/highlight_test_release.jsonl": ("qvhighlights", 0, 0, {"no ground-truth windows": 1542}, {}),
}


@pytest.fixture(scope="module")
def parsed(shared_data):
    """``parsed(relative_path)`` -> ``(annotations, report)``, each real file parsed once per module."""
    cache = {}

    def parse(relative_path: str):
        if relative_path not in cache:
            cache[relative_path] = load_annotations(shared_data / ANNOTATIONS / relative_path)
        return cache[relative_path]

    return parse


# ---------------------------------------------------------------------------------------------
# Real files


@pytest.mark.parametrize("relative_path", list(REAL_FILES))
def test_real_file_counts(parsed, relative_path):
    _, kept, num_videos, dropped, clamped = REAL_FILES[relative_path]
    annotations, report = parsed(relative_path)
    assert len(annotations) == report.kept == kept
    assert len(group_by_video(annotations)) == num_videos
    assert dict(report.dropped) == dropped
    assert dict(report.clamped) == clamped


@pytest.mark.parametrize("relative_path", list(REAL_FILES))
def test_real_file_format_is_guessed(shared_data, relative_path):
    assert guess_format(shared_data / ANNOTATIONS / relative_path) == REAL_FILES[relative_path][0]


@pytest.mark.parametrize("relative_path", list(REAL_FILES))
def test_real_records_are_clean(parsed, relative_path):
    for annotation in parsed(relative_path)[0]:
        assert annotation.sentence and annotation.sentence == annotation.sentence.strip()
        assert math.isfinite(annotation.duration_s) and annotation.duration_s > 0
        assert annotation.windows_s
        for start_s, end_s in annotation.windows_s:
            assert 0 <= start_s < end_s <= annotation.duration_s


def test_raw_query_counts_match_the_readme(parsed):
    # README: Charades-STA train 12,408 / test 3,720; ActivityNet 37,421 / 17,505 / 17,031;
    # TACoS 9,790 / 4,436 / 4,001; QVHighlights 7,218 / 1,550 / 1,542.
    for relative_path, raw in [
        ("charades_sta/2dtan/charades_sta_train.txt", 12408),
        ("charades_sta/2dtan/charades_sta_test.txt", 3720),
        ("activitynet_captions/2dtan/train.json", 37421),
        ("activitynet_captions/2dtan/val.json", 17505),
        ("activitynet_captions/2dtan/test.json", 17031),
        ("tacos/2dtan/train.json", 9790),
        ("tacos/2dtan/val.json", 4436),
        ("tacos/2dtan/test.json", 4001),
        ("qvhighlights/highlight_train_release.jsonl", 7218),
        ("qvhighlights/highlight_val_release.jsonl", 1550),
        ("qvhighlights/highlight_test_release.jsonl", 1542),
    ]:
        report = parsed(relative_path)[1]
        assert report.kept + report.num_dropped == raw, relative_path


def test_charades_txt_known_records(parsed):
    annotations, report = parsed("charades_sta/2dtan/charades_sta_train.txt")
    # Line 1; duration 33.67 from the `length` column of Charades_v1_train.csv.
    assert annotations[0] == Annotation("AO8RW", 33.67, "a person is putting a book on a shelf.", ((0.0, 6.9),))
    # Line 2 "Y6R7T 20.8 30.0##..." ends after the video (29.42 s): clamped.
    assert annotations[1] == Annotation("Y6R7T", 29.42, "person begins to play on a phone.", ((20.8, 29.42),))
    # Line 8252 "LEOL6 8.0 7.0##person is holding medicine." is one of the 4 dropped.
    assert report.examples["start >= end"][0].startswith("LEOL6 line 8252")


def test_charades_txt_equals_the_mmn_json_release(parsed):
    """Two releases of the same split, cleaned independently, give the same windows and durations
    (MMN's JSON already holds clamped times); MMN also corrected 12 typos in test sentences."""
    for split, num_edited in (("train", 0), ("test", 12)):
        from_txt = parsed(f"charades_sta/2dtan/charades_sta_{split}.txt")[0]
        from_json = parsed(f"charades_sta/mmn/charades_{split}.json")[0]
        key = lambda a: (a.video_id, a.windows_s, a.duration_s)  # noqa: E731
        assert sorted(map(key, from_txt)) == sorted(map(key, from_json))
        with_sentence = lambda annotations: Counter((*key(a), a.sentence) for a in annotations)  # noqa: E731
        assert (with_sentence(from_txt) - with_sentence(from_json)).total() == num_edited
    # e.g. "person shoe,ran out of the room opening the door." -> "person shoe, ran out ..."


def test_activitynet_known_records(parsed):
    annotations, report = parsed("activitynet_captions/2dtan/train.json")
    first_video = group_by_video(annotations)["v_QOlSCBRmfWY"]
    assert [a.sentence for a in first_video] == [
        "A young woman is seen standing in a room and leads into her dancing.",
        "The girl dances around the room while the camera captures her movements.",  # was " The girl ..."
        "She continues dancing around the room and ends by laying on the floor.",
    ]
    assert first_video[1] == Annotation(
        "v_QOlSCBRmfWY",
        82.73,
        "The girl dances around the room while the camera captures her movements.",
        ((17.37, 60.81),),
    )
    # [34.77, 34.77] is an empty window: dropped.
    assert report.examples["start >= end"][0].startswith("v_N7ppHQNikv8 sentence 2")


def test_tacos_frames_become_seconds(parsed):
    annotations, _ = parsed("tacos/2dtan/train.json")
    first = group_by_video(annotations)["s17-d69.avi"][0]
    # {"fps": 29.4, "num_frames": 12438, "timestamps": [[224, 358], ...], "sentences": ["He took out a pan", ...]}
    assert first == Annotation("s17-d69.avi", 12438 / 29.4, "He took out a pan", ((224 / 29.4, 358 / 29.4),))
    assert first.windows_s[0] == pytest.approx((7.6190476, 12.1768707))


def test_qvhighlights_keeps_every_window(parsed):
    annotations, _ = parsed("qvhighlights/highlight_train_release.jsonl")
    assert annotations[0] == Annotation(
        "j7rJstUseKg_360.0_510.0",
        150.0,
        "some military patriots takes us through their safety procedures and measures.",
        ((72.0, 82.0), (84.0, 94.0), (96.0, 106.0), (108.0, 118.0), (120.0, 130.0), (136.0, 142.0), (144.0, 146.0)),
    )
    assert sum(len(a.windows_s) > 1 for a in annotations) == 7218 - 4855


def test_qvhighlights_test_split_for_inference(shared_data):
    path = shared_data / ANNOTATIONS / "qvhighlights/highlight_test_release.jsonl"
    annotations, report = load_annotations(path, require_windows=False)
    assert report.kept == len(annotations) == 1542 and not report.dropped
    assert annotations[0] == Annotation("_6hnl_BrFvs_360.0_510.0", 150.0, "A video covering hill and water from a boat", ())
    assert all(a.windows_s == () for a in annotations)


# ---------------------------------------------------------------------------------------------
# Broken input, written to tmp files


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_lines(path: Path, records: list) -> Path:
    return write(path, "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


@pytest.fixture
def charades_csv(tmp_path):
    return write(tmp_path / "Charades_v1_mini.csv", "id,subject,length\nVID01,S,20.00\nVID02,S,10.5\n")


def test_charades_txt_cleaning(tmp_path, charades_csv):
    txt = write(
        tmp_path / "charades_sta_mini.txt",
        "VID01 1.0 5.0##  a person opens a door.  \n"  # kept, sentence stripped
        "VID01 1.0 5.0 a person sits.\n"  # line 2: no '##'
        "VID01 1.0##a person sits.\n"  # line 3: two fields
        "VID01 one 5.0##a person sits.\n"  # line 4: non-numeric time
        "\n"  # line 5: blank, skipped
        "VID01 6.0 4.0##start after end.\n"  # line 6
        "VID01 18.0 25.0##ends after the video.\n"  # line 7: clamped to 20.0
        "VID01 2.0 3.0##   \n"  # line 8: empty sentence
        "VID01 nan 3.0##not a number.\n"  # line 9
        "VID03 2.0 3.0##video missing from the csv.\n"  # line 10
        "VID02 -1.0 4.0##starts before the video.\n"  # line 11: clamped to 0.0
        "VID02 12.0 15.0##wholly after the video.\n"  # line 12
    )
    annotations, report = load_annotations(txt)  # csv derived from the name
    assert annotations == [
        Annotation("VID01", 20.0, "a person opens a door.", ((1.0, 5.0),)),
        Annotation("VID01", 20.0, "ends after the video.", ((18.0, 20.0),)),
        Annotation("VID02", 10.5, "starts before the video.", ((0.0, 4.0),)),
    ]
    assert report.kept == 3
    assert dict(report.dropped) == {
        "malformed line": 3,
        "start >= end": 1,
        "empty sentence": 1,
        "non-finite time": 1,
        "video not in csv": 1,
        "window outside the video": 1,
    }
    assert dict(report.clamped) == {"end > duration": 1, "start < 0": 1}
    assert [e.split(":")[0] for e in report.examples["malformed line"]] == ["line 2", "line 3", "line 4"]
    assert report.examples["video not in csv"][0].startswith("VID03 line 10")
    assert "dropped" in report.summary() and "clamped" in report.summary()


def test_charades_csv_can_be_given_and_must_exist(tmp_path, charades_csv):
    txt = write(tmp_path / "my_queries.txt", "VID02 1.0 2.0##a person sits.\n")
    with pytest.raises(AnnotationError, match="durations_csv"):
        load_annotations(txt)  # name does not say which csv
    annotations, _ = load_annotations(txt, durations_csv=charades_csv)
    assert annotations == [Annotation("VID02", 10.5, "a person sits.", ((1.0, 2.0),))]
    with pytest.raises(AnnotationError, match="Charades_v1_x.csv"):
        load_annotations(txt, durations_csv=tmp_path / "Charades_v1_x.csv")


def test_anet_json_cleaning(tmp_path):
    data = {
        "v_a": {"duration": 10.0, "timestamps": [[0, 4], [5, 5], [3, 12], [float("nan"), 2], ["1", 2]],
                "sentences": [" first.", "empty window.", "too long.", "nan.", "string time."]},
        "v_b": {"duration": 8.0, "timestamps": [[1, 2]], "sentences": ["one", "two"]},  # malformed entry
        "v_c": {"duration": 0, "timestamps": [[1, 2]], "sentences": ["zero duration."]},
        "v_d": {"timestamps": [[1, 2]], "sentences": ["no duration."]},  # malformed entry
    }
    path = write(tmp_path / "anet.json", json.dumps(data))
    annotations, report = load_annotations(path)
    assert annotations == [
        Annotation("v_a", 10.0, "first.", ((0.0, 4.0),)),
        Annotation("v_a", 10.0, "too long.", ((3.0, 10.0),)),
    ]
    assert dict(report.dropped) == {
        "start >= end": 1,
        "non-finite time": 1,
        "non-numeric time": 1,
        "malformed entry": 2,
        "invalid duration": 1,
    }
    assert dict(report.clamped) == {"end > duration": 1}
    assert report.examples["malformed entry"] == ["v_b: 1 timestamps but 2 sentences", "v_d: no duration"]


def test_tacos_json_from_frames(tmp_path):
    data = {"s1.avi": {"fps": 25.0, "num_frames": 250, "timestamps": [[50, 100], [200, 300]],
                       "sentences": ["cuts.", " washes. "]}}
    path = write(tmp_path / "tacos.json", json.dumps(data))
    assert guess_format(path) == "tacos_json"
    annotations, report = load_annotations(path)
    assert annotations == [
        Annotation("s1.avi", 10.0, "cuts.", ((2.0, 4.0),)),
        Annotation("s1.avi", 10.0, "washes.", ((8.0, 10.0),)),
    ]
    assert dict(report.clamped) == {"end > duration": 1}


def test_invalid_json_file_raises_naming_the_file(tmp_path):
    path = write(tmp_path / "broken.json", '{"v_a": {"duration": 10.0,')
    with pytest.raises(AnnotationError, match="broken.json"):
        load_annotations(path, "anet_json")
    with pytest.raises(AnnotationError, match="broken.json"):
        load_annotations(path)


def test_missing_and_unreadable_files_raise(tmp_path):
    with pytest.raises(AnnotationError, match="nowhere.json.*does not exist"):
        load_annotations(tmp_path / "nowhere.json")
    with pytest.raises(AnnotationError, match="holds no annotations"):
        load_annotations(write(tmp_path / "empty.jsonl", "\n"))
    with pytest.raises(AnnotationError, match="No line of .*garbage.txt could be read"):
        load_annotations(write(tmp_path / "charades_sta_garbage.txt", "hello\nworld\n"),
                         durations_csv=write(tmp_path / "c.csv", "id,length\nA,1\n"))
    with pytest.raises(AnnotationError, match="No entry"):
        load_annotations(write(tmp_path / "list_of_videos.json", json.dumps({"a": 1, "b": 2})))
    with pytest.raises(AnnotationError, match="not an object keyed by video"):
        load_annotations(write(tmp_path / "list.json", "[1, 2]"), "anet_json")
    with pytest.raises(AnnotationError, match="suffix"):
        load_annotations(write(tmp_path / "queries.csv", "a,b\n"))
    with pytest.raises(AnnotationError, match="set data.annotation_format to one of"):
        load_annotations(tmp_path / "list.json", "anet")
    with pytest.raises(AnnotationError, match="only used by the charades_txt"):
        load_annotations(tmp_path / "list.json", "anet_json", durations_csv=tmp_path / "c.csv")


def test_user_jsonl_cleaning(tmp_path):
    path = write_lines(tmp_path / "mine.jsonl", [
        {"video": "a", "duration": 30.0, "sentence": " a dog jumps. ", "windows": [[2.0, 7.5]]},
        "{not json",  # line 2
        {"video": "a", "duration": 30.0, "sentence": "two windows, one bad.", "windows": [[1, 2], [5, 4], [25, 31]]},
        {"video": "a", "duration": 31.0, "sentence": "other duration.", "windows": [[1, 2]]},  # line 4
        {"video": "b", "duration": "12", "sentence": "string duration.", "windows": [[1, 2]]},  # line 5
        {"video": "b", "duration": 12, "sentence": "", "windows": [[1, 2]]},
        {"video": "b", "duration": 12, "sentence": "all windows bad.", "windows": [[3, 2], [float("inf"), 4]]},
        {"video": "b", "duration": 12, "sentence": "no ground truth.", "windows": []},
    ])
    assert guess_format(path) == "jsonl"
    annotations, report = load_annotations(path)
    assert annotations == [
        Annotation("a", 30.0, "a dog jumps.", ((2.0, 7.5),)),
        Annotation("a", 30.0, "two windows, one bad.", ((1.0, 2.0), (25.0, 30.0))),
    ]
    assert dict(report.dropped) == {
        "malformed line": 2,
        "duration differs from an earlier query": 1,
        "empty sentence": 1,
        "start >= end": 1,
        "no ground-truth windows": 1,
    }
    assert dict(report.clamped) == {"window removed (start >= end)": 1, "end > duration": 1}
    assert [e.split(":")[0] for e in report.examples["malformed line"]] == ["line 2", "line 5"]

    annotations, report = parse_jsonl(path, require_windows=False)
    assert annotations[-1] == Annotation("b", 12.0, "no ground truth.", ())
    assert "no ground-truth windows" not in report.dropped


def test_jsonl_lines_nested_too_deep_or_with_huge_integers_are_dropped_and_counted(tmp_path):
    good = {"video": "a", "duration": 30.0, "sentence": "a dog jumps.", "windows": [[2.0, 7.5]]}
    huge = json.dumps(good).replace("30.0", "3" + "0" * 400)  # line 2: a duration json.loads reads as an int
    deep = json.dumps({**good, "windows": "@"}).replace('"@"', "[" * 50_000 + "]" * 50_000)  # line 3
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join([json.dumps(good), huge, deep, json.dumps(good)]) + "\n")
    annotations, report = load_annotations(path)
    assert annotations == [Annotation("a", 30.0, "a dog jumps.", ((2.0, 7.5),))] * 2
    assert dict(report.dropped) == {"malformed line": 2}
    assert [e.split(":")[0] for e in report.examples["malformed line"]] == ["line 2", "line 3"]
    assert "401 digits" in report.examples["malformed line"][0] and "too deep" in report.examples["malformed line"][1]


def test_user_jsonl_keys_are_strict(tmp_path):
    good = {"video": "a", "duration": 30.0, "sentence": "a dog jumps.", "windows": [[2.0, 7.5]]}
    path = write_lines(tmp_path / "extra.jsonl", [good, {**good, "timestamps": [[1, 2]]}])
    with pytest.raises(AnnotationError, match=r"extra.jsonl line 2 has unknown key\(s\) timestamps"):
        load_annotations(path)
    path = write_lines(tmp_path / "missing.jsonl", [{k: v for k, v in good.items() if k != "windows"}])
    with pytest.raises(AnnotationError, match=r"missing.jsonl line 1 has missing key\(s\) windows"):
        load_annotations(path, "jsonl")


def test_qvhighlights_format(tmp_path):
    path = write_lines(tmp_path / "qv.jsonl", [
        {"qid": 1, "query": "a cat.", "duration": 150, "vid": "x_0.0_150.0", "relevant_windows": [[0, 2], [140, 152]],
         "relevant_clip_ids": [0], "saliency_scores": [[1, 2, 3]]},
        {"qid": 2, "query": "no labels.", "duration": 150, "vid": "x_0.0_150.0"},
    ])
    assert guess_format(path) == "qvhighlights"
    annotations, report = load_annotations(path)
    assert annotations == [Annotation("x_0.0_150.0", 150.0, "a cat.", ((0.0, 2.0), (140.0, 150.0)))]
    assert dict(report.dropped) == {"no ground-truth windows": 1}
    assert dict(report.clamped) == {"end > duration": 1}
    path = write_lines(tmp_path / "not_qv.jsonl", [{"qid": 1, "query": "a cat.", "vid": "x"}])
    with pytest.raises(AnnotationError, match="line 1 has no duration"):
        load_annotations(path, "qvhighlights")


def test_group_by_video_keeps_order_and_one_duration():
    a1 = Annotation("a", 10.0, "one", ((0.0, 1.0),))
    b1 = Annotation("b", 5.0, "two", ((0.0, 1.0),))
    a2 = Annotation("a", 10.0004, "three", ((2.0, 3.0),))  # within 1e-3 s: same duration
    groups = group_by_video([a1, b1, a2])
    assert list(groups) == ["a", "b"]
    assert groups["a"] == [a1, a2] and groups["b"] == [b1]
    with pytest.raises(AnnotationError, match="'a' has two durations"):
        group_by_video([a1, Annotation("a", 10.01, "four", ((0.0, 1.0),))])
