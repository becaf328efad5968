"""The views the head revision defines: what the refresh, the analytics, the roles and
``db validate`` work with (the versioned definitions are in :mod:`.views` and
:mod:`.sealed`; the migrations name their own versions)."""

from __future__ import annotations

from ._ddl import MaterializedView
from ._sealed import SEALED_PARTS, SEALED_ROLLUPS, SEALED_VIEWS, SealedView

CURRENT_VIEWS: tuple[MaterializedView, ...] = SEALED_PARTS
"""The materialized views as the head revision defines them (history and recent part of
each view, each rollup's after its source's)."""

PUBLIC_VIEWS: tuple[SealedView, ...] = SEALED_VIEWS
"""The plain views users read at head (same names and columns as the views before 0007)."""

PUBLIC_ROLLUPS: dict[str, SealedView] = SEALED_ROLLUPS
"""Each per-repo public view's rollup over all repos (a public view too)."""
