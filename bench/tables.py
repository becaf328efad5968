"""A small table that prints as aligned text (stdout) or as Markdown (RESULTS.md)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    title: str = ""
    note: str = ""

    def add(self, *cells: object) -> None:
        self.rows.append(["-" if c is None else str(c) for c in cells])

    def text(self) -> str:
        widths = [
            max(len(h), *(len(r[i]) for r in self.rows)) if self.rows else len(h)
            for i, h in enumerate(self.headers)
        ]
        lines = [f"== {self.title}"] if self.title else []
        lines.append("  ".join(h.ljust(w) for h, w in zip(self.headers, widths, strict=True)))
        lines.append("  ".join("-" * w for w in widths))
        lines += [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in self.rows
        ]
        return "\n".join([*lines, self.note] if self.note else lines)

    def markdown(self, level: int = 3) -> str:
        lines = [f"{'#' * level} {self.title}", ""] if self.title else []
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join("---" for _ in self.headers) + "|")
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows]
        return "\n".join([*lines, "", self.note] if self.note else lines)


def ms(value: float | None) -> str:
    """Milliseconds (or any figure) with three significant digits, at most two decimals."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x" if value < 100 else f"{value:.0f}x"


def count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def recall(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def p50_p95(latency: dict[str, float] | None) -> str:
    """'p50 / p95' of one case, in ms."""
    return "-" if not latency else f"{ms(latency['p50'])} / {ms(latency['p95'])}"
