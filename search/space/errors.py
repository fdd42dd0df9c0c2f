"""Space problems explained for a person: `SpaceError`, and pydantic's errors rewritten as `file: key.path: message`
lines with the allowed keys and a did-you-mean hint."""
from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Union

from pydantic import BaseModel, ValidationError

from search.space.schema import SpaceFile
from seg.config import TrainConfig


class SpaceError(ValueError):
    """A space file problem explained for a person: file, key path, bad value, and the fix."""



# ---------------------------------------------------------------------------------------------------------------
# Readable pydantic errors
# ---------------------------------------------------------------------------------------------------------------
def format_space_errors(err: ValidationError, where: str) -> str:
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        key = ".".join(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            allowed = _fields_at(e["loc"][:-1])
            msg = f"unknown key {loc[-1]!r}" + _did_you_mean(loc[-1], allowed)
            if allowed:
                msg += f"; allowed here: {', '.join(allowed)}"
        elif e["type"] == "model_type" and len(loc) == 2 and loc[0] == "params":
            msg = f"expected a mapping such as {{loguniform: [1.0e-4, 1.0e-2]}} (got {e['input']!r})"
        else:
            msg = _value_message(e)
        lines.append(f"{where}: {key}: {msg}")
    return "\n".join(lines)


def format_train_errors(err: ValidationError, where: str, section: str) -> str:
    lines = []
    for e in err.errors():
        sub = ".".join(str(p) for p in e["loc"])
        key = f"{section}.{sub}" if sub and not section.startswith("params.") else section
        if e["type"] == "extra_forbidden":
            name = str(e["loc"][-1])
            msg = f"unknown TrainConfig field {name!r}" + _did_you_mean(name, TrainConfig.model_fields)
        else:
            msg = _value_message(e)
        lines.append(f"{where}: {key}: {msg}")
    return "\n".join(lines)


def _value_message(e: dict) -> str:
    """pydantic's message without its 'Value error, ' prefix, plus the offending value when it is a scalar."""
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] != "missing" and "input" in e and not isinstance(e["input"], dict):
        msg += f" (got {e['input']!r})"
    return msg


def _did_you_mean(word: str, options) -> str:
    hint = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {hint[0]!r}?" if hint else ""


def _fields_at(loc: tuple) -> list[str]:
    """Field names (as written in YAML) of the schema model that sits at `loc` inside a SpaceFile."""
    model: Any = SpaceFile
    pending_dict = False
    for part in loc:
        if pending_dict:  # a free-form key of dict[str, Model]
            pending_dict = False
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        f = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        if f is None:
            return []
        model, pending_dict = _inner_model(f.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or n for n, f in model.model_fields.items()]
    return []


def _inner_model(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        for a in typing.get_args(annotation):
            m, d = _inner_model(a)
            if m is not None:
                return m, d
        return None, False
    if origin is dict:
        return _inner_model(typing.get_args(annotation)[1])[0], True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False
