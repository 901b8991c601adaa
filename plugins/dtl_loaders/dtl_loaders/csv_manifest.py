"""The CSV/TSV manifest loader: one row per image, ``path,label[,split]``.

Example (``labels.csv``)::

    path,label,split
    images/cat_01.jpg,cat,train
    images/dog_07.jpg,dog,val

Relative paths are read from the manifest's folder, so a dataset folder can be moved
whole; backslashes written on Windows work on every system. The file's header row names
the columns (any order, any case). A row whose image is missing is kept: the core reports
it as a bad file with its path, beside every other unreadable image. Columns are separated
by tabs in a ``.tsv`` file; in a ``.csv`` file by commas, or by tabs or semicolons when
the header row uses those (as some spreadsheet programs write). Rows separated
differently from the header are named as such: all of them is a refusal, some of them a
warning, as is any other row that had to be skipped.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path, PureWindowsPath
from typing import Any

from desktop_tl.plugin import DatasetError, LoadedDataset, Sample

from .subsets import SUBSET_NAMES

MANIFEST_SUFFIXES = (".csv", ".tsv")


def can_load_manifest(path: str) -> bool:
    candidate = Path(path)
    return candidate.suffix.lower() in MANIFEST_SUFFIXES and candidate.is_file()


def load_manifest(path: str, options: dict[str, Any]) -> LoadedDataset:
    manifest = Path(path)
    text = _read_text(manifest)
    lines = text.splitlines()
    header_line = next((line for line in lines if line.strip()), None)
    if header_line is None:
        raise DatasetError(
            f"manifest {manifest} is empty; it needs a header row 'path,label' and one row per image"
        )
    delimiter = _delimiter(manifest, header_line)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next((row for row in reader if any(cell.strip() for cell in row)))
    columns = [cell.strip().lower() for cell in header]
    if "path" not in columns or "label" not in columns:
        shown = delimiter.join(cell.strip() for cell in header)
        raise DatasetError(
            f"manifest {manifest} must start with a header row naming the columns path "
            f"and label (optionally split), e.g. 'path,label,split'; its first row is "
            f"{shown!r}"
        )
    path_col, label_col = columns.index("path"), columns.index("label")
    split_col = columns.index("split") if "split" in columns else None
    needed = max(c for c in (path_col, label_col, split_col) if c is not None) + 1

    base = manifest.parent
    samples: list[Sample] = []
    ignored: list[tuple[str, str]] = []
    other_separator: str | None = None
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue  # blank lines are allowed anywhere
        where = f"{manifest}:{reader.line_num}"
        if len(row) < needed:
            separator = _separator_that_fits(delimiter.join(row), delimiter, needed)
            if separator is not None:
                other_separator = other_separator or separator
                ignored.append(
                    (where, f"row is separated by {separator!r} but the header row by {delimiter!r}")
                )
            else:
                ignored.append((where, f"row has {len(row)} column(s), the header names {len(columns)}"))
            continue
        raw_path, label = row[path_col].strip(), row[label_col].strip()
        if not raw_path:
            ignored.append((where, "row has no path"))
            continue
        if not label:
            ignored.append((where, f"row for {raw_path} has no label"))
            continue
        subset = None
        if split_col is not None and row[split_col].strip():
            value = row[split_col].strip()
            subset = SUBSET_NAMES.get(value.lower())
            if subset is None:
                raise DatasetError(
                    f"{where}: split {value!r} is not train, val or test; fix the value "
                    "or leave the split cell empty"
                )
        samples.append(Sample(path=str(_resolve(base, raw_path)), label=label, subset=subset))
    if not samples and other_separator is not None:
        raise DatasetError(
            f"manifest {manifest}: its header row is separated by {delimiter!r} but its rows "
            f"by {other_separator!r}; use one separator throughout (e.g. save it again as "
            "CSV from the spreadsheet program)"
        )
    warnings = []
    if ignored:
        where, reason = ignored[0]
        warnings.append(
            f"{len(ignored)} row{'s' if len(ignored) != 1 else ''} of {manifest.name} "
            f"{'were' if len(ignored) != 1 else 'was'} skipped, so their images are not used "
            f"(e.g. line {where.rsplit(':', 1)[1]}: {reason}); correct "
            f"{'them' if len(ignored) != 1 else 'it'} to include those images"
        )
    class_names = sorted({sample.label for sample in samples})
    return LoadedDataset(
        samples=samples, class_names=class_names, root=str(base), ignored=ignored, warnings=warnings
    )


def _separator_that_fits(line: str, delimiter: str, needed: int) -> str | None:
    """Another separator that splits ``line`` into the ``needed`` columns, if any."""
    for candidate in (",", ";", "\t"):
        if candidate != delimiter and len(next(csv.reader([line], delimiter=candidate))) >= needed:
            return candidate
    return None


def _read_text(manifest: Path) -> str:
    try:
        return manifest.read_text(encoding="utf-8-sig")  # tolerate a spreadsheet's BOM
    except FileNotFoundError:
        raise DatasetError(f"manifest {manifest} does not exist; check the path") from None
    except UnicodeDecodeError:
        raise DatasetError(f"manifest {manifest} is not UTF-8 text; save it as CSV (UTF-8)") from None
    except OSError as exc:
        raise DatasetError(f"cannot read manifest {manifest}: {exc.strerror or exc}") from None


def _delimiter(manifest: Path, header_line: str) -> str:
    if manifest.suffix.lower() == ".tsv" or "\t" in header_line:
        return "\t"
    if ";" in header_line and "," not in header_line:
        return ";"
    return ","


def _resolve(base: Path, raw_path: str) -> Path:
    if os.sep == "/" and "\\" in raw_path:
        windows = PureWindowsPath(raw_path)
        if not windows.drive:  # a relative Windows path: same folders, other separator
            raw_path = windows.as_posix()
    candidate = Path(raw_path).expanduser()
    if not candidate.is_absolute():
        candidate = base / candidate
    return Path(os.path.normpath(candidate))
