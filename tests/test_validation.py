"""One line from a pydantic ValidationError: every error's path and message, the caller's prefix, a whole-model
error named by that prefix alone, the input echoed only when the caller allows it, and a cut that says how
many errors it left out."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from mgfrec.validation import validation_text


class Inner(BaseModel):
    size: int


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rate: float = 0.1
    inner: Inner = Inner(size=1)

    @model_validator(mode="after")
    def _small(self) -> Options:
        if self.rate > 1:
            raise ValueError("rate must be at most 1")
        return self


def error(value) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        Options.model_validate(value)
    return caught.value


def test_every_error_on_one_line_with_its_path():
    text = validation_text(error({"rate": "fast", "inner": {"size": "big"}, "api_key": "sk-secret"}))
    assert "\n" not in text
    assert text.startswith("rate: Input should be a valid number")
    assert "; inner.size: Input should be a valid integer" in text
    assert "; api_key: Extra inputs are not permitted" in text
    assert "sk-secret" not in text and "fast" not in text  # no input is echoed unless the caller says so


def test_a_prefix_and_a_whole_model_error():
    assert validation_text(error({"rate": 2}), where=["grounder", "options"]) == (
        "grounder.options: Value error, rate must be at most 1"
    )
    assert validation_text(error({"rate": 2})) == "(top level): Value error, rate must be at most 1"
    assert validation_text(error({"rate": 2}), whole="value").startswith("value: ")


def test_the_input_is_shown_only_where_allowed():
    exc = error({"rate": "fast", "api_key": "sk-secret"})
    text = validation_text(exc, show_input=lambda err: err["type"] != "extra_forbidden")
    assert "rate: Input should be a valid number, unable to parse string as a number (got 'fast')" in text
    assert "sk-secret" not in text


def test_a_limit_says_how_many_errors_it_left_out():
    exc = error({"rate": "fast", "inner": {"size": "big"}, "x": 1, "y": 2})
    assert len(exc.errors()) == 4
    text = validation_text(exc, limit=1)
    assert text.startswith("rate: ") and text.endswith("; and 3 more") and "inner" not in text
    assert "more" not in validation_text(exc, limit=4)


def test_a_whole_number_is_an_integer_of_python_or_numpy_and_not_a_bool():
    import numpy as np

    from mgfrec.validation import is_whole_number

    assert [is_whole_number(v) for v in (3, np.int64(3), -1)] == [True, True, True]
    assert [is_whole_number(v) for v in (True, 2.5, "5", None, np.float64(3))] == [False] * 5
