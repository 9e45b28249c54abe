"""data/MANIFEST.json lists every committed artefact, and a damaged or missing one is named with its fix."""
import json

from dalle_lessons.manifest import MANIFEST, build_manifest, manifest_problems, unlisted_files, write_manifest


def test_the_committed_manifest_matches_data_and_lists_every_artefact():
    assert manifest_problems() == []
    assert unlisted_files() == []
    assert {"splits.json", "tokenizer.json", "dvae-cpu.safetensors", "dalle-cpu.safetensors"} <= set(build_manifest())


def test_changed_truncated_and_missing_files_are_each_named_with_a_fix(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x" * 1000)
    (tmp_path / "model.json").write_text("{}")
    (tmp_path / "splits.json").write_text("[]")
    (tmp_path / "README.md").write_text("prose is not listed")
    write_manifest(tmp_path)
    assert set(json.loads((tmp_path / MANIFEST).read_text())) == {"model.safetensors", "model.json", "splits.json"}
    assert manifest_problems(tmp_path) == []

    (tmp_path / "model.safetensors").write_bytes(b"y" * 1000)  # same size, other bytes
    (tmp_path / "model.json").write_text("version https://git-lfs.github.com/spec/v1")  # a pointer, not the file
    (tmp_path / "splits.json").unlink()
    (tmp_path / "extra.json").write_text("{}")
    problems = "\n".join(manifest_problems(tmp_path))
    assert "model.safetensors differs" in problems and "data manifest" in problems
    assert "model.json has 42 bytes, the manifest says 2" in problems and "git lfs pull" in problems
    assert "splits.json is missing" in problems and "git checkout" in problems
    assert unlisted_files(tmp_path) == ["extra.json"]


def test_a_missing_manifest_says_how_to_write_one(tmp_path):
    (problem,) = manifest_problems(tmp_path)
    assert "MANIFEST.json is missing" in problem and "python -m dalle_lessons data manifest" in problem
