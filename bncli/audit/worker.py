"""The process an audited Python function runs in (``python -m bncli.audit.worker FILE.py:FUNCTION``).

A target that calls ``os._exit``, crashes, prints, or holds the interpreter past its
timeout then takes only this process with it: bncli reports an ERROR for that case,
starts a new worker and goes on. Requests and replies are length-prefixed pickles on
the worker's stdin and stdout (both sides are bncli); the target's own prints go to
stderr, so they never mix with the audit's output.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import pickle
import struct
import sys
from pathlib import Path

from ..errors import InputError

HEADER = struct.Struct("<Q")


def send(stream, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def receive(stream):
    """The next message, or None at the end of the stream."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    return pickle.loads(stream.read(HEADER.unpack(header)[0]))


def describe(error: BaseException) -> str:
    """An exception in one line of reasonable length: its type and its message's first line."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0].strip() if lines else ''}".rstrip(": ")
    return text if len(text) <= 200 else text[:199] + "…"


def _portable(value):
    """The target's result in a form that pickles: arrays, numbers, None, strings; else its repr."""
    import numpy as np

    def one(item):
        if item is None or isinstance(item, str | int | float | np.ndarray | np.generic):
            return item
        try:
            return np.asarray(item)
        except Exception:  # noqa: BLE001 - whatever the target returned; the parent judges it
            return repr(item)[:200]

    if isinstance(value, dict):
        return {key if isinstance(key, str) else repr(key): one(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return tuple(one(item) for item in value)
    return one(value)


def _call(func, args) -> tuple:
    import numpy as np

    before = [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args]
    try:
        with np.errstate(all="ignore"):  # the target's overflow is judged by its results, not warned about
            value = func(*args)
    except InputError as error:  # a style's adapter found the target is not what that style expects
        return "input-error", str(error)
    except BaseException as error:  # noqa: BLE001 - anything the target raises (SystemExit too) is its ERROR
        return "raised", describe(error)
    changed = [
        name
        for name, now, then in zip(("x", "weight", "bias", "eps", "dy"), args, before, strict=True)
        if isinstance(now, np.ndarray) and not np.array_equal(now, then, equal_nan=True)
    ]
    return "ok", _portable(value), changed


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
    module_name = f"bncli_audit_target_{path.stem}"
    loader = importlib.machinery.SourceFileLoader(module_name, str(path))  # any file name, as python FILE
    spec_ = importlib.util.spec_from_file_location(module_name, path, loader=loader)
    module = importlib.util.module_from_spec(spec_)
    sys.modules[module_name] = module  # as an import would: dataclasses and pickle look the module up
    try:
        spec_.loader.exec_module(module)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - any failure to import is the user's input error
        del sys.modules[module_name]
        raise InputError(f"target {spec!r}: importing {location} failed: {type(error).__name__}: {error}") from None
    return module


def _import_module(spec: str, location: str):
    """``package.module``, from the current folder or the installed packages."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(location)
    except (Exception, SystemExit) as error:  # noqa: BLE001
        raise InputError(f"target {spec!r}: cannot import {location}: {type(error).__name__}: {error}") from None


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
        send(replies, ("input-error", str(error)))
        return
    except BaseException as error:  # noqa: BLE001 - whatever stops the import is the user's input error
        send(replies, ("input-error", f"target {sys.argv[1]!r}: cannot import it: {type(error).__name__}: {error}"))
        return
    send(replies, ("ready",))
    while (args := receive(requests)) is not None:
        reply = _call(func, args)
        try:
            send(replies, reply)
        except Exception as error:  # noqa: BLE001 - a result that cannot be pickled
            send(replies, ("unusable", f"returned what cannot be passed back ({type(error).__name__}: {error})"))


if __name__ == "__main__":
    main()
