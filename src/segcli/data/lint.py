"""Lint findings: every problem `prepare` finds, collected (never first-error-wins), summarised, saved.

A finding is (severity, kind, file, detail). Errors fail the run (exit 1) unless --keep-going
drops the pairs they concern; warnings fail it only with --strict. The report is written as
lint.json and summarised on stderr.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field

ERROR, WARNING = "error", "warning"

KINDS = {  # every kind the lint reports → what it means (data/README.md documents each)
    "unreadable": "image or mask cannot be read, is empty or truncated",
    "size_mismatch": "mask size differs from its image (after EXIF orientation)",
    "image_depth": "8-bit images beside deeper (16-bit, floating-point) ones, or integer beside floating-point ones: "
                   "the two kinds read differently",
    "no_data_value": "deeper images whose smallest or largest value fills many pixels apart from the rest: no-data",
    "out_of_range": "mask values that are neither class ids nor the ignore index",
    "binary_mask": "mask holds only 0 and 255 while 255 means ignore (or 16-bit 0 and 65535): foreground would be lost",
    "lossy_mask": "mask stored as JPEG, or its values blurred by JPEG once (a PNG converted from a JPEG)",
    "multi_page": "a multi-page TIFF or animated GIF image or mask: only its first page (frame) is read",
    "rgb_mask": "mask stored as RGB where class ids are expected",
    "mask_orientation": "mask with an EXIF orientation: masks are read as stored, images as shown",
    "mask_alpha": "mask with transparent pixels: alpha is not read, they take the class of their colour or value",
    "unknown_colour": "RGB mask colour that is not in the palette",
    "missing_mask": "image without a mask",
    "missing_image": "mask without an image",
    "duplicate_stem": "two files share a stem (the pair is ambiguous)",
    "split_entry": "a split list names a stem that has no pair",
    "split_overlap": "a pair is listed in more than one split",
    "unassigned": "a pair in no split list (left out)",
    "group_leak": "a --group key (video, patient) with pairs in more than one split",
    "empty_split": "a split without any pair",
    "class_missing": "a class with zero pixels in a split",
    "single_class": "the dataset has one class: a model has nothing to tell apart",
    "stale_card": "`prepare lint` of a prepared dataset: its masks hold other class counts than its card records",
}


@dataclass
class Finding:
    """One problem. file: the file concerned, or the split for split-level findings."""

    severity: str
    kind: str
    file: str
    detail: str
    split: str | None = None
    stem: str | None = None


def error(kind: str, file: str, detail: str, **where) -> Finding:
    return Finding(ERROR, kind, str(file), detail, **where)


def warning(kind: str, file: str, detail: str, **where) -> Finding:
    return Finding(WARNING, kind, str(file), detail, **where)


@dataclass
class LintReport:
    """All findings of one run, and what became of the pairs they concern."""

    dataset: str
    pairs: int = 0
    findings: list[Finding] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    strict: bool = False
    keep_going: bool = False

    def fails(self, finding: Finding) -> bool:
        return finding.severity == ERROR or self.strict

    @property
    def errors(self) -> int:
        return sum(f.severity == ERROR for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.severity == WARNING for f in self.findings)

    @property
    def passed(self) -> bool:
        """True when nothing that fails remains: pair-level failures dropped with --keep-going are forgiven."""
        blocking = [f for f in self.findings if self.fails(f)]
        if not self.keep_going:
            return not blocking
        return not any(f.stem is None for f in blocking)  # split-level failures cannot be dropped

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "passed": self.passed, "pairs": self.pairs, "errors": self.errors,
                "warnings": self.warnings, "strict": self.strict, "keep_going": self.keep_going,
                "dropped": self.dropped, "findings": [asdict(f) for f in self.findings]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def headline(self) -> str:
        dropped = f", {len(self.dropped)} pair(s) dropped" if self.dropped else ""
        return (f"lint: {self.errors} error(s), {self.warnings} warning(s) in {self.pairs} pair(s){dropped}"
                f"{' (--strict: warnings fail)' if self.strict and self.warnings else ''}")

    def print_summary(self, headline: bool = True) -> None:
        """A table per kind on stderr: severity, count, first file, its detail; then the headline."""
        import os

        from rich.markup import escape
        from rich.table import Table

        from segcli.console import stderr_console

        console = stderr_console()
        if self.findings:
            files = [f.file for f in self.findings if os.path.isabs(f.file)]
            base = os.path.commonpath(files) if len(files) > 1 else ""
            base = base if os.path.isdir(base) else os.path.dirname(base)
            shown = lambda path: os.path.relpath(path, base) if base and os.path.isabs(path) else path  # noqa: E731
            table = Table(title=f"lint: {escape(str(self.dataset))}", title_justify="left", expand=False,
                          caption=f"files relative to {escape(base)}" if base else None, caption_justify="left")
            for column in ("severity", "kind", "count", "first file", "detail"):
                table.add_column(column, overflow="fold", justify="right" if column == "count" else "left")
            counts = Counter((f.severity, f.kind) for f in self.findings)
            firsts: dict[tuple[str, str], Finding] = {}
            for f in self.findings:
                firsts.setdefault((f.severity, f.kind), f)
            for (severity, kind), first in sorted(firsts.items(), key=lambda kv: (kv[0][0] != ERROR, kv[0][1])):
                style = "red" if severity == ERROR else "yellow"
                table.add_row(f"[{style}]{severity}[/]", kind, str(counts[severity, kind]), escape(shown(first.file)),
                              escape(first.detail))
            console.print(table)
        if headline:
            console.print(self.headline(), highlight=False, markup=False)
