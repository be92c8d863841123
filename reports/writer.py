"""The one place reports touch files: a rendered report to a path (or '-' for stdout), a
folder of figures. Each file is written to a temporary name and renamed into place, so an
interrupted or failed write never leaves half a report where a good one was.

No fsync before the rename: the rename is atomic against a crash or kill of this process,
which is what a report needs (a power cut can lose the newest report, never the data: every
report is a function of results.jsonl, which reports.store fsyncs line by line). A folder of
figures is renamed file by file: a failure part way leaves each file whole, old or new."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from .errors import BadInput

STDOUT = "-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def refuse_existing(outputs, *, force: bool, keep: tuple[Path, ...] = ()) -> None:
    """Never overwrite a report without --force: BadInput (exit 2, before anything is rendered)
    naming the first of `outputs` ((option, dest) pairs) that is an existing file. stdout ('-'),
    devices and pipes (written in place, never replaced) and the paths in `keep` (a run's own
    report.html, which `xfbench report RUN` renders again from that run's results) are never
    refused; with force nothing is."""
    if force:
        return
    kept = {_same(p) for p in keep}
    for option, dest in outputs:
        if dest is None or str(dest) == STDOUT:
            continue
        path = Path(dest)
        if path.is_file() and _same(path) not in kept:
            raise BadInput(f"{option}: {path} exists: give another path, or --force to overwrite it")


def refuse_existing_figures(folder: Path | None, formats, *, force: bool) -> None:
    """The same for a folder of figures: refused when it already holds a figure of one of `formats`."""
    if force or folder is None or not folder.is_dir():
        return
    old = sorted(p.name for p in folder.iterdir() if p.suffix.lstrip(".") in formats and p.is_file())
    if old:
        raise BadInput(f"--figures: {folder} already holds figures ({old[0]}, ...): give another folder, "
                       "or --force to overwrite them")


def _same(path: Path) -> Path:
    try:
        return Path(path).resolve()
    except OSError:
        return Path(os.path.abspath(path))


def write_output(data: str | bytes, dest: str | Path) -> Path | None:
    """Write `data` to `dest` ('-': stdout, then None is returned); text is UTF-8."""
    if str(dest) == STDOUT:
        if isinstance(data, bytes):
            sys.stdout.buffer.write(data)
        else:
            sys.stdout.write(data)
        sys.stdout.flush()
        return None
    path = Path(dest)
    blob = data.encode("utf-8") if isinstance(data, str) else data
    if path.exists() and not path.is_file() and not path.is_dir():  # a device or a pipe: never rename over it
        try:
            with open(path, "wb") as fh:
                fh.write(blob)
        except OSError as e:
            raise BadInput(f"cannot write {path}: {e.strerror or e}") from None
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; a report is as readable as any file
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise BadInput(f"cannot write {path}: {e.strerror or e}") from None
    return path


def write_files(files: dict[str, bytes], folder: str | Path) -> list[Path]:
    """Write each {name: bytes} into `folder` (created); the paths written, in order."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"cannot write figures into {folder}: it is a file, not a folder")
    return [write_output(data, folder / name) for name, data in files.items()]
