"""`python -m device_runtime`: ranked output, info, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from device_runtime import Ranker
from device_runtime.__main__ import main
from tests.device_runtime import make_fixtures as mf
from tests.device_runtime.serving_reference import catalog_scores, state_scores
from tests.device_runtime.tolerance import PERSONALIZED_ATOL, assert_top_k_matches

REPO = Path(__file__).resolve().parents[2]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def reference_scores(expected_scores, user: str, titles) -> dict[str, float]:
    """The reference score of each title for `user`, from reference.json's probe pairs."""
    users, movies = mf.probe_pairs()
    score_of = {m: s for u, m, s in zip(users, movies, expected_scores[mf.KIT]) if u == user}
    return {t: score_of[t] for t in titles}


def test_rank_json(capsys, kit_path, expected_scores, backend_name):
    titles = list(mf.PROBE_MOVIES)
    args = ["rank", "--model", kit_path, "--user", "42", "--top-k", "4", "--json"]
    for title in titles:
        args += ["--candidate", title]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    report = json.loads(out)
    assert report["user_id"] == "42" and report["user_known"] is True
    assert report["candidates"] == len(titles) and report["backend"] == backend_name
    ranked = [(r["movie_title"], r["score"]) for r in report["results"]]
    assert_top_k_matches(ranked, reference_scores(expected_scores, "42", titles), k=4)
    assert [r["rank"] for r in report["results"]] == [1, 2, 3, 4]
    assert [r["known"] for r in report["results"]] == [t in mf.MOVIES for t, _ in ranked]


def test_rank_table_marks_unknown_ids(capsys, kit_path):
    code, out, _ = run(
        capsys,
        "rank",
        "--model",
        kit_path,
        "--user",
        "stranger",
        "--candidate",
        "Speed (1994)",
        "--candidate",
        "Nope (2099)",
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("top 2 of 2 candidates for user stranger")
    assert "not in the model's vocabulary" in lines[1]
    assert lines[2].split() == ["rank", "score", "movie"]
    rows = [line for line in lines[3:]]
    assert len(rows) == 2
    assert sum("(unknown to the model)" in row for row in rows) == 1
    assert any(row.rstrip().endswith("Nope (2099)  (unknown to the model)") for row in rows)


def test_rank_all_movies_for_user_42(capsys, kit_path):
    code, out, _ = run(capsys, "rank", "--model", kit_path, "--user", "42", "--all", "--top-k", "100", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["candidates"] == len(mf.MOVIES)
    assert sorted(r["movie_title"] for r in report["results"]) == sorted(mf.MOVIES)
    scores = [r["score"] for r in report["results"]]
    assert scores == sorted(scores, reverse=True)


def test_rank_from_a_candidates_file(capsys, kit_path, tmp_path):
    path = tmp_path / "candidates.txt"
    path.write_text("Amélie (2001)\n\n千と千尋の神隠し (2001)\r\nSpeed (1994)\n", encoding="utf-8")
    code, out, _ = run(capsys, "rank", "--model", kit_path, "--user", "42", "--candidates-file", path, "--json")
    assert code == 0
    assert sorted(r["movie_title"] for r in json.loads(out)["results"]) == sorted(
        ["Amélie (2001)", "千と千尋の神隠し (2001)", "Speed (1994)"]
    )


def test_info_human_and_json(capsys, kit_path, backend_name):
    code, out, _ = run(capsys, "info", "--model", kit_path)
    assert code == 0
    assert f"backend:      {backend_name}" in out
    assert "signature:    serving_default: user_id, movie_title -> rating [-1]" in out
    assert f"vocabularies: {len(mf.USERS)} users, {len(mf.MOVIES)} movies" in out
    assert f"({kit_path.stat().st_size:,} bytes)" in out
    code, out, _ = run(capsys, "info", "--model", kit_path, "--json", "--threads", "2")
    info = json.loads(out)
    assert info["backend"] == backend_name and info["num_threads"] == 2
    assert info["manifest"]["model_name"] == "device-runtime-fixture"


def test_info_of_a_tutorial_export(capsys, fixtures_dir):
    code, out, _ = run(capsys, "info", "--model", fixtures_dir / mf.TUTORIAL)
    assert code == 0
    assert "-> output_1 [-1, 1]" in out
    assert "manifest:   none (not converted by the kit" in out and "checksum:   none" in out


def error_cases(fixtures_dir: Path, tmp_path: Path):
    kit = fixtures_dir / mf.KIT
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("Amélie".encode("latin-1"))
    return [
        (["rank", "--model", tmp_path / "missing.tflite", "--user", "42", "--all"], "does not exist"),
        (["info", "--model", fixtures_dir / mf.REFERENCE], "is not a TFLite flatbuffer"),
        (["info", "--model", fixtures_dir / mf.BAD_MANIFEST], "the embedded manifest is malformed"),
        (
            ["rank", "--model", fixtures_dir / mf.TUTORIAL, "--user", "42", "--all"],
            "carries no movie vocabulary, so --all",
        ),
        (
            ["rank", "--model", fixtures_dir / mf.WRONG_SIGNATURE, "--user", "42", "--all"],
            "must have exactly the inputs",
        ),
        (["rank", "--model", fixtures_dir / mf.RENAMED, "--user", "42", "--candidate", "x"], "--user-input NAME"),
        (["rank", "--model", kit, "--user", "42", "--candidates-file", tmp_path / "none.txt"], "does not exist"),
        (["rank", "--model", kit, "--user", "42", "--candidates-file", tmp_path / "empty.txt"], "has no titles"),
        (["rank", "--model", kit, "--user", "42", "--candidates-file", tmp_path / "latin1.txt"], "is not UTF-8 text"),
        (["rank", "--model", kit, "--user", "nobody", "--all", "--strict"], "unknown user ids (1 of 1): 'nobody'"),
        (["rank", "--model", kit, "--user", "", "--all"], "--user is empty; pass a user id"),
        (["rank", "--model", kit, "--user", "42", "--all", "--top-k", "0"], "--top-k must be at least 1"),
        (["rank", "--model", kit, "--user", "42", "--all", "--threads", "0"], "--threads must be at least 1, got 0"),
        (["info", "--model", kit, "--user-input", "", "--item-input", "title"], "--user-input is empty"),
        (["rank", "--model", kit, "--user", "4\udcff2", "--all"], "--user '4\\udcff2' is not valid UTF-8 text"),
        (["rank", "--model", kit, "--user", "42", "--candidate", "\udcff"], "--candidate '\\udcff' is not valid UTF-8"),
        (["rank", "--model", tmp_path, "--user", "42", "--all"], "is a folder"),
    ]


def test_expected_mistakes_give_one_line_and_exit_2(capsys, fixtures_dir, tmp_path):
    for argv, message in error_cases(fixtures_dir, tmp_path):
        code, out, err = run(capsys, *argv)
        assert code == 2, argv
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and message in lines[0], (argv, err)
        assert "Traceback" not in err and out == ""


@pytest.mark.parametrize("error", [TypeError("internal"), ValueError("internal")])
def test_a_bug_inside_is_not_reported_as_a_usage_error(capsys, kit_path, monkeypatch, error):
    """Only the user's mistakes exit 2 with one line; an unexpected TypeError/ValueError keeps its traceback."""

    def broken(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(Ranker, "rank", broken)
    with pytest.raises(type(error), match="internal"):
        main(["rank", "--model", str(kit_path), "--user", "42", "--all"])
    assert capsys.readouterr().err == ""


def test_argument_mistakes_exit_2(capsys, kit_path):
    for argv in (
        ["rank", "--model", kit_path, "--user", "42"],
        ["info"],
        ["rank", "--model", kit_path, "--user", "1", "--all", "--backend", "onnx"],
    ):
        with pytest.raises(SystemExit) as caught:
            main([str(a) for a in argv])
        assert caught.value.code == 2
    capsys.readouterr()


def test_module_entry_point(kit_path, tmp_path):
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "device_runtime",
            "rank",
            "--model",
            str(kit_path),
            "--user",
            "42",
            "--all",
            "--top-k",
            "3",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert len(ok.stdout.splitlines()) == 2 + 3
    failed = subprocess.run(
        [sys.executable, "-m", "device_runtime", "info", "--model", str(tmp_path / "missing.tflite")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 2
    assert failed.stdout == ""
    assert failed.stderr.strip().splitlines() == [
        f"error: model file {tmp_path / 'missing.tflite'} does not exist; "
        "pass the .tflite written by `python -m convert`"
    ]


# ----------------------------------------------------------------------------- the fast path and histories


def test_rank_all_uses_the_in_graph_top_k(capsys, fixtures_dir, serving, monkeypatch):
    import device_runtime.model as loaded_model

    used = []
    original = loaded_model.LoadedModel.top_k
    monkeypatch.setattr(loaded_model.LoadedModel, "top_k", lambda self, *a: used.append(a) or original(self, *a))
    code, out, err = run(capsys, "rank", "--model", fixtures_dir / mf.FACTOR, "--user", "42", "--all", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["candidates"] == len(mf.MOVIES) and len(used) == 1
    ranked = [(r["movie_title"], r["score"]) for r in report["results"]]
    assert_top_k_matches(ranked, catalog_scores(serving, mf.FACTOR, "42"), k=10)


def test_info_names_checksum_load_time_and_signatures(capsys, fixtures_dir):
    path = fixtures_dir / mf.FACTOR
    code, out, _ = run(capsys, "info", "--model", path)
    assert code == 0
    lines = dict(line.split(":", 1) for line in out.splitlines())
    content = path.read_bytes()
    start = content.index(b'{"file_sha256": "') + len(b'{"file_sha256": "')
    assert lines["checksum"].strip() == f"sha256 {content[start:start + 64].decode()} (verified)"
    assert lines["loaded"].strip().endswith(" ms") and lines["loaded"].strip()[:4].isdigit()
    assert lines["signatures"].strip() == (
        "serving_default, score_rows, top_k, score_history, user_state, score_rows_for_state, top_k_for_state"
    )
    code, out, _ = run(capsys, "info", "--model", fixtures_dir / mf.TUTORIAL, "--json")
    info = json.loads(out)
    assert info["checksum"] is None and info["signatures"] == ["serving_default"] and info["load_ms"] > 0


def write_history(path: Path, lines) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def history_lines(entries) -> list[str]:
    return [f"{title}\t{rating}" for title, rating in entries]


def test_rank_from_a_history_file(capsys, fixtures_dir, serving, tmp_path):
    mixed = serving["histories"]["mixed"]
    path = write_history(tmp_path / "history.tsv", [""] + history_lines(mixed["raw"]))  # a blank line is skipped
    code, out, err = run(
        capsys, "rank", "--model", fixtures_dir / mf.FACTOR, "--history-file", path, "--all", "--top-k", "5", "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["user_id"] is None and report["user_known"] is None
    assert report["history"] == {
        "file": str(path),
        "ratings_used": len(mixed["cleaned"]),
        "unknown_titles": mixed["unknown"],
        "dropped": 0,
        "replaced": 1,
    }
    ranked = [(r["movie_title"], r["score"]) for r in report["results"]]
    assert_top_k_matches(ranked, state_scores(serving, mf.FACTOR, "mixed"), k=5, atol=PERSONALIZED_ATOL)
    assert "WARNING" not in err  # the skipped title is reported in the output instead


def test_a_history_from_stdin_in_a_table(fixtures_dir, serving):
    lines = history_lines(serving["histories"]["mixed"]["raw"])
    done = subprocess.run(
        [sys.executable, "-m", "device_runtime", "rank", "--model", str(fixtures_dir / mf.FACTOR),
         "--history-file", "-", "--candidate", mf.MOVIES[0], "--candidate", mf.MOVIES[4]],
        input="\n".join(lines) + "\n", cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0].startswith("top 2 of 2 candidates for a user described by 5 ratings")
    assert out[1] == "note: skipped 1 title(s) the model does not know: 'No Such Movie (2099)'"
    assert out[2] == "note: 1 rating(s) replaced by a later rating of the same title"
    expected = state_scores(serving, mf.FACTOR, "mixed")
    rows = [line.split(None, 2) for line in out[4:]]
    assert [title for _, _, title in rows] == sorted(mf.MOVIES[0:5:4], key=lambda t: -expected[t])


def test_every_bad_history_line_is_one_error(capsys, fixtures_dir, tmp_path):
    path = write_history(
        tmp_path / "bad.tsv",
        ["Speed (1994)\t4", "no tab here", "\t3", "Amélie (2001)\tnan", "Speed (1994)\t7", "M*A*S*H (1970)\tfour",
         "Speed (1994)\tinf", "Speed (1994)\t0"],
    )
    code, out, err = run(capsys, "rank", "--model", fixtures_dir / mf.FACTOR, "--history-file", path, "--all")
    assert code == 2 and out == ""
    where = f"history file {path} line"
    assert err.splitlines() == [
        f"error: {where} 2: expected 'title<TAB>rating', found no tab in 'no tab here'",
        f"error: {where} 3: the title is empty; write 'title<TAB>rating'",
        f"error: {where} 4: the rating is nan; pass a finite number from 1 to 5",
        f"error: {where} 5: the rating 7 is outside 1..5; pass the user's own rating on that scale",
        f"error: {where} 6: the rating 'four' is not a number; write a rating from 1 to 5",
        f"error: {where} 7: the rating is inf; pass a finite number from 1 to 5",
        f"error: {where} 8: the rating 0 is outside 1..5; pass the user's own rating on that scale",
    ]


def test_history_file_mistakes_exit_2(capsys, fixtures_dir, tmp_path):
    good = write_history(tmp_path / "good.tsv", ["Speed (1994)\t4", "Unknown (2099)\t5"])
    (tmp_path / "latin1.tsv").write_bytes("Amélie\t4\n".encode("latin-1"))
    cases = [
        (["--model", fixtures_dir / mf.TOWER, "--history-file", good, "--all"],
         "tower.tflite (tower-fixture) has no personalized signature (user_state); models of the 'default' and 'mf'"),
        (["--model", fixtures_dir / mf.FACTOR, "--history-file", tmp_path / "none.tsv", "--all"], "does not exist"),
        (["--model", fixtures_dir / mf.FACTOR, "--history-file", tmp_path / "latin1.tsv", "--all"], "is not UTF-8"),
        (["--model", fixtures_dir / mf.FACTOR, "--history-file", good, "--all", "--strict"],
         "unknown history titles (1 of 2): 'Unknown (2099)'"),
        (["--model", fixtures_dir / mf.FACTOR, "--history-file", "-", "--candidates-file", "-"],
         "cannot both read stdin"),
    ]
    for argv, message in cases:
        code, out, err = run(capsys, "rank", *argv)
        assert code == 2 and out == "", argv
        (line,) = [line for line in err.splitlines() if line.startswith("error:")]
        assert message in line, (argv, err)
    with pytest.raises(SystemExit):
        main(["rank", "--model", str(fixtures_dir / mf.FACTOR), "--user", "42", "--history-file", str(good), "--all"])
    capsys.readouterr()
