"""The model cache writes an entry whole or not at all (models/cache.py)."""

import pytest

from models.cache import build_atomically


def _writer(text: str):
    def build(staging):
        (staging / "weights.bin").write_text(text)
        (staging / "done.json").write_text("{}")

    return build


def test_an_entry_appears_whole_under_its_name_and_nothing_else_is_left(tmp_path):
    target = tmp_path / "entry-abc"
    assert build_atomically(target, _writer("ours"), complete="done.json") == target
    assert (target / "weights.bin").read_text() == "ours"
    assert [p.name for p in tmp_path.iterdir()] == ["entry-abc"]  # no staging directory left


def test_a_failed_build_leaves_nothing_under_its_name(tmp_path):
    def broken(staging):
        (staging / "weights.bin").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        build_atomically(tmp_path / "entry", broken, complete="done.json")
    assert list(tmp_path.iterdir()) == []


def test_an_entry_another_process_finished_is_kept_and_a_leftover_is_replaced(tmp_path):
    target = tmp_path / "entry"
    build_atomically(target, _writer("theirs"), complete="done.json")
    build_atomically(target, _writer("ours"), complete="done.json")
    assert (target / "weights.bin").read_text() == "theirs"  # the same entry: theirs stays
    (target / "done.json").unlink()  # an incomplete leftover (a crash before this module existed)
    build_atomically(target, _writer("ours"), complete="done.json")
    assert (target / "weights.bin").read_text() == "ours" and (target / "done.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]
