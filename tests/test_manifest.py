"""The manifest: the production one is valid; bad ones give exit code 2 and one line per key."""

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import manifest

ROOT = Path(__file__).resolve().parent.parent
BASE = """\
dataset:
  title: A title
  description: A description
  creators: [{name: "Doe, Jane"}]
"""


def run_validate(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return subprocess.run([sys.executable, "-m", "pipeline", "--manifest", str(path), "validate"],
                          capture_output=True, text=True, cwd=ROOT)


def test_repository_manifest_is_valid_and_points_at_production() -> None:
    m = manifest.load(ROOT / "data_manifest.yaml")
    assert m.source.zenodo.url == "https://zenodo.org"
    assert m.source.query.resource_type == "software"
    assert (m.processing.image_width, m.processing.image_height) == (80, 80)
    assert m.processing.max_file_bytes == 100000


def test_defaults_fill_a_minimal_manifest(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(BASE)
    m = manifest.load(tmp_path / "m.yaml")
    assert m.source.zenodo.token_env == "ZENODO_TOKEN"
    assert m.source.github.archive_url.startswith("https://codeload.github.com/")
    assert m.processing.exclude_dirs == (".git", ".hg", ".svn")
    assert m.processing.tab_width == 4 and m.processing.mode == "default"
    assert m.state_path == tmp_path / "state" / "state.json"


@pytest.mark.parametrize("extra, key, line, words", [
    ("processing:\n  image_width: eighty\n", "processing.image_width", 6, "expected integer"),
    ("processing:\n  colour: blue\n", "processing.colour", 6, "unknown key colour"),
    ("source:\n  versions: some\n", "source.versions", 6, "expected one of all, latest"),
    ("source:\n  since: yesterday\n", "source.since", 6, "ISO 8601"),
    ("destinations:\n  kaggle:\n    public: true\n", "destinations.kaggle.dataset", 6,
     "is missing"),
    ("source:\n  zenodo:\n    url: zenodo.org\n", "source.zenodo.url", 7, "expected a value"),
])
def test_invalid_manifest_exits_2_with_one_line_naming_the_key(
        tmp_path: Path, extra: str, key: str, line: int, words: str) -> None:
    result = run_validate(tmp_path, BASE + extra)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"m.yaml:{line}: {key}: " in lines[0] and words in lines[0]


def test_every_problem_is_listed_and_missing_sections_are_named(tmp_path: Path) -> None:
    result = run_validate(tmp_path, "dataset:\n  title: x\nprocessing:\n  tab_width: 0\n")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert any("dataset.description: is missing" in x for x in lines)
    assert any("dataset.creators: is missing" in x for x in lines)
    assert any("processing.tab_width: expected minimum 1" in x for x in lines)


def test_unreadable_yaml_and_missing_file_exit_2(tmp_path: Path) -> None:
    assert run_validate(tmp_path, "dataset: [unclosed\n").returncode == 2
    missing = subprocess.run([sys.executable, "-m", "pipeline", "--manifest",
                              str(tmp_path / "nope.yaml"), "validate"],
                             capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode == 2 and "cannot read the manifest" in missing.stderr
