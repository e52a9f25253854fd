"""--classes of `prepare folder`: class names as 'a,b,c', a file with one name per line, a CSV of mask values and
names (Roboflow's `_classes.csv`), or nnU-Net's dataset.json; the latter two also say which mask value each class
has (read_class_table's remap)."""

from __future__ import annotations

import re
from pathlib import Path

from segcli.errors import ConfigError, DataError
from segcli.inference.io import read_lines

ID_COLUMNS = ("pixel value", "pixel", "value", "id", "class id", "label id", "index", "idx")  # header words of a
NAME_COLUMNS = ("class", "name", "class name", "label", "label name", "classname")  # CSV's id and name columns


CLASS_FILE_SUFFIXES = (".txt", ".csv", ".json", ".names", ".tsv", ".lst")  # a --classes value ending so names a file


def read_class_table(spec: str | None) -> tuple[list[str] | None, dict[int, int], bool]:
    """--classes: the class names, and {raw mask value: class id} where the file numbers the classes otherwise than
    0..N-1 in line order. 'a,b,c' and one name per line name ids 0, 1, 2, … A CSV whose header names an id column and
    a name column (Roboflow's `_classes.csv`: 'Pixel Value, Class') and nnU-Net's dataset.json ("labels": {"background":
    0, "tumor": 1}) name the values their masks hold: the classes are numbered 0..N-1 in value order, and a class
    named ignore, void, unlabelled or unlabeled is the 'not labelled' value (mapped to -1), and a value the file does
    not name that would read as a class id (2 between the file's 1 and 3) is no class (mapped to -2). The third
    value says whether the file named the mask values (a CSV with an id column, a dataset.json) rather than ids
    0..N-1 in line order."""
    if spec is None:
        return None, {}, False
    path = Path(spec)
    try:
        is_file, exists = path.is_file(), path.exists()
    except OSError:  # 'a,b,c,…' too long for a file name (150 classes: ENAMETOOLONG was exit 3) names no file
        is_file = exists = False
    if is_file and path.suffix.lower() == ".json":
        return *_numbered(_json_labels(path), spec), True
    if not exists and "," not in str(spec) and ("/" in str(spec) or path.suffix.lower() in CLASS_FILE_SUFFIXES):
        # a missing file read as one class name: lint then blamed the masks ('class ids 0..0')
        raise DataError(f"{spec}: class list file not found; check --classes (or give the names as 'a,b,c')")
    lines = read_lines(path, "class list") if is_file else None
    if lines is not None:
        found = _csv_rows(lines, spec)
        if found is not None:
            rows, has_ids = found
            return *_numbered(rows, spec), has_ids
    names = _listed_names(lines, spec) if lines is not None else str(spec).split(",")
    if lines is None and any(not n.strip() for n in names[:-1]):  # 'a,,c': c would silently become id 1
        raise ConfigError(f"--classes {spec!r}: class {[n.strip() for n in names].index('')} has no name; name every "
                          "class (ids count from 0 in the list's order), e.g. 'background,road,car'")
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise ConfigError(f"--classes {spec!r} names no classes; give 'a,b,c' or a file with one name per line")
    if len(set(names)) != len(names):
        raise ConfigError(f"--classes {spec!r}: a class name is repeated")
    return names, {}, False


_ID_AND_NAME = re.compile(r"^-?\d+\s*[,;\t]\s*\S")  # '0,background': a CSV row, not a name
_ID_SPACE_NAME = re.compile(r"^\d+\s+\S")  # '0 background': a label map's line
_HEADER_WORDS = (*NAME_COLUMNS, "names", "classes", "labels", "class names", "label names")


def _listed_names(lines: list[str], spec) -> list[str]:
    """The names of a file with one class name a line; blank lines and lines starting with '#' are skipped. Files
    whose lines are not names are refused, as read as names they would shift every class id by one: every line an
    id and a name ('0,background', '0 background'), such lines under a header segcli does not know ('id,category',
    'id name'), or a column header as the first line ('name'). One name that starts so among others
    ('1,2-dichloroethane') is a name."""
    kept = [(number, line.strip()) for number, line in enumerate(lines, 1)
            if line.strip() and not line.strip().startswith("#")]
    texts = [text for _, text in kept]

    def rows(part: list[str]) -> bool:
        return bool(part) and all(_ID_AND_NAME.match(t) or _ID_SPACE_NAME.match(t) for t in part)

    if len(texts) > 1 and rows(texts):
        raise ConfigError(f"--classes {spec}: every line is an id and a name ({texts[0]!r}), not a class name; write "
                          "them as 'id,name' rows under an 'id,name' header line (or give one class name a line)")
    if len(texts) > 2 and rows(texts[1:]):
        raise ConfigError(f"--classes {spec}: its first line {texts[0]!r} heads lines of an id and a name, but names "
                          f"no column of class names that segcli knows ({', '.join(NAME_COLUMNS)}); make the file "
                          "a CSV: an 'id,name' header line above 'id,name' rows")
    if len(texts) > 1 and texts[0].lower().replace("_", " ") in _HEADER_WORDS:
        raise ConfigError(f"--classes {spec}: line {kept[0][0]} {texts[0]!r} reads as a column header, not a class "
                          "name; remove it if it is one, or, if it is a class, save the list as a .csv whose first "
                          "line is the header 'name'")
    return texts


def _header(line: str, spec) -> tuple[str, int | None, int, list[str]] | None:
    """(delimiter, id column or None, name column, the header's fields) of a class CSV's first line: fields separated
    by ',', ';' (Excel's CSV where the decimal mark is a comma) or a tab, or a .csv file's one column (pandas'
    `to_csv` of a list of names: 'name'); None when the line names no name column (a list of names)."""
    import csv

    delimiters = [d for d in ",;\t" if d in line] or ([","] if Path(str(spec)).suffix.lower() == ".csv" else [])
    for delimiter in delimiters:
        header = [field.strip().lower().replace("_", " ") for field in next(csv.reader([line], delimiter=delimiter))]
        at = next((i for i, field in enumerate(header) if field in ID_COLUMNS), None)
        name_at = next((i for i, field in enumerate(header) if field in NAME_COLUMNS and i != at), None)
        if name_at is not None:
            return delimiter, at, name_at, header
    return None


def _csv_rows(lines: list[str], spec) -> tuple[list[tuple[int, str]], bool] | None:
    """(value, name) rows of a class CSV whose first line is a header naming a name column and maybe an id column
    (without one, values 0, 1, … in line order), and whether it has the id column; None when the file is not one (a
    list of names)."""
    import csv

    text = [line for line in lines if line.strip()]
    found = _header(text[0], spec) if text else None
    if found is None:
        return None
    delimiter, at, name_at, header = found
    rows = []
    for number, fields in enumerate(csv.reader(text[1:], delimiter=delimiter), 2):  # without an id column (CamVid's
        try:  # name,r,g,b): line order
            rows.append((number - 2 if at is None else int(fields[at].strip()), fields[name_at].strip()))
        except (IndexError, ValueError):
            what = f"a '{header[name_at]}'" if at is None else f"a whole-number '{header[at]}' and a '{header[name_at]}'"
            raise ConfigError(f"--classes {spec}: line {number} {delimiter.join(fields)!r} lacks {what}; give one "
                              "class a line, e.g. 0, background") from None
    return rows, at is not None


def _json_labels(path: Path) -> list[tuple[int, str]]:
    """(value, name) pairs of a dataset.json's "labels": nnU-Net v2's {name: value} or v1's {"value": name}."""
    import json

    try:
        labels = json.loads("\n".join(read_lines(path, "dataset.json"))).get("labels")
    except (json.JSONDecodeError, AttributeError) as err:
        raise ConfigError(f"--classes {path}: not a dataset.json with a \"labels\" mapping ({err}); give 'a,b,c' or a "
                          "file with one name per line") from None
    if isinstance(labels, list) and labels and all(isinstance(label, dict) and "color" in label for label in labels):
        raise ConfigError(f"--classes {path}: a list of labels with colours (Mapillary Vistas' config.json), which "
                          f"names colour masks: give it as --palette {path}")
    if not isinstance(labels, dict) or not labels:
        raise ConfigError(f"--classes {path}: no \"labels\" mapping of class names to mask values (nnU-Net's "
                          "\"labels\": {\"background\": 0, \"tumor\": 1})")
    rows = []
    for key, value in labels.items():
        if isinstance(value, str) and str(key).strip().lstrip("-").isdigit():  # v1: {"0": "background"}
            key, value = value, key
        if isinstance(value, (list, tuple)):
            raise ConfigError(f"--classes {path}: label '{key}' is a region of values {value} (nnU-Net's region-based "
                              "training); segcli needs one value per class: give --classes a,b,c and --remap")
        try:
            if isinstance(value, bool) or int(value) != float(value):  # true, 1.5: int() would read them as 1
                raise ValueError
            rows.append((int(value), str(key)))
        except (TypeError, ValueError):
            raise ConfigError(f"--classes {path}: label '{key}' has the value {value!r}, not a whole number") from None
    return rows


def _numbered(rows: list[tuple[int, str]], spec) -> tuple[list[str], dict[int, int]]:
    """Names in value order and the remap that numbers them 0..N-1 (an ignore-named value → -1, a value below N that
    the rows do not name → -2)."""
    from segcli.data.palette import IGNORE_NAMES

    rows = [(value, name.strip()) for value, name in rows]
    values = [value for value, _ in rows]
    names = [name for _, name in sorted(rows) if name.lower() not in IGNORE_NAMES]
    if not names:
        raise ConfigError(f"--classes {spec}: names no classes")
    if len(set(values)) != len(values) or len(set(names)) != len(names):
        raise ConfigError(f"--classes {spec}: a mask value or a class name is repeated; give each class one line")
    if min(values) < 0 or max(values) > 65535:
        raise ConfigError(f"--classes {spec}: mask values must lie in 0..65535")
    classes = sorted(value for value, name in rows if name.lower() not in IGNORE_NAMES)
    remap = {value: i for i, value in enumerate(classes) if value != i}
    remap.update({value: -1 for value, name in rows if name.lower() in IGNORE_NAMES})
    remap.update({value: -2 for value in range(len(classes)) if value not in values})  # else read as that id's class
    return names, remap
