"""Pipeline files (cim/pipeline/model.py): an error names the field and the line of the entry it is about, not the
first line that happens to hold a key of the same name (``name`` is the pipeline's own on line 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cim.errors import InvalidInput
from cim.pipeline.model import load_pipeline

#: A pipeline whose second tileset is on lines 13–16; ``{name}`` … ``{extra}`` are filled in by each test.
PIPELINE = """\
name = "p"
tiles = "tiles/p"

[[places]]
name = "Lujiazui"
lon = 121.5
lat = 31.2

[[tilesets]]
name = "first"
path = "meshes/first"

[[tilesets]]
name = {name}
path = {path}
{extra}
"""


def _error(tmp_path: Path, *, name: str = '"second"', path: str = '"meshes/second"', extra: str = "") -> str:
    (tmp_path / "p.toml").write_text(PIPELINE.format(name=name, path=path, extra=extra), encoding="utf-8")
    with pytest.raises(InvalidInput) as raised:
        load_pipeline(tmp_path / "p.toml")
    return str(raised.value)


def test_a_bad_tileset_name_names_its_own_line_not_the_pipelines_name(tmp_path: Path) -> None:
    message = _error(tmp_path, name='"Lower Case Only"')
    assert "tilesets.1.name (line 14): String should match pattern" in message, message


def test_a_tileset_name_given_twice_names_the_second_entrys_line(tmp_path: Path) -> None:
    message = _error(tmp_path, name='"first"')
    assert "tilesets.1.name (line 14): the name first is given twice (first as tilesets.0.name)" in message, message


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"path": "3"}, "tilesets.1.path (line 15): Input should be a valid string"),
        ({"extra": 'url = "http://example.com/t.json"'}, "tilesets.1.url (line 16): Value error, host 'example.com'"),
        ({"extra": "matrix = [1, 0, 0]"}, "tilesets.1.matrix (line 16): Value error, matrix has 3 numbers"),
        ({"extra": "place = [31.2, 121.5, 0, 0]"}, "tilesets.1.place (line 16): Value error, place is lon, lat"),
        ({"extra": 'place = ["east", 31.2, 0]'}, "tilesets.1.place.tuple[float, float, float].0 (line 16): Input"),
        ({"extra": 'titel = "typo"'}, "tilesets.1.titel (line 16): unknown key (a typo?)"),
        ({"extra": 'title_zh = 3\ntitle = "x"'}, "tilesets.1.title_zh (line 16): Input should be a valid string"),
        # a rule between fields names the entry, at its [[tilesets]] header
        ({"extra": 'url = "http://127.0.0.1:9/t.json"'}, "tilesets.1 (line 13): Value error, give exactly one of"),
    ],
)
def test_every_tileset_field_names_its_line(tmp_path: Path, change: dict[str, str], where: str) -> None:
    message = _error(tmp_path, **change)
    assert where in message, message


def test_a_missing_name_names_its_entrys_header(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(PIPELINE.replace("name = {name}\n", "").format(path='"x"', extra=""))
    with pytest.raises(InvalidInput, match=r"tilesets\.1\.name \(line 13\): Field required"):
        load_pipeline(tmp_path / "p.toml")


def test_lines_count_entries_not_headers_in_strings_or_arrays(tmp_path: Path) -> None:
    text = (
        'name = "p"\n'
        'note = """\n[[tilesets]]\nname = "not an entry"\n"""\n'  # a multi-line string that looks like TOML
        "grid = [\n  [1, 2],\n  [3]\n]\n"  # a multi-line array whose last line looks like a header
        '[[tilesets]]\nname = "a"\npath = "x"\n'
        '[[tilesets]]\n"name" = "B"\npath = "y"\n'  # a quoted key
    )
    (tmp_path / "p.toml").write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInput) as raised:
        load_pipeline(tmp_path / "p.toml")
    message = str(raised.value)
    assert "tilesets.1.name (line 14): String should match" in message, message
    assert "note (line 2): unknown key" in message and "grid (line 6): unknown key" in message, message
