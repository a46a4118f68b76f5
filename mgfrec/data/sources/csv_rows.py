"""Reading a delimited file's rows, as the ``csv`` data source does: the header's checks, strict CSV quoting (or
none), a row cut by a lone carriage return, a quote left open that swallowed the rows after it, and bytes the
encoding cannot decode, each named by file and line. Split from :mod:`mgfrec.data.sources.csv_folder`, which
checks each row's fields."""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from mgfrec.data.raw import BadInputError

if TYPE_CHECKING:
    from mgfrec.data.sources.csv_folder import CsvOptions

_SURROGATES = range(0xDC80, 0xDD00)  # what errors="surrogateescape" makes of undecodable bytes
_FIELD_LIMIT = 2**31 - 1  # the largest value csv.field_size_limit takes on every platform


def bad_encoding(values: list[str]) -> bool:
    return any(ord(ch) in _SURROGATES for v in values for ch in v)


_PACKED = (
    ("gzip", b"\x1f\x8b"),
    ("zip", b"PK\x03\x04"),
    ("xz", b"\xfd7zX"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
)
"""The first bytes of compressed files a catalogue export comes as."""


def read_rows(
    path: Path, required: tuple[str, ...], options: CsvOptions, reserved: tuple[str, ...] = ()
) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header and an iterator of ``(line number, fields)``. Missing required columns, a column named twice
    and a ``reserved`` column are errors naming the file; so is a quote left open (see :func:`_check_span`)."""
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "not a regular file" if path.exists() else "file not found"
        raise BadInputError(f"{path}: {what}")
    csv.field_size_limit(_FIELD_LIMIT)  # the default (131,072 characters) is an error, not a rule of the format
    with path.open("rb") as raw:
        magic = raw.read(4)
    packed = next((name for name, start in _PACKED if magic.startswith(start)), None)
    if packed is not None:  # it was "the header holds bytes that are not valid utf-8"
        raise BadInputError(f"{path}: a {packed} file; the csv source reads plain text, so unpack it first")
    # utf-8-sig drops a byte order mark before the csv module sees it: a quoted first column name stays quoted
    encoding = "utf-8-sig" if codecs.lookup(options.encoding).name == "utf-8" else options.encoding
    handle = path.open("r", encoding=encoding, errors="surrogateescape", newline="")
    lines = _LastLine(handle)
    # strict: text after a closing quote (`"Heroes" (Live)`) is an error, where the lenient reader dropped the
    # quotes and kept the row without a word (review s38)
    quoting = csv.QUOTE_NONE if options.quoting == "none" else csv.QUOTE_MINIMAL
    reader = csv.reader(lines, delimiter=options.delimiter, strict=True, quoting=quoting)
    try:
        header = [h.strip().lstrip("\ufeff") for h in next(reader)]
    except StopIteration:
        handle.close()
        raise BadInputError(f"{path}: empty file; expected a header with columns {', '.join(required)}") from None
    except csv.Error as exc:
        handle.close()
        raise BadInputError(f"{path}:{reader.line_num}: the header is not valid CSV ({exc}); {QUOTE_RULE}") from None
    except UnicodeError as exc:  # a UnicodeDecodeError, or utf-16's plain UnicodeError for a missing BOM
        handle.close()
        raise _undecodable(path, encoding, exc) from None
    if reader.line_num != 1:  # a quote opened in the header swallowed the rows after it into a column name
        handle.close()
        raise BadInputError(
            f"{path}:1: a quote opened in the header runs on to line {reader.line_num} (closed there, or never: the "
            f"file's end), so {reader.line_num - 1} following line(s) were read as part of a column name; close the "
            "quote"
        )
    if bad_encoding(header):
        handle.close()
        # the hint a bad row gets, which the header's error lacked (a Latin-1 or UTF-16 export; review s35)
        codec = codecs.lookup(options.encoding).name
        hint = ""
        if magic.startswith((b"\xff\xfe", b"\xfe\xff")) and not codec.startswith("utf-16"):
            hint = "; it starts with a UTF-16 byte order mark: pass -o encoding=utf-16"
        elif codec == "utf-8":
            hint = (
                "; if the file is in another encoding, pass -o encoding=latin-1 (or cp1252; to the demo: --set "
                "data.options.encoding=latin-1)"
            )
        raise BadInputError(f"{path}:1: the header holds bytes that are not valid {options.encoding}{hint}")
    if not any(header):  # a blank first line: "missing column(s) item_id, title; header is ;"
        handle.close()
        raise BadInputError(f"{path}:1: the line is blank; the header (the column names) must be the first line")
    missing = [c for c in required if c not in header]
    if missing:
        handle.close()
        other = next((d for d in ("\t", ";", ",", "|") if d != options.delimiter and any(d in h for h in header)), None)
        flag = "-o delimiter=tab" if other == "\t" else f"-o 'delimiter={other}'"
        hint = f"; it holds {other!r}, the delimiter of another file kind: pass {flag}" if other is not None else ""
        cased = [f"{h} -> {c}" for c in missing for h in header if h.lower() == c.lower()]
        if cased and not hint:  # Item_ID: the names are compared as written
            hint = f"; column names are case-sensitive: rename {', '.join(cased)}"
        raise BadInputError(
            f"{path}:1: missing column(s) {', '.join(missing)}; header is {', '.join(header)}; "
            f"required: {', '.join(required)}{hint}"
        )
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        handle.close()
        names = ", ".join(c or "(an empty name)" for c in twice)
        raise BadInputError(f"{path}:1: column(s) {names} appear more than once in the header")
    taken = [c for c in reserved if c in header]
    if taken:
        handle.close()
        raise BadInputError(
            f"{path}:1: column(s) {', '.join(taken)} are reserved (mgfrec numbers the items itself); rename them"
        )

    key = header.index(required[0])  # the id column (item_id, user_id): what a swallowed row would begin with
    shapes: set[str] = set()  # the id shapes seen so far in single-line rows
    lengths: set[int] = set()  # and their lengths

    # a file whose lines end with \n or \r\n: a lone \r ends a line for the csv module, so one inside an unquoted
    # field split its row in two, and --skip-bad kept the first part with a cut title (review s38)
    lone_cr_splits = lines.last.endswith("\n")

    def rows() -> Iterator[tuple[int, list[str]]]:
        with handle:
            start = reader.line_num + 1
            while True:
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    if reader.line_num == start and "end of data" in str(exc):  # it said "runs on to" this line
                        raise BadInputError(
                            f"{path}:{start}: a quote opened on this line is never closed (the file ends there); "
                            "close it, or remove the line (a file cut short?)"
                        ) from None
                    if reader.line_num != start or "end of data" in str(exc):  # a quote that ran across lines
                        raise BadInputError(
                            f"{path}:{start}: a quote opened on this line runs on to line {reader.line_num} (closed "
                            f"there, or never: the file's end), so {reader.line_num - start} following line(s) were "
                            "read as part of one field; close the quote (a field may span lines only inside "
                            "matching quotes)"
                        ) from None
                    # one line: a row of its own, refused (or skipped) as a bad row, its id read leniently so that
                    # its interactions can say why the item is gone
                    yield start, BadQuote(next(csv.reader([lines.last], delimiter=options.delimiter), []))
                    start = reader.line_num + 1
                    continue
                except UnicodeError as exc:  # utf-16/32 have no escape for bad bytes: the file stops here
                    raise _undecodable(path, encoding, exc) from None
                if fields and not (len(fields) == 1 and not fields[0].strip()):  # blank lines are not rows
                    if reader.line_num == start and len(fields) > key:
                        shapes.add(_shape(fields[key]))
                        lengths.add(len(fields[key].strip()))
                    else:
                        width, where = len(header), (path, start, reader.line_num)
                        if not options.multiline:
                            _check_span(*where, fields, width, options.delimiter, key, shapes, lengths)
                    if lone_cr_splits and lines.last.endswith("\r") and (lines.peek() or "").strip():
                        # the rest of its line follows (a blank one is a \r\r\n ending: nothing was cut)
                        fields = CutAtCarriageReturn(fields)
                    yield start, fields
                start = reader.line_num + 1

    return header, rows()


QUOTE_RULE = (
    'a field that starts with a quote must end with it: write a quote inside a field as "" and quote the field whole '
    '(`"Heroes" (Live)` as `"""Heroes"" (Live)"`); a file without CSV quoting (plain TSV) is read with -o quoting=none'
)


class _LastLine:
    """The lines of a text file, remembering the last one read: the csv reader keeps no copy of a line it refused."""

    def __init__(self, handle: TextIO):
        self.handle = handle
        self.last = ""
        self._ahead: list[str] = []  # a line :meth:`peek` read, not yet given to the reader

    def __iter__(self) -> _LastLine:
        return self

    def __next__(self) -> str:
        line = self._ahead.pop() if self._ahead else next(self.handle)
        # a byte order mark at a line's start: a file joined on (cat a.csv b.csv), read before the csv module sees
        # the line, so that a quoted first field is read as quoted; it made "\ufeffu1" a user of its own (review s41)
        self.last = line[1:] if line.startswith("\ufeff") else line
        return self.last

    def peek(self) -> str | None:
        """The next line, without taking it (None at the end)."""
        if not self._ahead:
            try:
                self._ahead.append(next(self.handle))
            except StopIteration:
                return None
        return self._ahead[0]


class CutAtCarriageReturn(list):
    """A row that ended at a lone carriage return in a file whose lines end with a line feed: the rest of its line
    is read as the next row; never kept."""


class BadQuote(list):
    """A row the strict csv reader refused for text after a closing quote, as fields read leniently (the quotes
    dropped): its id, for the message of its interactions; never kept."""


def _undecodable(path: Path, encoding: str, exc: UnicodeError) -> BadInputError:
    """The error for bytes a codec without an escape (utf-16, utf-32) cannot decode. The text layer decodes ahead
    of the csv reader, so the line is found again from the file's bytes (an error path only). utf-16 without a
    byte order mark raises a plain ``UnicodeError`` at the file's start ("UTF-16 stream does not start with BOM",
    naming no file): most often a file in another encoding, as ``-o encoding`` applies to both files."""
    if not isinstance(exc, UnicodeDecodeError):
        return BadInputError(
            f"{path}:1: not {encoding} text ({exc}); is this file in another encoding? -o encoding=... applies to "
            "both files of the folder"
        )
    raw = path.read_bytes()
    try:
        raw.decode(encoding)
        line = "?"
    except UnicodeDecodeError as again:
        line = str(raw[: again.start].decode(encoding, errors="replace").count("\n") + 1)
    return BadInputError(
        f"{path}:{line}: bytes that are not valid {encoding} ({exc.reason}); the rest of the file cannot be read "
        "(--skip-bad cannot skip them in this encoding): fix the file or pass the right -o encoding=..."
    )


def _check_span(
    path: Path,
    start: int,
    end: int,
    fields: list[str],
    width: int,
    delimiter: str,
    key: int,
    shapes: set[str],
    lengths: set[int],
) -> None:
    """A row spanning several physical lines is a quoted field with line breaks, which CSV allows; but when
    its field count is wrong, or a line inside the field would be a row of its own, a quote was left open and
    swallowed the rows after it. That is refused for the whole file (``--skip-bad`` cannot skip it): the
    row count would no longer match the file's lines.

    A line inside the field "would be a row" when it holds enough delimiters for a row and the value in the id
    column's place (``key``) could be an id: it has the shape of an id seen in the file (``shapes``, this row's own
    included: ``i3`` beside ``i2``), or it holds a digit and no space and has the length of an id seen
    (``0767915909`` beside ``B00000I1BJ``). A title's second line such as "Deluxe, Remastered" or "1978,
    Remastered" beside ``B000001`` is not. When the multi-line field is the id column itself,
    any line holding enough delimiters is a row."""
    if end == start:
        return
    inner = [line for field in fields for line in field.split("\n")[1:]]
    own = {_shape(fields[key])} if len(fields) > key and "\n" not in fields[key] else set()
    known = shapes | own
    sizes = lengths | ({len(fields[key].strip())} if own else set())

    def row_like(line: str) -> bool:
        parts = line.split(delimiter)
        if len(parts) < width or not own:
            return len(parts) >= width  # (the id column is the multi-line field: no id to compare with)
        value = parts[key].strip()
        digits = any(c.isdigit() for c in value) and not any(c.isspace() for c in value)
        return _shape(value) in known or (digits and len(value) in sizes)

    if len(fields) == width and not any(row_like(line) for line in inner if line.strip()):
        return
    raise BadInputError(
        f"{path}:{start}: a quote opened on this line runs on to line {end} (closed there, or never: the file's "
        f"end), so {end - start} following line(s) were read as part of one field; close the quote (a field may "
        f"span lines only inside matching quotes), or, if the quotes are right (a field with a line break that "
        f"looks like a row), pass -o multiline=true"
    )


def _shape(value: str) -> str:
    """A value's shape: each run of digits ``9``, each run of letters ``a``, anything else itself (``i42`` and
    ``i7`` are both ``a9``; ``Deluxe`` is ``a``)."""
    return re.sub(r"[^\W\d_]+", "a", re.sub(r"\d+", "9", value.strip()))
