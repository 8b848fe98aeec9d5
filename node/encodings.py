"""Orthanc's names for character sets, and the DICOM Specific Character Set of each.

Orthanc's ``DefaultEncoding`` (``/tools/default-encoding``) names the character set
assumed for files that declare none, and the one C-FIND answers are written in.
"""

from __future__ import annotations

from pacsnode.node.errors import BadRequest

#: Orthanc's name -> the Specific Character Set (0008,0005) defined term
SPECIFIC_CHARACTER_SETS = {
    "Ascii": "ISO_IR 6",
    "Utf8": "ISO_IR 192",
    "Latin1": "ISO_IR 100",
    "Latin2": "ISO_IR 101",
    "Latin3": "ISO_IR 109",
    "Latin4": "ISO_IR 110",
    "Latin5": "ISO_IR 148",
    "Cyrillic": "ISO_IR 144",
    "Windows1251": "ISO_IR 144",  # no DICOM term of its own; Orthanc answers the same
    "Arabic": "ISO_IR 127",
    "Greek": "ISO_IR 126",
    "Hebrew": "ISO_IR 138",
    "Thai": "ISO_IR 166",
    "Japanese": "ISO_IR 13",
    "Chinese": "GB18030",
    "JapaneseKanji": "ISO 2022 IR 87",
    "Korean": "ISO 2022 IR 149",
    "SimplifiedChinese": "ISO 2022 IR 58",
}


def check_encoding(name: str) -> str:
    """The encoding's canonical name; BadRequest for one Orthanc does not know."""
    for known in SPECIFIC_CHARACTER_SETS:
        if known.lower() == name.strip().lower():
            return known
    allowed = ", ".join(SPECIFIC_CHARACTER_SETS)
    raise BadRequest(f"unknown encoding {name.strip()!r}; one of {allowed}")


#: the name under which a default encoding changed over REST is kept (``core.setting``)
DEFAULT_ENCODING_SETTING = "default_encoding"


def specific_character_set(name: str) -> str:
    """The Specific Character Set term of one of Orthanc's encoding names (UTF-8 for
    a name it does not know, which cannot come from a checked setting)."""
    return SPECIFIC_CHARACTER_SETS.get(name, "ISO_IR 192")
