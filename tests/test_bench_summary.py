"""bench/RESULTS.md quotes each part's headline as that part's report renders it."""

from __future__ import annotations

from pathlib import Path

from bench import summary

REPORT = """# Title

## Headline

| a | b |
|---|---|
| 1 | 2 |

### A subsection stays in

text

## Next section
not quoted
"""


def test_a_section_runs_to_the_next_heading_of_its_level() -> None:
    quoted = summary.section(REPORT, "## Headline")
    assert quoted is not None
    assert quoted.startswith("| a | b |") and "A subsection stays in" in quoted
    assert "not quoted" not in quoted
    assert summary.section(REPORT, "## Missing") is None


def test_the_page_quotes_every_part_and_says_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "ANALYTICS.md").write_text(REPORT)
    (tmp_path / "analytics.json").write_text('{"generated_at": "2026-01-01T00:00:00+00:00"}')
    summary.write(tmp_path)
    page = (tmp_path / "RESULTS.md").read_text()
    assert "| 1 | 2 |" in page and "run of 2026-01-01T00:00:00+00:00" in page
    for part in summary.PARTS:
        assert f"## {part.title}" in page
    assert page.count("(not measured yet:") == len(summary.PARTS) - 1


def test_the_committed_page_quotes_the_committed_reports() -> None:
    markdown, _ = summary.render()
    assert "(not measured yet:" not in markdown
    assert markdown == (summary.BENCH_DIR / "RESULTS.md").read_text()


def test_the_search_report_gives_the_machine_reference_next_to_the_searches() -> None:
    import json

    from bench import search_report
    from bench.timing import REFERENCE_SQL

    def report(path: Path) -> str:
        return search_report.markdown(json.loads(path.read_text()))

    measured = report(summary.BENCH_DIR / "search.json")
    headline = search_report.headline(json.loads((summary.BENCH_DIR / "search.json").read_text()))
    assert headline.headers[-1] == "reference p50 ms"
    assert all(row[-1] != "-" for row in headline.rows)  # every level timed it
    assert f"Machine reference in the same rounds ({REFERENCE_SQL})" in measured
    older = report(summary.BENCH_DIR / "history" / "search-564eba4" / "search.json")
    assert "Machine reference in the same rounds" not in older  # not measured then
    assert "| - |" in older  # the headline's reference column: a dash
