"""The Neural Style dialog's option fields, generated from impasto.options.

Each EngineOptions field with `gimp=` metadata becomes one field of the dialog: its kind,
range, choices and default from the option, its words from the metadata. `render()`
writes them as a standard-library module that `impasto gimp install` and the plug-in
archive put beside the plug-in (impasto_fields.py), since GIMP's Python cannot import
impasto. So a new option reaches the dialog with its entry in options.py alone.
"""

from __future__ import annotations

import pprint
from typing import Any

from impasto.options import FIELDS, PRESETS, DialogField, base_type, type_hints
from impasto.version import __version__

_KINDS = {bool: "boolean", int: "int", float: "double", str: "choice"}


def dialog_fields() -> list[dict[str, Any]]:
    """One plain dict per dialog field, in options.py's order."""
    out = []
    for name, f in FIELDS.items():
        d: DialogField | None = f.metadata.get("gimp")
        if d is None:
            continue
        kind, is_list, _ = base_type(type_hints()[name])
        if is_list or kind not in _KINDS or (kind is str and not f.metadata["choices"]):
            raise ValueError(f"option {name}: the dialog offers booleans, numbers and choices")
        default = f.default if f.default is not None else d.unset
        field: dict[str, Any] = {
            "argument": name.replace("_", "-"), "option": name, "kind": _KINDS[kind],
            "label": d.label, "help": d.help.format(**{p: v.size for p, v in PRESETS.items()}),
            "unset": d.unset, "more": d.more}
        if kind is str:
            words = dict(d.labels)
            nicks = ([d.unset] if d.unset is not None else []) + list(f.metadata["choices"])
            field["choices"] = [[n, words.get(n, n)] for n in nicks]
            field["default"] = default
        elif kind is bool:
            field["default"] = bool(default)
        else:
            lo, hi = f.metadata["lo"], f.metadata["hi"]
            top = hi * d.scale if d.most is None else min(hi * d.scale, d.most)
            bottom = lo * d.scale if d.unset is None else min(lo * d.scale, d.unset)
            cast = int if kind is int else float
            field.update(min=cast(bottom), max=cast(top), scale=d.scale,
                         default=cast(default * d.scale if default != d.unset else default))
        out.append(field)
    return out


_FUNCTIONS = '''

def options_from(value_of):
    """The engine options the dialog's values ask for; value_of(argument) gives a
    field's value. A field left at its unset value asks for nothing."""
    out = {}
    for f in FIELDS:
        v = value_of(f["argument"])
        if v == f["unset"]:
            continue
        if f["kind"] == "double":
            v = float(v) / f["scale"]
        elif f["kind"] == "int":
            v = int(v)
        out[f["option"]] = v
    return out


def field(argument):
    return next(f for f in FIELDS if f["argument"] == argument)
'''


def render() -> str:
    """impasto_fields.py: the fields as data, and how the dialog's values become options."""
    sizes = {name: p.size for name, p in PRESETS.items()}
    return (f'"""The Neural Style dialog\'s option fields (impasto {__version__}), generated '
            'from impasto.options\nby impasto.gimp.dialogfields: do not edit. A new field is '
            'an option with `gimp=` there."""\n\n'
            f"FIELDS = {pprint.pformat(dialog_fields(), width=96, sort_dicts=False)}\n\n"
            "# Working size 0 means the layer's own size, up to its quality's size.\n"
            f"PRESET_SIZES = {sizes!r}\n" + _FUNCTIONS)


