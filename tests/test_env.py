"""The one reading of yes/no and list environment variables."""

from __future__ import annotations

import pytest

from desktop_tl.env import env_flag, env_names


@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_yes_words_are_true(monkeypatch, value):
    monkeypatch.setenv("DTL_TEST_FLAG", value)
    assert env_flag("DTL_TEST_FLAG") is True


@pytest.mark.parametrize("value", ["0", "False", "no", "off"])
def test_no_words_are_false_even_when_the_default_is_true(monkeypatch, value):
    monkeypatch.setenv("DTL_TEST_FLAG", value)
    assert env_flag("DTL_TEST_FLAG", default=True) is False


def test_unset_or_empty_is_the_default(monkeypatch):
    monkeypatch.delenv("DTL_TEST_FLAG", raising=False)
    assert env_flag("DTL_TEST_FLAG") is False
    assert env_flag("DTL_TEST_FLAG", default=True) is True
    monkeypatch.setenv("DTL_TEST_FLAG", "  ")
    assert env_flag("DTL_TEST_FLAG", default=True) is True


def test_another_value_is_reported_and_the_default_kept(monkeypatch):
    monkeypatch.setenv("DTL_TEST_FLAG", "maybe")
    with pytest.warns(
        UserWarning, match=r"DTL_TEST_FLAG='maybe' is not a yes/no value; write one of 1, true"
    ):
        assert env_flag("DTL_TEST_FLAG", default=True) is True


def test_names_are_split_on_commas_and_stripped(monkeypatch):
    monkeypatch.setenv("DTL_TEST_NAMES", " dtl_heads, ,dtl-loaders ,")
    assert env_names("DTL_TEST_NAMES") == ["dtl_heads", "dtl-loaders"]
    monkeypatch.delenv("DTL_TEST_NAMES")
    assert env_names("DTL_TEST_NAMES") == []
