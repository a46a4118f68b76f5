"""The base of every config section, and what several sections share.

:class:`Section` makes each section frozen and strict: unknown keys, wrong types, ``inf``/``nan`` and a switch
given to a number are refused with the field's path. :mod:`mgfrec.config.schema` holds the sections of data, item
space, agent and evaluation, :mod:`mgfrec.config.training` those of GRPO and its trainer.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from mgfrec.validation import looks_like_key, strict_scalar

MAX_LR = 1000.0
"""The largest learning rate a config or flag takes: one far above float32's range (1e300) was an optimizer's
overflow traceback; every learning rate of use is far below it."""


class ConfigDeprecationWarning(FutureWarning):
    """A config key that is still read but has a newer spelling (shown by default, unlike DeprecationWarning)."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _null_options(cls, data: Any) -> Any:
        """``options: null`` (or ``--set x.options=null``) means no options, as ``{}`` does."""
        if isinstance(data, dict) and "options" in cls.model_fields and data.get("options", {}) is None:
            data = {**data, "options": {}}
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _strict_scalars(cls, value: Any, info: Any) -> Any:
        """A boolean given to a number field, or anything else to a switch, is refused (:func:`strict_scalar`)."""
        return strict_scalar(cls, info.field_name, value)


def not_a_key(value: str, field: str) -> str:
    """A model's name that looks like an API key (:func:`looks_like_key`: a key pasted into the wrong field) is
    refused without being shown: it was written into the run's ``config.yaml`` as it was (review s36), where
    ``user_agent.model`` refused it. A hub id or a path holds a ``/`` and is never taken for one."""
    if looks_like_key(value):
        raise ValueError(
            f"looks like an API key, not a model (not shown); give a hub id, a folder or a preset as {field}, and the "
            "key in the environment variable user_agent.api_key_env names"
        )
    return value
