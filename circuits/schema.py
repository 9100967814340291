"""The schema of eqspice's domain objects: each one checks its own fields.

A spec such as :class:`~eqspice.circuits.network.CrossbarSpec` is a frozen
pydantic dataclass: its fields carry their types, ranges and choices, and its
validators the rules that tie fields together.  The same checks run whether
the object is built in Python or read from a TOML run configuration, and both
report the first problem as the same one line, e.g.

    ``layers[1]: 0 hidden nodes; need at least 1`` (Python), or
    ``run.toml: network.layers[1]: 0 hidden nodes; need at least 1`` (config).

Numbers must be finite everywhere (``inf`` and ``nan`` are refused with the
field's name).  :func:`spec` makes a class such a spec; :func:`one_line` turns
pydantic's errors into that line.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Union

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

#: Settings of every spec: unknown fields refused, numbers finite.
SPEC_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)

#: Where a union of specs sits in an error's location, and its members by tag:
#: ``{("noise",): {"none": NoNoise, "johnson": JohnsonNoise, "gibbs": GibbsNoise}}``
#: strips the ``"gibbs"`` that pydantic inserts into ``("noise", "gibbs", "t_eff_w")``
#: and names the member a misplaced key belongs to.
Tags = Mapping[tuple, Mapping[str, type]]


class SpecError(ValueError):
    """A spec that cannot be built; the message is one line naming the field, its value and the fix."""


class FieldError(ValueError):
    """Raised by a spec's validator to blame one field (not the whole object) for a problem.

    Parameters
    ----------
    field : str or tuple
        The field, relative to the object that validates: ``"g_min_s"``, or a
        path such as ``(1,)`` inside a field validator of ``layers``.
    message : str
        What is wrong and how to fix it, one line without the field's name.
    """

    def __init__(self, field: str | tuple, message: str) -> None:
        super().__init__(message)
        self.path = (field,) if isinstance(field, str) else tuple(field)


def spec(cls=None, *, error: type[SpecError] = SpecError):
    """Make ``cls`` a frozen, self-validating pydantic dataclass.

    Parameters
    ----------
    cls : type
        The class body: annotated fields (``Annotated[float, Field(gt=0)]``)
        and pydantic validators.
    error : type
        The :class:`SpecError` subclass a bad construction in Python raises.

    Returns
    -------
    type
        The dataclass; ``cls(...)`` and :func:`dataclasses.replace` raise
        ``error`` with :func:`one_line`'s message instead of pydantic's
        multi-line :class:`~pydantic.ValidationError`.
    """

    def wrap(body):
        made = pydantic_dataclass(frozen=True, config=SPEC_CONFIG)(body)
        init = made.__init__

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            try:
                init(self, *args, **kwargs)
            except ValidationError as exc:
                raise error(one_line(exc)) from None

        made.__init__ = __init__
        return made

    return wrap if cls is None else wrap(cls)


def spec_fields(obj_or_cls) -> tuple[str, ...]:
    """Names of a spec's fields, in order."""
    return tuple(f.name for f in dataclasses.fields(obj_or_cls))


def spec_defaults(cls) -> dict[str, Any]:
    """The default of every field of ``cls`` that has a plain default."""
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def domain_part(obj, cls):
    """The ``cls`` instance holding the fields of ``obj`` that ``cls`` has (``obj`` may add more)."""
    return cls(**{name: getattr(obj, name) for name in spec_fields(cls)})


def show(value: Any) -> str:
    """A value as the messages quote it: the same text for a TOML list and a Python tuple."""
    if isinstance(value, tuple):
        value = list(value)
    return repr(value)


def where(loc: Sequence) -> str:
    """``("network", "layers", 1)`` as ``network.layers[1]``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _strip_tags(loc: tuple, tags: Tags) -> tuple[tuple, tuple | None]:
    """``loc`` without the union tags pydantic inserts, and the (prefix, tag) of the member if any."""
    out: list = []
    member = None
    i = 0
    while i < len(loc):
        prefix = tuple(out)
        if prefix in tags and loc[i] in tags[prefix] and member is None:
            member = (prefix, loc[i])
            i += 1
            continue
        out.append(loc[i])
        i += 1
    return tuple(out), member


_TRIMMED = ("float_parsing", "int_parsing", "int_from_float", "bool_parsing", "float_type", "int_type")
_TABLE = ("model_type", "model_attributes_type", "dataclass_type", "dataclass_exact_type", "dict_type")


def error_loc(error: Mapping, tags: Tags | None = None) -> tuple:
    """Where one pydantic error is: union tags left out, a :class:`FieldError`'s field or a bad tag's key added."""
    loc, _ = _strip_tags(tuple(error["loc"]), tags or {})
    ctx = error.get("ctx") or {}
    if error["type"] == "union_tag_invalid":
        return loc + (ctx["discriminator"].strip("'"),)
    exc = ctx.get("error")
    return loc + exc.path if isinstance(exc, FieldError) else loc


def error_line(error: Mapping, tags: Tags | None = None) -> str:
    """One pydantic error as ``field: what is wrong (got value)``.

    Parameters
    ----------
    error : mapping
        One entry of :meth:`pydantic.ValidationError.errors`.
    tags : mapping, optional
        Unions whose tags to leave out of the location (see :data:`Tags`).

    Returns
    -------
    str
        The line; a value error raised as :class:`FieldError` is located at its field.
    """
    loc = error_loc(error, tags)
    message = _message(error, tags or {})
    return f"{where(loc)}: {message}" if loc else message


def _message(error: Mapping, tags: Tags) -> str:
    """What is wrong, in the words of :func:`error_line`."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind in ("value_error", "assertion_error"):
        exc = ctx.get("error")
        return str(exc) if exc is not None else error["msg"].removeprefix("Value error, ")
    if kind == "missing":
        return "missing; this key is required"
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return _unknown_key(*_strip_tags(tuple(error["loc"]), tags), tags)
    if kind == "union_tag_invalid":
        return f"must be one of {ctx['expected_tags']} (got {ctx['tag']!r})"
    if kind in _TABLE:
        return f"must be a table of keys (got {show(value)})"
    if kind in ("too_short", "too_long"):
        bound = f"at least {ctx['min_length']}" if kind == "too_short" else f"at most {ctx['max_length']}"
        return f"must have {bound} values (got {show(value)})"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx['pattern']!r} (got {show(value)})"
    text = error["msg"].split(",")[0] if kind in _TRIMMED else error["msg"]
    text = "must be " + text.removeprefix("Input should be ") if text.startswith("Input should be ") else text
    return f"{text[0].lower()}{text[1:]} (got {show(value)})"


def _unknown_key(loc: tuple, member: tuple | None, tags: Tags) -> str:
    """What to say of a key the object lacks: a typo, or a key of another member of its union.

    The tag's key is called ``model`` as inside its own section, so Python and a config say the same.
    """
    advice = "check its spelling against the documented config (examples/*.toml)"
    if member is None or len(loc) != len(member[0]) + 1:
        return f"unknown key; {advice}"  # not a key of the member itself, e.g. of its [device.drift]
    prefix, tag = member
    owners = [t for t, cls in tags[prefix].items() if t != tag and loc[-1] in spec_fields(cls)]
    if owners:
        others = " or ".join(repr(t) for t in owners)
        return f"not a key of model = {tag!r} (only of {others}); remove it or set model = {owners[0]!r}"
    return f"unknown key for model = {tag!r}; {advice}"


def tagged(members: Mapping[str, type], error: type[SpecError]):
    """A builder of the member of a tagged union of specs (``model`` = tag) by its tag.

    Parameters
    ----------
    members : mapping of str to type
        The specs of the union by their ``model`` tag.
    error : type
        The :class:`SpecError` the builder raises, with the message of :func:`one_line`.

    Returns
    -------
    callable
        ``build(model, **fields)``: the member called ``model``, checked as a run
        config's section of that union is.
    """
    adapter = TypeAdapter(Annotated[Union[tuple(members.values())], Field(discriminator="model")])

    def build(model: str, **fields):
        try:
            return adapter.validate_python({"model": model, **fields})
        except ValidationError as exc:
            raise error(one_line(exc, {(): members})) from None

    return build


def one_line(exc: ValidationError, tags: Tags | None = None) -> str:
    """The first problem of ``exc`` as :func:`error_line`, and how many more there are."""
    errors = exc.errors()
    more = len(errors) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return error_line(errors[0], tags) + suffix
