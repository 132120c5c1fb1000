"""The pip pins (requirements.txt) and the conda environment (environment.yml) agree."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _pins(lines):
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip().lstrip("- ").strip()
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line)
        if match:
            pins[match[1].lower().replace("_", "-")] = match[2]
    return pins


def test_requirements_and_environment_yml_pin_the_same_versions():
    pip_pins = _pins((ROOT / "requirements.txt").read_text().splitlines())
    conda_pins = _pins((ROOT / "environment.yml").read_text().splitlines())
    assert pip_pins, "requirements.txt pins nothing"
    assert pip_pins == conda_pins


def test_every_requirement_is_pinned():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        assert not line or "==" in line, f"unpinned requirement: {line}"


def test_pyproject_extras_agree_with_the_framework_pins():
    text = (ROOT / "pyproject.toml").read_text()
    pins = _pins((ROOT / "requirements.txt").read_text().splitlines())
    assert f'"torch=={pins["torch"]}"' in text
    assert f'"tensorflow-cpu=={pins["tensorflow-cpu"][:4]}' in text
    assert f'"jupyter-book=={pins["jupyter-book"]}"' in text
    assert f'"sphinx-exercise=={pins["sphinx-exercise"]}"' in text
    assert f'"jupyterlab=={pins["jupyterlab"]}"' in text


def test_binder_builds_the_pinned_environment():
    """Binder (repo2docker) reads binder/: the same pins, Python 3.11, xentlib installed."""
    binder = ROOT / "binder"
    assert "-r ../requirements.txt" in (binder / "requirements.txt").read_text().splitlines()
    assert (binder / "runtime.txt").read_text().strip() == "python-3.11"
    assert "pip install --no-deps -e ." in (binder / "postBuild").read_text()
