"""The three backends export the same names with the same signatures."""
import importlib
import inspect

import pytest

from xentlib._docs import EXTRAS  # documented backend-only extras (see each module's docstring)


def _module(name):
    return importlib.import_module(f"xentlib.{name}")


def _common_names(name):
    return set(_module(name).__all__) - set(EXTRAS[name])


@pytest.mark.parametrize("name", ["torch", "tensorflow"])
def test_same_names_as_the_reference(name):
    assert _common_names(name) == _common_names("numpy")


@pytest.mark.parametrize("name", ["torch", "tensorflow"])
def test_same_signatures_as_the_reference(name):
    reference, module = _module("numpy"), _module(name)
    for fn in sorted(_common_names("numpy")):
        assert inspect.signature(getattr(module, fn)) == inspect.signature(getattr(reference, fn)), fn


@pytest.mark.parametrize("name", ["numpy", "torch", "tensorflow"])
def test_every_public_function_documents_its_formula_and_an_example(name):
    module = _module(name)
    for fn in module.__all__:
        doc = inspect.getdoc(getattr(module, fn)) or ""
        assert ".. math::" in doc, f"{name}.{fn} has no LaTeX formula"
        assert ">>> " in doc, f"{name}.{fn} has no doctest"


@pytest.mark.parametrize("name", ["numpy", "torch", "tensorflow"])
def test_all_lists_only_existing_callables(name):
    module = _module(name)
    for fn in module.__all__:
        assert callable(getattr(module, fn)), fn
