"""Tables of the sealed history (revision 0007): the daily seal advance, a late row, and
the triggers' cost on the batch path (figures from :mod:`sealing`)."""

from __future__ import annotations

from typing import Any

from .tables import Table


def sealing_tables(level: dict[str, Any]) -> list[Table]:
    s = level.get("sealing")
    if not s:
        return []
    n = level["rows"]
    advance = s["seal_advance"]
    runs = advance["runs"]
    t = Table(["part", "rows", f"median of {len(runs)} s", "each run s"])
    t.title = f"{n:,} rows: the refresh that moves the seal by a day (once a day)"
    for view, median in advance["median_seconds"].items():
        t.add(
            view,
            f"{runs[-1]['rows'][view]:,}",
            f"{median:.2f}",
            ", ".join(f"{r['seconds'][view]:.2f}" for r in runs),
        )
    t.add(
        "total (client wall time)",
        "",
        f"{advance['median_wall_seconds']:.2f}",
        ", ".join(f"{r['wall_seconds']:.2f}" for r in runs),
    )
    t.note = (
        "Staged as at the first refresh after midnight UTC: the history parts rebuilt a day "
        "short of the seal (untimed), then one orb_learning_refresh_views() (timed) that "
        "rebuilds them up to the new seal, the recent parts and the rollups' parts."
    )
    late = advance["late_row"]
    t_late = Table(["what", "value"])
    t_late.title = f"{n:,} rows: one row stamped 30 days back, written after the refresh"
    t_late.add("history parts marked dirty by the trigger", str(late["marked"]))
    t_late.add("marks left after the next refresh", str(late["left_after_refresh"]))
    t_late.add("that refresh, client wall time s", f"{late['wall_seconds']:.2f}")
    for view, seconds in late["seconds"].items():
        t_late.add(f"  {view} s", f"{seconds:.2f}")
    cost = s["trigger_cost"]
    t_cost = Table(["batch of store_executions", "median ms", "each ms"])
    t_cost.title = (
        f"{n:,} rows: the history triggers on the batch path "
        f"({cost['batch']:,} rows a batch, {cost['batches']} batches per case, interleaved)"
    )
    for case, median in cost["median_ms"].items():
        each = ", ".join(f"{x * 1000:.0f}" for x in cost["seconds"][case])
        t_cost.add(case, f"{median:.0f}", each)
    t_cost.note = (
        "no triggers: the INSERT and UPDATE statement triggers disabled for that batch "
        "(ALTER TABLE ... DISABLE TRIGGER). Rows 10 days back are before the seal: the "
        "trigger also marks the history dirty (one upsert per statement)."
    )
    return [t, t_late, t_cost]
