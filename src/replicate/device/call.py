"""One device call's folder and clock: the log, the manifest, and the stages, each in its own time box.

A lent GPU machine may fail in any way once: a check raises, a compile hangs, the call is terminated. So what a
call has done is on disk in OUT as it goes, and no stage can take the others' time:
- OUT/device_run.log is line-buffered and takes stdout and stderr (tracebacks and warnings included);
  faulthandler writes there too, the stacks of a fatal error, and of a stage stuck past its box where Python
  cannot interrupt it (a compile in C++): the watchdog;
- OUT/manifest.json is written at the start (status "running", the plan) and after every stage (its status,
  seconds and summary), so a kill at any moment leaves a folder that `ingest` takes;
- each stage's box is cut from the call's deadline (at most `share` of it, never past it, a reserve left for
  the collect); the stage gets its deadline to check in its loops, a SIGALRM at the box plus a grace raises
  StageTimeout where it does not (but in the training, which pauses its groups at its deadline itself), and a
  failure or a timeout is the stage's result: the next stage runs;
- SIGTERM stops the call where it is (CallInterrupted, the children terminated): the caller writes what it
  has and exits. A second SIGTERM is ignored, so that the writing finishes.
"""

from __future__ import annotations

import contextlib
import faulthandler
import multiprocessing
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from replicate.errors import ConfigError
from replicate.io import write_json

LOG = "device_run.log"
MANIFEST = "manifest.json"
RESERVE_S = 15.0  # kept from the stages for the collect (rows, paused states, the manifest)
GRACE_S = 15.0  # at most this past its box a stage is interrupted (SIGALRM); twice it, the watchdog dumps stacks
MIN_BOX_S = 0.1  # a stage with less time than this is skipped


class StageTimeout(Exception):
    """A stage ran past its time box."""


class CallInterrupted(BaseException):
    """SIGTERM: the call stops where it is (a BaseException: no stage records it as its own failure)."""


@dataclass(frozen=True)
class Stage:
    name: str
    share: float | None  # its box: at most this share of the call's deadline; None: all the time left
    run: Callable[[float], str]  # given its deadline (time.monotonic()), does its work; returns a summary line
    # interrupted past its box (SIGALRM); False for a stage that keeps its deadline itself and would lose work
    # if interrupted (the sweep: its groups pause at the deadline, and one finishing in a worker would be lost)
    alarm: bool = True


class _Tee:
    """A text stream that writes to a terminal stream and a log file."""

    def __init__(self, stream: TextIO, log: TextIO) -> None:
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        self.log.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.log.flush()
        self.stream.flush()

    def __getattr__(self, name: str) -> object:  # isatty, fileno, encoding...: the terminal stream's
        return getattr(self.stream, name)


def check_out(out: Path, names: tuple[str, ...], max_files: int) -> list[str]:
    """The files OUT holds before a call (a wrapper's log, say): left alone, and counted against `max_files`.
    OUT must not hold a call's files already (one folder is one call's results), and must leave room for the
    call's `names`."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is not a folder")
    foreign = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    clash = sorted(set(foreign) & {*names, MANIFEST, LOG})
    if clash:
        raise ConfigError(f"--out {out} already holds {clash[0]}: use an empty folder (one device call's results)")
    if len(foreign) + len(names) > max_files:
        raise ConfigError(
            f"--out {out} holds {len(foreign)} files already and the call writes {len(names)}: more than "
            f"--max-files {max_files}"
        )
    return foreign


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """StageTimeout raised in the main thread `seconds` from now, unless the block has ended."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum: int, frame: object) -> None:
        raise StageTimeout(f"past its time box ({seconds:.1f} s with the grace)")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _terminated(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the writing short
    for child in multiprocessing.active_children():  # the sweep's workers: their groups stop with the call
        child.terminate()
    raise CallInterrupted("SIGTERM")


class Call:
    """The folder OUT of one call and its clock (see the module docstring). `manifest` holds what the caller
    states about the call; `write_manifest` adds the stages and the files."""

    def __init__(self, out: Path, deadline_s: float, names: tuple[str, ...], max_files: int) -> None:
        self.out, self.deadline_s, self.max_files = out, deadline_s, max_files
        self.foreign = check_out(out, names, max_files)
        self.start = time.monotonic()
        self.end = self.start + deadline_s
        self.reserve = min(RESERVE_S, 0.1 * deadline_s)
        self.stages: list[dict] = []
        self.manifest: dict = {}
        self.log: TextIO | None = None

    def left(self, now: float | None = None) -> float:
        """Seconds left for stages (the reserve kept) at time.monotonic() `now` (default: now)."""
        return self.end - self.reserve - (time.monotonic() if now is None else now)

    @contextlib.contextmanager
    def opened(self) -> Iterator[None]:
        """The log (line-buffered; stdout and stderr), faulthandler on it, and the SIGTERM handler, for the
        call's duration."""
        self.out.mkdir(parents=True, exist_ok=True)
        handler = faulthandler.is_enabled()
        with (
            open(self.out / LOG, "w", buffering=1) as log,
            contextlib.redirect_stdout(_Tee(sys.stdout, log)),
            contextlib.redirect_stderr(_Tee(sys.stderr, log)),
        ):
            self.log = log
            faulthandler.enable(file=log)
            main = threading.current_thread() is threading.main_thread()
            old = signal.signal(signal.SIGTERM, _terminated) if main else None
            try:
                yield
            finally:
                if main:
                    signal.signal(signal.SIGTERM, old)
                faulthandler.cancel_dump_traceback_later()
                faulthandler.disable()
                if handler:
                    faulthandler.enable(file=sys.__stderr__)
                self.log = None

    def ignore_sigterm(self) -> None:
        """From here on the call only writes: a SIGTERM must not cut that short."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def box(self, share: float | None, start: float) -> float:
        """The time box of a stage that starts at time.monotonic() `start`."""
        left = self.left(start)
        return left if share is None else min(share * self.deadline_s, left)

    def run(self, stage: Stage) -> dict:
        """Run one stage in its box (see the module docstring); its record, also in the manifest."""
        t0 = time.monotonic()
        box = self.box(stage.share, t0)  # from the same clock reading: the last stage ends at the reserve exactly
        record = {"stage": stage.name, "box_s": round(max(box, 0.0), 1)}
        if box < MIN_BOX_S:
            return self._record({**record, "status": "skipped", "seconds": 0.0, "summary": "no time left"})
        grace = min(GRACE_S, 0.1 * box + 0.5)
        self.write_manifest("running", stage.name)
        faulthandler.dump_traceback_later(box + 2 * grace, file=self.log or sys.stderr)
        try:
            with _alarm(box + grace) if stage.alarm else contextlib.nullcontext():
                status, summary = "ok", stage.run(t0 + box)
        except StageTimeout as err:
            status, summary = "timeout", str(err)
        except Exception as err:  # a stage's failure is its result: the call goes on
            status, summary = "failed", f"{type(err).__name__}: {str(err)[:500]}"
            traceback.print_exc()
        except CallInterrupted:
            seconds = round(time.monotonic() - t0, 2)
            self.stages.append({**record, "status": "interrupted", "seconds": seconds, "summary": "SIGTERM"})
            raise
        finally:
            faulthandler.cancel_dump_traceback_later()
        seconds = round(time.monotonic() - t0, 2)
        print(f"{stage.name}: {status} in {seconds:.1f} s (box {box:.1f} s): {summary}")
        return self._record({**record, "status": status, "seconds": seconds, "summary": summary})

    def _record(self, record: dict) -> dict:
        self.stages.append(record)
        self.write_manifest("running")
        return record

    def files(self) -> list[str]:
        """The call's files in OUT (the manifest included)."""
        names = {MANIFEST, *(p.name for p in self.out.iterdir())} - set(self.foreign)
        return sorted(n for n in names if not n.startswith("."))  # an atomic write's temporary file is no result

    def write_manifest(self, status: str, running: str | None = None) -> None:
        """manifest.json: the caller's `manifest`, the status, the stages so far (and the one running)."""
        write_json(
            self.out / MANIFEST,
            {
                **self.manifest,
                "status": status,
                "running": running,
                "wall_s": round(time.monotonic() - self.start, 1),
                "stages": self.stages,
                "files": self.files(),
                "foreign_files": self.foreign,
                "max_files": self.max_files,
            },
        )
