"""The notebooks' parameters: one dataclass, the source of every place that names them.

A task notebook takes all of :class:`NotebookParameters` (papermill's ``-p`` names); the
method, results and conclusion pages take subsets. From the dataclass come the ``parameters``
cell of every generated notebook (:meth:`NotebookParameters.cell`), the values the sweep
passes to papermill (:meth:`NotebookParameters.values`) and the names a notebook accepts
(:data:`PARAMETER_NAMES`). Every value is a plain literal (papermill injects them as code).

A list parameter accepts every form papermill users type (:func:`coerce`): ``-p scales 3``
(papermill injects the int 3), ``-p scales "[3]"`` and ``-p scales 2,3`` (injected as strings)
and ``-y "scales: [2, 3]"`` (a list); :data:`LIST_FORMS` documents them on every task page.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from ablation.config import PROFILE_NAMES
from ablation.errors import ConfigError

PROFILE_CHOICES = " | ".join(PROFILE_NAMES)  # "smoke | cpu | cpu4 | cpu16 | paper"


def _doc(default, text: str):
    return field(default=default, metadata={"doc": text})


@dataclass(frozen=True)
class NotebookParameters:
    """A notebook's parameters with the defaults its ``parameters`` cell shows."""

    profile: str = _doc("cpu", f"{PROFILE_CHOICES}: ablation.config.PROFILES")
    scales: tuple[int, ...] = _doc((2,), "upscaling factors to run")
    seeds: tuple[int, ...] = _doc((0,), "seeds to train; pages show every seed on disk")
    variants: tuple[str, ...] = _doc((), "variant names of this task; empty list: all of them")
    data_dir: str | None = _doc(None, "None: $ABLATION_DATA or ./data")
    results_dir: str | None = _doc(None, "None: $ABLATION_RESULTS or ./results")
    device: str = _doc("auto", "auto | cpu | cuda | cuda:N")
    iterations: int | None = _doc(None, "None: the profile's default")
    retrain: bool = _doc(False, "True: retrain even if a finished run with this config exists")

    def values(self, names: Sequence[str] | None = None) -> dict:
        """{name: plain value} (tuples as lists), in field order, for ``names`` (default all)."""
        wanted = PARAMETER_NAMES if names is None else tuple(names)
        unknown = sorted(set(wanted) - set(PARAMETER_NAMES))
        if unknown:
            raise ValueError(f"not notebook parameters: {unknown}")
        return {n: _plain(getattr(self, n)) for n in PARAMETER_NAMES if n in wanted}

    def cell(self, names: Sequence[str] | None = None, docs: dict[str, str] | None = None
             ) -> str:
        """The ``parameters`` cell: ``name = value  # what it means``, one line per parameter
        (``docs`` replaces a parameter's explanation on a page that uses it differently)."""
        docs = docs or {}
        comments = {f.name: f.metadata["doc"] for f in fields(self)}
        return "\n".join(f"{n} = {_literal(v)}  # {docs.get(n, comments[n])}"
                         for n, v in self.values(names).items())


PARAMETER_NAMES = tuple(f.name for f in fields(NotebookParameters))
# How a page's runs ran rather than which runs it shows: its TaskRuns keeps the others, so the
# generated rerun cell passes these to ablation.rerun.rerun_section (tests check the split)
HOW_TO_RUN = ("device", "iterations", "retrain")


LIST_PARAMETERS = tuple(f.name for f in fields(NotebookParameters) if f.type.startswith("tuple"))
LIST_FORMS = ('`-p scales 3`, `-p scales 2,3`, `-p scales "[2, 3]"` or `-y "scales: [2, 3]"` '
              "(the same for seeds and variants)")


def coerce(name: str, value) -> list:
    """A list parameter as a list, whatever form papermill injected it in.

    ``3`` -> ``[3]``; ``"[3]"``, ``"2,3"``, ``"2, 3"`` -> ``[2, 3]``; ``"prelu"`` ->
    ``["prelu"]``; a list or tuple is kept. Integers stay integers, other items are stripped
    strings (``variants``). Raises :class:`~ablation.errors.ConfigError` (one line) otherwise.
    """
    import ast

    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "(")):
            try:
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise ConfigError(f"parameter {name}={value!r}: not a list; write e.g. "
                                  f"{LIST_FORMS}") from None
            items = list(parsed) if isinstance(parsed, (list, tuple)) else [parsed]
        else:
            items = [x.strip() for x in text.split(",") if x.strip()]
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    else:
        raise ConfigError(f"parameter {name}={value!r}: expected a list; write e.g. "
                          f"{LIST_FORMS}")
    return [_int_or_str(name, x) for x in items]


def _int_or_str(name: str, item) -> int | str:
    """``"3"`` -> 3 for the integer lists (scales, seeds); strings for variants."""
    if name == "variants":
        return str(item).strip()
    try:
        return int(str(item).strip()) if not isinstance(item, int) else item
    except ValueError:
        raise ConfigError(f"parameter {name}: {item!r} is not an integer; write e.g. "
                          f"{LIST_FORMS}") from None


def _plain(value):
    """Tuples as lists: what papermill injects and JSON reads back."""
    return list(value) if isinstance(value, tuple) else value


def _literal(value) -> str:
    """Python source of a plain value, strings in double quotes ('"cpu"', '[2, 3]', 'None')."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return repr(value)
