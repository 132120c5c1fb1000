"""The three backends export the same names with the same signatures."""
import importlib
import inspect

import pytest

from xentlib._docs import EXTRAS, FUNCTIONS  # the function table; documented backend-only extras


def _module(name):
    return importlib.import_module(f"xentlib.{name}")


def _common_names(name):
    return set(_module(name).__all__) - set(EXTRAS[name])


@pytest.mark.parametrize("name", ["numpy", "torch", "tensorflow"])
def test_every_backend_exports_the_function_table(name):
    assert _module(name).__all__[:len(FUNCTIONS)] == list(FUNCTIONS)
    assert _common_names(name) == set(FUNCTIONS)


def test_every_function_of_the_table_has_its_reference_text_and_tests():
    for fn, f in FUNCTIONS.items():
        assert f.doc or f.tested_in, f"{fn}: no reference text"
        assert f.exercises is not None, f"{fn}: no exercise cases"
        assert (f.parity and f.calls) or f.tested_in, f"{fn}: no parity inputs or valid calls"


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
