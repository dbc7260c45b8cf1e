"""``--cmd``: an external program run once per case, the contract's file protocol.

Whatever the program does, the call ends: it runs in its own process group, killed whole when
it ends or times out; of its stderr only the tail is kept (in memory, bounded); its outputs are
read only from regular files and only up to the size a result of the case can have.
"""

from __future__ import annotations

import io
import json
import math
import os
import select
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from .cases import CaseInputs, layout_shape, to_layout
from .interface import Target
from .judge import TargetError
from .processes import has_ended, kill_group

# Of the program's stderr, bncli keeps this much of the end: enough for its last line.
STDERR_TAIL = 64 * 1024
# Seconds between looks at a program where no descriptor tells its exit (no pidfd).
POLL_INTERVAL = 0.02
# Room in an output file beside its numbers: a .npy header, a csv's line ends and spaces.
FILE_ENVELOPE = 1 << 20
# The most bytes one value takes: 16 in a .npy (longdouble), 64 as csv text with its separator.
BYTES_PER_VALUE = {".npy": 16, ".csv": 64}
FILE_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


class CommandTarget(Target):
    """The command is split as a shell would (no shell runs) and gets one more argument: a fresh
    folder with x.npy, dy.npy, params.json (and x.csv, dy.csv for the nc layout). It writes
    NAME.npy or NAME.csv for any of y, dx, dw, db."""

    def __init__(self, command: str, layout: str, timeout: float):
        super().__init__(layout, timeout)
        try:
            self.argv = shlex.split(command)
        except ValueError as error:
            raise InputError(f"--cmd: cannot split {command!r}: {error}") from None
        if not self.argv:
            raise InputError("--cmd is empty")
        if shutil.which(self.argv[0]) is None:
            program = Path(self.argv[0])
            if program.is_file() and not os.access(program, os.X_OK):
                raise InputError(
                    f"--cmd: {self.argv[0]!r} is not executable: chmod +x it, or name its interpreter "
                    f"(--cmd 'python3 {self.argv[0]}')"
                )
            raise InputError(
                f"--cmd: program {self.argv[0]!r} not found (runs without a shell: use 'env VAR=value PROGRAM')"
            )
        self.name = command
        self.root = tempfile.mkdtemp(prefix="bncli-audit-")

    def call(self, inputs: CaseInputs):
        folder = Path(tempfile.mkdtemp(prefix=f"{inputs.name}-{inputs.dtype}-", dir=self.root))
        try:
            self._write_inputs(folder, inputs)
            self._run(folder)
            return self._read_outputs(folder, inputs)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _write_inputs(self, folder: Path, inputs: CaseInputs) -> None:
        x, dy = to_layout(inputs.x, self.layout), to_layout(inputs.dy, self.layout)
        np.save(folder / "x.npy", _storable(x))
        np.save(folder / "dy.npy", _storable(dy))
        params = {
            "case": inputs.name,
            "dtype": inputs.dtype,
            "layout": self.layout,
            "shape": list(x.shape),
            "eps": inputs.eps,
            "weight": [float(v) for v in inputs.weight],
            "bias": [float(v) for v in inputs.bias],
        }
        (folder / "params.json").write_text(json.dumps(params))
        if self.layout == "nc":
            _write_csv(folder / "x.csv", inputs.x)
            _write_csv(folder / "dy.csv", inputs.dy)

    def _run(self, folder: Path) -> None:
        """Run the program on ``folder`` within the timeout; a non-zero exit is an ERROR with its last stderr line."""
        try:
            process = subprocess.Popen(
                [*self.argv, str(folder)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as error:
            raise TargetError(f"could not start {self.argv[0]}: {error.strerror}") from None
        try:
            tail = _wait_keeping_tail(process, self.timeout)
        finally:  # on a timeout, Ctrl-C or SIGTERM too: its own session does not get the terminal's signal
            status = kill_group(process)  # and what it left running in the background ends with the call
            process.stderr.close()
        if status != 0:
            lines = tail.decode("utf-8", "replace").strip().splitlines()
            last = f": {lines[-1].strip()[:200]}" if lines else ""
            raise TargetError(f"exit status {status}{last}")

    def _read_outputs(self, folder: Path, inputs: CaseInputs) -> dict:
        k, n = inputs.x.shape
        outputs = {}
        for name in ("y", "dx", "dw", "db"):
            count = n if name in ("dw", "db") else k * n
            npy, csv = folder / f"{name}.npy", folder / f"{name}.csv"
            if npy.exists() or npy.is_symlink():
                outputs[name] = _read_npy(npy, count)
            elif csv.exists() or csv.is_symlink():
                values = _read_csv(csv, count)
                if name not in ("dw", "db") and self.layout != "nc" and values.size == k * n:
                    values = values.reshape(layout_shape(k, n, self.layout))  # a csv holds 4-D arrays flattened
                outputs[name] = values
        return outputs

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _wait_keeping_tail(process: subprocess.Popen, timeout: float | None) -> bytes:
    """Wait for ``process`` to end, reading its stderr as it goes and keeping only the last
    :data:`STDERR_TAIL` bytes. The wait ends when the process does, even while something it left
    running holds its stderr open. TargetError when ``timeout`` seconds pass first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    stderr = process.stderr.fileno()
    os.set_blocking(stderr, False)
    exited = _exit_descriptor(process)
    watched = [stderr] + ([exited] if exited is not None else [])
    tail = bytearray()
    try:
        while not has_ended(process):
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TargetError(f"timed out after {timeout:g} s")
            if exited is None:  # nothing tells the exit: look at the process every 20 ms
                remaining = min(POLL_INTERVAL, POLL_INTERVAL if remaining is None else remaining)
            ready, _, _ = select.select(watched, [], [], remaining)
            if stderr in ready and not _read_into(stderr, tail):
                watched.remove(stderr)
        _read_into(stderr, tail)  # what it wrote just before it ended
    finally:
        if exited is not None:
            os.close(exited)
    return bytes(tail)


def _read_into(descriptor: int, tail: bytearray) -> bool:
    """Read what is there now (without blocking) into ``tail``, keeping its end; False at the end of the stream."""
    for _ in range(64):  # a bounded drain: something else may keep writing
        try:
            chunk = os.read(descriptor, 1 << 16)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        tail += chunk
        if len(tail) > 2 * STDERR_TAIL:
            del tail[:-STDERR_TAIL]
    return True


def _exit_descriptor(process: subprocess.Popen) -> int | None:
    """A descriptor that becomes readable when ``process`` ends (Linux's pidfd), or None where there is none."""
    try:
        return os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        return None


def _output_bytes(path: Path, count: int) -> bytes:
    """The bytes of an output file of at most ``count`` values: a regular file, not larger than that needs."""
    limit = FILE_ENVELOPE + count * BYTES_PER_VALUE[path.suffix]
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as error:
        raise TargetError(f"{path.name} cannot be read: {error.strerror}") from None
    with open(descriptor, "rb", buffering=0) as handle:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            kind = FILE_KINDS.get(stat.S_IFMT(status.st_mode), "not a file")
            raise TargetError(f"{path.name} is {kind}, not a regular file")
        if status.st_size > limit:
            raise TargetError(f"{path.name} holds {status.st_size} bytes, more than a result of {count} values takes")
        data = handle.read(limit + 1)
    if len(data) > limit:  # it grew while bncli read it
        raise TargetError(f"{path.name} holds more than the {limit} bytes a result of {count} values takes")
    return data


def _read_npy(path: Path, count: int) -> np.ndarray:
    data = _output_bytes(path, count)
    claimed = _claimed_values(data)
    if claimed is not None and claimed > count:
        raise TargetError(f"{path.name}: the header claims {claimed} values; expected at most {count}")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError):
        raise TargetError(f"{path.name} is not a readable .npy file of numbers") from None


def _claimed_values(data: bytes) -> int | None:
    """How many values a .npy header says follow; None when it is not a header numpy reads (np.load says why)."""
    from numpy.lib import format as npy

    readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
    stream = io.BytesIO(data)
    try:
        shape, _, _ = readers[npy.read_magic(stream)](stream)
    except (ValueError, EOFError, KeyError):
        return None
    return math.prod(shape)


def _read_csv(path: Path, count: int) -> np.ndarray:
    """A csv the program wrote, read as bncli reads its own input (a UTF-8 BOM, quoted numbers), except
    that NaN and infinity are results like any other (elements beyond budget); anything else that is
    not a number is named by bncli's careful reader, with its line and column."""
    from ..io.read import parse_text

    data = _output_bytes(path, count)
    try:
        return parse_text(data, path.name, delimiter=",", header=False, finite=False).values
    except InputError as error:
        raise TargetError(str(error)) from None


def _storable(values: np.ndarray) -> np.ndarray:
    """What a .npy file holds of ``values``: bfloat16 (which the format has no code for) as float32,
    which holds each value exactly; the program is told the dtype in params.json."""
    return values.astype(np.float32) if values.dtype.name == "bfloat16" else values


def _write_csv(path: Path, values: np.ndarray) -> None:
    """No header, commas, the shortest text that reads back to the same float."""
    text = "\n".join(",".join(repr(float(v)) for v in row) for row in values.tolist())
    path.write_text(text + "\n")
