"""Atomic files and run folders (kren.atomic, kren.outputs): a file is its old or its complete
new content; a run's outputs appear together, or not at all."""
import json

import pytest

from kren.atomic import write_text
from kren.exceptions import OutputError
from kren.outputs import RunFolder, check_output_dir, check_output_file, read_status


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "a.txt"
    write_text(path, "old")

    class Boom(Exception):
        pass

    def half(fh):
        fh.write(b"ne")
        raise Boom
    from kren.atomic import atomic_write
    with pytest.raises(Boom):
        atomic_write(path, half)
    assert path.read_text() == "old" and sorted(tmp_path.iterdir()) == [path]
    write_text(path, "new")
    assert path.read_text() == "new" and sorted(tmp_path.iterdir()) == [path]


def test_run_folder_commits_all_outputs_together(tmp_path):
    with RunFolder(tmp_path, "test", info={"config": {"x": 1}}) as run:
        run.stage("a.txt").write_text("A")
        run.stage("b.txt").write_text("B")
        assert not (tmp_path / "a.txt").exists() and not (tmp_path / "b.txt").exists()
        assert read_status(tmp_path)["state"] == "running"
        assert (tmp_path / ".kren-lock").exists()
        run.commit()
    assert (tmp_path / "a.txt").read_text() == "A" and (tmp_path / "b.txt").read_text() == "B"
    status = read_status(tmp_path)
    assert status["state"] == "complete" and status["outputs"] == ["a.txt", "b.txt"]
    assert status["config"] == {"x": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "status.json"]


@pytest.mark.parametrize("exc,state", [(KeyboardInterrupt, "interrupted"),
                                       (RuntimeError, "failed")])
def test_run_folder_keeps_previous_outputs_when_a_run_ends_early(tmp_path, exc, state):
    with RunFolder(tmp_path, "test") as run:
        run.stage("a.txt").write_text("first")
        run.commit()
        first = run.run_id
    with pytest.raises(exc):
        with RunFolder(tmp_path, "test") as run:
            run.stage("a.txt").write_text("second")
            raise exc()
    assert (tmp_path / "a.txt").read_text() == "first"
    status = read_status(tmp_path)
    assert status["state"] == state and status["previous"]["run_id"] == first
    assert "intact" in status["message"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "status.json"]


def test_folder_in_use_and_output_checks(tmp_path):
    with RunFolder(tmp_path, "first"):
        with pytest.raises(OutputError, match="in use by kren first"):
            RunFolder(tmp_path, "second").__enter__()
    blocker = tmp_path / "f"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="--out: .* not a folder"):
        check_output_dir(blocker)
    with pytest.raises(OutputError, match="--where"):
        check_output_dir(blocker / "sub", "--where")
    with pytest.raises(OutputError, match="does not exist"):
        check_output_file(tmp_path / "no" / "x.json")
    with pytest.raises(OutputError, match="is a folder"):
        check_output_file(tmp_path)
    assert check_output_dir(tmp_path / "new" / "deep").is_dir()
    json.loads((tmp_path / "status.json").read_text())
