"""--classes FILE written by hand or by another tool: a comment line, a CSV of ids and names without a header segcli
knows, a label map of 'id name' lines, or a column header in a .txt were read as class names: exit 0, every class id
shifted by one (the masks' 0 named '# classes …', their 1 named 'background', …)."""

from __future__ import annotations

import pytest

from segcli.data.class_table import read_class_table
from segcli.errors import ConfigError


def _read(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return read_class_table(str(path))


def test_comment_and_blank_lines_of_a_name_list_are_skipped(tmp_path):
    names, remap, named_values = _read(tmp_path, "classes.txt", "# classes of my dataset\nbackground\n\nroad\n"
                                                                "# the last one\nbuilding\n")
    assert (names, remap, named_values) == (["background", "road", "building"], {}, False)


@pytest.mark.parametrize("name, text, words", [
    ("hdr.csv", "id,category\n0,background\n1,road\n", "its first line 'id,category' heads lines of an id and a name"),
    ("semi.csv", "Value;Object\n0;background\n1;road\n", "its first line 'Value;Object' heads lines of an id and a"),
    ("idname.txt", "id name\n0 background\n1 road\n2 car\n", "its first line 'id name' heads lines of an id and a"),
    ("nohdr.csv", "0,background\n1,road\n2,building\n", "every line is an id and a name ('0,background')"),
    ("tabs.txt", "0\tbackground\n1\troad\n", "every line is an id and a name ('0\\tbackground')"),
    ("map.txt", "0 background\n1 road\n2 building\n", "every line is an id and a name ('0 background')"),
    ("names.txt", "name\nbackground\nroad\n", "line 1 'name' reads as a column header"),
    ("classes.txt", "classes\nbackground\nroad\n", "line 1 'classes' reads as a column header"),
])
def test_lines_that_are_not_class_names_are_refused(tmp_path, name, text, words):
    with pytest.raises(ConfigError) as caught:
        _read(tmp_path, name, text)
    assert words in str(caught.value) and str(tmp_path / name) in str(caught.value)


@pytest.mark.parametrize("text, names", [("3 wheeler\nbackground\n", ["3 wheeler", "background"]),
                                         ("lane #2\nroad\n", ["lane #2", "road"]),
                                         # one name that starts with digits and a comma, among plain names
                                         ("background\n1,2-dichloroethane\nwater\n",
                                          ["background", "1,2-dichloroethane", "water"]),
                                         ("id,name\n0,background\n1,road\n", ["background", "road"])])
def test_names_with_digits_or_hashes_inside_still_read(tmp_path, text, names):
    assert _read(tmp_path, "classes.csv" if text.startswith("id,") else "classes.txt", text)[0] == names


def test_a_first_class_named_like_a_header_reads_from_a_csv_with_a_name_header(tmp_path):
    """The refusal of 'label' as a .txt's first line says how to keep such a class: a .csv under a 'name' header."""
    with pytest.raises(ConfigError, match="save the list as a .csv whose first line is the header 'name'"):
        _read(tmp_path, "classes.txt", "label\nbackground\nbox\n")
    assert _read(tmp_path, "classes.csv", "name\nlabel\nbackground\nbox\n")[0] == ["label", "background", "box"]
