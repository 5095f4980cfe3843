"""prmfast.runio on hand-made files: one torn-line policy for every JSONL file a stage appends
to (a torn last line skipped or cut, damage elsewhere refused naming file and line), whole-line
appends, atomic replacement, strict JSON."""
import json
import math

import pytest

from prmfast.errors import StageError
from prmfast.runio import (RunFileError, append_jsonl, read_jsonl, read_metrics, write_json,
                           write_jsonl)

ROWS = [{"step": 1, "x": 0.5}, {"step": 2, "x": [1, 2]}, {"step": 3, "s": "é\n"}]


def _text(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.mark.parametrize("tail", ['{"step": 4, "x', '{"step": 4}x', "[1, 2]", "null",
                                  '{"step": 4, "s": "\\u00', "\n\n  \n"])
def test_a_torn_last_line_is_skipped_and_cut_with_repair_on_cpu(tmp_path, tail):
    path = tmp_path / "metrics.jsonl"
    path.write_text(_text(ROWS) + tail)
    assert read_jsonl(path) == ROWS
    assert path.read_text() == _text(ROWS) + tail           # reading alone changes nothing
    assert read_jsonl(path, repair=True) == ROWS
    assert path.read_text() == _text(ROWS) + ("\n\n  \n" if tail.isspace() else "")
    append_jsonl(path, [{"step": 4}])                     # the next row starts a line of its own
    assert read_jsonl(path) == ROWS + [{"step": 4}]


def test_a_cut_multibyte_character_and_a_missing_final_newline_on_cpu(tmp_path):
    path = tmp_path / "a.jsonl"
    whole = _text(ROWS).encode()
    path.write_bytes(whole + '{"s": "é"}'.encode()[:-3])  # cut inside the 2-byte character
    assert read_jsonl(path, repair=True) == ROWS and path.read_bytes() == whole
    path.write_bytes(whole[:-1])                           # a complete last row, no newline
    assert read_jsonl(path, repair=True) == ROWS and path.read_bytes() == whole


@pytest.mark.parametrize("bad", ['{"step": 2, "x', "not json", "[1]", "\x00\x00"])
def test_damage_before_the_last_line_is_refused_naming_file_and_line_on_cpu(tmp_path, bad):
    path = tmp_path / "labels.jsonl"
    original = _text(ROWS[:1]) + bad + "\n\n" + _text(ROWS[1:])
    path.write_text(original)
    for repair in (False, True):
        with pytest.raises(RunFileError, match=r"labels\.jsonl, line 2: not a JSON row"):
            read_jsonl(path, repair=repair)
    assert path.read_text() == original                    # nothing cut, nothing lost
    assert issubclass(RunFileError, StageError)            # the CLI prints it as one line


def test_missing_and_empty_files_have_no_rows_on_cpu(tmp_path):
    assert read_jsonl(tmp_path / "none.jsonl", repair=True) == []
    assert not (tmp_path / "none.jsonl").exists()
    (tmp_path / "empty.jsonl").write_text("")
    assert read_jsonl(tmp_path / "empty.jsonl", repair=True) == []
    assert read_metrics(tmp_path) == []
    append_jsonl(tmp_path / "metrics.jsonl", ROWS[:2])
    append_jsonl(tmp_path / "metrics.jsonl", [])
    append_jsonl(tmp_path / "metrics.jsonl", ROWS[2:])
    assert read_metrics(tmp_path) == ROWS


def test_whole_file_writes_replace_atomically_and_write_strict_json_on_cpu(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("old\n")
    write_jsonl(path, ROWS)
    assert path.read_text() == _text(ROWS) and [p.name for p in tmp_path.iterdir()] == [path.name]
    write_jsonl(path, [])
    assert path.read_text() == ""
    doc = tmp_path / "eval.json"
    write_json(doc, {"auc": math.nan, "xs": (1.5, float("nan")), "n": {"k": 1}})
    assert json.loads(doc.read_text()) == {"auc": None, "xs": [1.5, None], "n": {"k": 1}}
    assert "NaN" not in doc.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, doc.name])


def test_save_whole_swaps_a_finished_folder_in_and_keeps_the_old_one_on_a_crash_on_cpu(tmp_path):
    from prmfast.runio import save_whole

    def write(n):
        def fill(folder):
            folder.mkdir()
            (folder / "weights").write_text(str(n))
        return fill

    save_whole(tmp_path / "model", write(1))
    assert (tmp_path / "model" / "weights").read_text() == "1"

    def crash(folder):
        write(2)(folder)
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        save_whole(tmp_path / "model", crash)
    assert (tmp_path / "model" / "weights").read_text() == "1"     # the old folder, whole
    save_whole(tmp_path / "model", write(3))                        # the leftover is replaced
    assert (tmp_path / "model" / "weights").read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
