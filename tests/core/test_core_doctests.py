"""The worked examples in the docstrings of the bit-level core and pruning are tests too."""

import doctest

import pytest

import bitvert.core.analysis
import bitvert.core.bitplanes
import bitvert.core.grouping
import bitvert.pruning.api

MODULES = [bitvert.core.bitplanes, bitvert.core.grouping, bitvert.core.analysis, bitvert.pruning.api]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{module.__name__} has no worked example"
    assert result.failed == 0
