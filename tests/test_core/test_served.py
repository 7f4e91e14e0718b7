"""mllb_core.served: the names a run's kernels note, what it returns, and what it refuses."""

from __future__ import annotations

import pytest

from mllb_core import served


def test_noted_names_come_back_sorted_once_until_reset() -> None:
    served.reset()
    for name in ("two_way_cpp", "ap_cpp", "two_way_cpp"):
        served.note(name)
    assert served.served() == ["ap_cpp", "two_way_cpp"]
    served.reset()
    assert served.served() == []


def test_an_unknown_name_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown kernel name 'cpp'.*'ap_cpp'"):
        served.note("cpp")
