"""The process an audited Python function runs in (``python -m bncli.audit.worker FILE.py:FUNCTION``).

A target that calls ``os._exit``, crashes, prints, or holds the interpreter past its
timeout then takes only this process with it: bncli reports an ERROR for that case,
starts a new worker and goes on. Requests and replies (:mod:`bncli.audit.protocol`) go on
the worker's stdin and stdout: the worker turns each result into plain float64 arrays before
it replies, so bncli never unpickles what a target made. The target's own prints go to
stderr, so they never mix with the audit's output. bncli starts it with ``-P``: modules in
the current folder (a ``random.py``) do not shadow the ones the worker needs.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path

from ..errors import InputError
from . import protocol
from .oneline import describe

# Where a target's module may not go under its file's name (taken, or not a name an import can find).
FALLBACK_PREFIX = "bncli_audit_target_"


def plain_outputs(value, args) -> dict:
    """The target's result as float64 arrays by quantity name: nothing of the target's own classes
    (a cache object, an ndarray subclass) reaches bncli, and extra keys are dropped here.

    Raises TargetError for a result that is not one, or holds more values than the case has.
    """
    from .cases import JUDGED
    from .judge import TargetError, as_mapping, real_array

    per_sample, per_feature = args[0].size, args[1].size
    expected = {name: per_sample if name in ("y", "dx") else per_feature for name in JUDGED}
    plain = {}
    for name, item in as_mapping(value).items():
        if type(name) is str and name in JUDGED and item is not None:
            array = real_array(name, item)
            if array.size > expected[name]:
                raise TargetError(f"{name} has {array.size} values; expected {expected[name]}")
            plain[name] = array
    return plain


def _call(func, args, keywords: dict | None = None) -> protocol.Reply:
    """One call: ``keywords`` those of the running statistics that the function declares."""
    import numpy as np

    from .interface import ByDesign, changed_inputs, snapshot
    from .judge import TargetError

    before = snapshot(args)
    try:
        with np.errstate(all="ignore"):  # the target's overflow is judged by its results, not warned about
            value = func(*args, **(keywords or {}))
    except InputError as error:  # a style's adapter found the target is not what that style expects
        return protocol.Reply("input-error", str(error))
    except BaseException as error:  # noqa: BLE001 - anything the target raises (SystemExit too) is its ERROR
        return protocol.Reply("raised", describe(error))
    try:
        outputs = plain_outputs(value, args)
    except TargetError as error:
        return protocol.Reply("unusable", str(error))
    except BaseException as error:  # noqa: BLE001 - the result's own methods (items, __array__) raised
        return protocol.Reply("unusable", f"returned what bncli cannot read ({describe(error)})")
    by_design = value.reason if isinstance(value, ByDesign) else ""  # the text of an ok reply: why only these
    return protocol.Reply("ok", by_design, outputs=outputs, changed=changed_inputs(args, before))


def load_function(spec: str):
    """``path/to/file.py:func`` (its folder first on sys.path) or ``package.module:func``."""
    location, _, attribute = spec.rpartition(":")
    if not location or not attribute:
        raise InputError(f"target {spec!r}: expected FILE.py:FUNCTION, package.module:FUNCTION, torch or bncli")
    module = load_module(spec, location)
    func = getattr(module, attribute, None)
    if func is None:
        raise InputError(f"target {spec!r}: {location} has no function {attribute!r}")
    if not callable(func):
        raise InputError(
            f"target {spec!r}: {attribute!r} in {location} is not a function (it is of type {type(func).__name__})"
        )
    return func


def load_rank_function(spec: str):
    """The target as each rank calls it, ``func(x, weight, bias, eps, dy)`` and no keyword: a function that
    requires more (running statistics without defaults) cannot be audited under --shards (InputError)."""
    from .interface import unfilled_parameters

    func = load_function(spec)
    unfilled = unfilled_parameters(func)
    if unfilled:
        raise InputError(
            f"target {spec!r}: it requires {', '.join(unfilled)}, which --shards does not pass (each rank calls "
            "func(x, weight, bias, eps, dy)): give them defaults, or audit it without --shards"
        )
    return func


def load_module(spec: str, location: str):
    """``path/to/file.py`` or ``package.module``: the module ``spec`` names a function of."""
    if location.endswith(".py") or os.sep in location or "/" in location:
        return _import_file(spec, location)
    return _import_module(spec, location)


def _import_file(spec: str, location: str):
    """The module of a file, imported the way ``python FILE`` would see it: its folder first on sys.path."""
    path = Path(location)
    if not path.is_file():
        raise InputError(f"target {spec!r}: no file {location}")
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    module_name = _module_name(path.stem)
    loader = importlib.machinery.SourceFileLoader(module_name, str(path))  # any file name, as python FILE
    spec_ = importlib.util.spec_from_file_location(module_name, path, loader=loader)
    module = importlib.util.module_from_spec(spec_)
    sys.modules[module_name] = module  # as an import would: dataclasses and pickle look the module up
    try:
        spec_.loader.exec_module(module)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - any failure to import is the user's input error
        del sys.modules[module_name]
        raise InputError(f"target {spec!r}: importing {location} failed: {describe(error)}") from None
    return module


def _module_name(stem: str) -> str:
    """The file's own name, as ``import STEM`` beside it would give: pickle (process pools that spawn
    their workers) finds the target's functions by it. A name an import cannot reach, or one already
    taken (``numpy.py``), gets a private name instead."""
    taken = stem in sys.modules or stem in sys.stdlib_module_names
    return FALLBACK_PREFIX + stem if taken or not stem.isidentifier() else stem


def _import_module(spec: str, location: str):
    """``package.module``, from the current folder or the installed packages."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(location)
    except (Exception, SystemExit) as error:  # noqa: BLE001
        raise InputError(f"target {spec!r}: cannot import {location}: {describe(error)}") from None


def main(load=load_function) -> None:
    """Serve calls of ``load(sys.argv[1])`` (:mod:`bncli.audit.styles` loads through its adapters)."""
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)  # the target's prints go to stderr
    try:
        func = load(sys.argv[1])
    except InputError as error:
        protocol.send_reply(replies, protocol.Reply("input-error", str(error)))
        return
    except BaseException as error:  # noqa: BLE001 - whatever stops the import is the user's input error
        text = f"target {sys.argv[1]!r}: cannot import it: {describe(error)}"
        protocol.send_reply(replies, protocol.Reply("input-error", text))
        return
    from .interface import declared_keywords, expected_running

    declared = declared_keywords(func)
    # The ready reply tells what the function declares and which running statistics it is expected to return.
    ready = {"declares": list(declared), "expects": list(expected_running(func))}
    protocol.send_reply(replies, protocol.Reply("ready", json.dumps(ready)))
    while (request := protocol.receive_request(requests)) is not None:
        args, keywords = request
        protocol.send_reply(replies, _call(func, args, {name: keywords[name] for name in declared}))


if __name__ == "__main__":
    main()
