"""What a cohort file is, judged by its name and its first bytes, and what to do when it cannot be read.

Clinics export cohorts from spreadsheets and laboratory systems: CSV with commas, semicolons
or tabs, the same compressed, Excel workbooks, sometimes UTF-16 "Unicode text" or an old
``.xls``. A file whose content does not fit its name, or whose format autorisk does not read,
gets one message that says what the file looks like and what to do with it, instead of a
parser's complaint about its first bytes.
"""

from __future__ import annotations

import codecs
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

# Name endings autorisk reads, longest first so that ``.csv.gz`` wins over ``.gz``.
INPUT_EXTENSIONS = {
    ".csv.gz": ("csv", "gzip"),
    ".tsv.gz": ("tsv", "gzip"),
    ".csv": ("csv", None),
    ".tsv": ("tsv", None),
    ".xlsx": ("xlsx", None),
    ".parquet": ("parquet", None),
}
OUTPUT_EXTENSIONS = (".csv", ".parquet")
ACCEPTED = ".csv, .tsv, .csv.gz, .tsv.gz, .xlsx or .parquet"

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),  # an empty zip archive
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole2"),  # Excel 97-2003 and other old Office files
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"PAR1", "parquet"),
    (b"\xff\xfe", "utf16"),
    (b"\xfe\xff", "utf16"),
)
_ODS_MIMETYPE = b"application/vnd.oasis.opendocument.spreadsheet"


@dataclass(frozen=True)
class InputKind:
    """How an input file is to be read.

    Attributes
    ----------
    format : {"csv", "tsv", "xlsx", "parquet"}
        ``csv`` is delimited text whose separator is detected (comma, semicolon or tab).
    compression : {"gzip"} or None
    """

    format: str
    compression: str | None = None


def _ending(path: Path) -> str:
    name = path.name.lower()
    return next((e for e in INPUT_EXTENSIONS if name.endswith(e)), path.suffix.lower())


def input_kind(path: Path) -> InputKind | None:
    """The kind of input its name promises, or None for a name autorisk does not read."""
    found = INPUT_EXTENSIONS.get(_ending(Path(path)))
    return InputKind(*found) if found else None


def looks_like(head: bytes) -> str:
    """What the first bytes of a file are: a compression or archive format, a spreadsheet, UTF-16, or text.

    Parameters
    ----------
    head : bytes
        The file's first bytes (a few KiB are plenty).

    Returns
    -------
    str
        ``empty``, ``gzip``, ``zip``, ``ole2``, ``bzip2``, ``xz``, ``zstd``, ``7z``, ``parquet``,
        ``utf16``, ``binary`` (NUL bytes) or ``text``. Zip archives are told apart by :func:`zip_kind`.
    """
    if not head:
        return "empty"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    sample = head[:4096]
    if b"\x00" in sample:
        # UTF-16 without a byte-order mark: every other byte of ASCII text is NUL.
        even, odd = sample[0::2], sample[1::2]
        if odd.count(0) > len(odd) // 2 or even.count(0) > len(even) // 2:
            return "utf16"
        # A few NULs in text are a fault of the records that hold them, rejected one by one.
        if sample.count(0) > max(len(sample) // 100, 8) or not _mostly_utf8(sample):
            return "binary"
    return "text"


def _mostly_utf8(sample: bytes) -> bool:
    """Whether all but a few bytes of ``sample`` are UTF-8 (records with the others are rejected alone)."""
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(sample, final=False)
    return text.count("\ufffd") * 20 <= len(sample)


# Control characters no value holds (C0 but tab, line feed and carriage return, DEL, C1): a NUL or an
# escape sequence in a record is a broken export, and would be written on into the outputs raw.
CONTROL_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_C0_AND_DEL = bytes(b in (*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F) for b in range(256))
_C1_UTF8 = re.compile(b"\xc2[\x80-\x9f]")


def has_control_bytes(data: bytes) -> bool:
    """Whether UTF-8 ``data`` holds a control character (:data:`CONTROL_CHARACTER`), at C speed:
    a translation to flags and one search (the regular expression cost ten times as much)."""
    return b"\x01" in data.translate(_C0_AND_DEL) or (b"\xc2" in data and _C1_UTF8.search(data) is not None)


def control_character(fields, names) -> str | None:
    """The reason to reject a record one of whose ``fields`` (text) holds a control character, or None."""
    for value, name in zip(fields, names):
        found = CONTROL_CHARACTER.search(value) if isinstance(value, str) else None
        if found:
            return f"{name}: holds the control character U+{ord(found.group()):04X}; a value must be plain text"
    return None


def zip_kind(path: Path) -> str:
    """``xlsx``, ``ods`` or ``zip`` for a zip archive (an Office file is a zip of XML parts)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "mimetype" in names and archive.read("mimetype").strip() == _ODS_MIMETYPE:
                return "ods"
    except (zipfile.BadZipFile, OSError):
        return "zip"
    return "xlsx" if any(n.startswith("xl/") for n in names) else "zip"


def file_content(path: Path) -> str:
    """What ``path`` holds, by its first bytes (see :func:`looks_like`; zip archives resolved)."""
    with open(path, "rb") as handle:
        head = handle.read(8192)
    kind = looks_like(head)
    return zip_kind(path) if kind == "zip" else kind


_ADVICE = {
    "gzip": "is gzip-compressed: name it .csv.gz or .tsv.gz, which autorisk reads, or decompress it (gunzip)",
    "zip": "is a zip archive: extract it (unzip) and score the file inside",
    "xlsx": "is an Excel workbook: name it .xlsx (autorisk reads its first sheet, or the one named by --sheet)",
    # Old Office files and password-protected new ones are both OLE2 compound files.
    "ole2": "is an Excel 97-2003 workbook (.xls), a password-protected workbook or another old Office file, "
            "which autorisk does not read: open it in Excel and save it, without a password, as .xlsx or "
            "as 'CSV UTF-8'",
    "empty": "is an empty file: expected a header line with column names, then one record per patient",
    "ods": "is an OpenDocument spreadsheet, which autorisk does not read: save it as .xlsx or as CSV (UTF-8)",
    "bzip2": "is compressed with bzip2, which autorisk does not read: decompress it (bunzip2), "
             "or compress it with gzip as .csv.gz",
    "xz": "is compressed with xz, which autorisk does not read: decompress it (unxz), "
          "or compress it with gzip as .csv.gz",
    "zstd": "is compressed with zstd, which autorisk does not read: decompress it (unzstd), "
            "or compress it with gzip as .csv.gz",
    "7z": "is a 7-Zip archive, which autorisk does not read: extract it and score the file inside",
    "parquet": "is a Parquet file: name it .parquet",
    "utf16": "is UTF-16 text (Excel's 'Unicode Text' export), which autorisk does not read: save it from "
             "Excel as 'CSV UTF-8', or convert it: iconv -f UTF-16 -t UTF-8 IN > OUT.csv",
    "binary": "is not text (it holds NUL bytes): export the cohort as CSV (UTF-8), .xlsx or Parquet",
}
# What each kind of input must hold.
_EXPECTED = {"csv": "text", "tsv": "text", "xlsx": "xlsx", "parquet": "parquet"}


def advice(path: Path, content: str) -> str:
    """One message for a file autorisk will not read: what it looks like and what to do."""
    if content == "text":
        return (f"{path}: unsupported extension {Path(path).suffix!r}; autorisk reads {ACCEPTED} "
                "(name comma-, semicolon- or tab-separated text .csv, tab-separated text .tsv)")
    return f"{path} {_ADVICE[content]}"


def mismatch(path: Path, kind: InputKind | None, content: str) -> str | None:
    """The message for a file whose content does not fit its name (or whose name autorisk does not read).

    Parameters
    ----------
    path : Path
    kind : InputKind or None
        What the name promises (:func:`input_kind`).
    content : str
        What the file holds (:func:`file_content`); for a gzip file, what its decompressed
        start holds.

    Returns
    -------
    str or None
        None when the file is what its name says.
    """
    if kind is None:
        return advice(path, content)
    if content == _EXPECTED[kind.format]:
        return None
    if kind.format == "xlsx" and content == "text":
        return f"{path} is text, not an Excel workbook: name it .csv (or .tsv for tab-separated text)"
    if kind.format == "parquet" and content == "text":
        return f"{path} is text, not a Parquet file: name it .csv (or .tsv for tab-separated text)"
    return advice(path, content)
