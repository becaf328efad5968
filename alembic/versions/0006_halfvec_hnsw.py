"""The HNSW index on half-precision vectors: half the size of the full-precision graph,
built faster, and the same recall once search re-ranks its candidates by the full-precision
column (measured in bench/SEARCH.md). The column itself stays full precision: similarities
are exact and an index of either precision can be rebuilt from it.

On a large table the build takes minutes (about 5 at 1M rows on 2 cores, with the memory
set below) and holds a lock that blocks writes: run it in a maintenance window. Search keeps
answering meanwhile only after the build (the old index is dropped in the same transaction).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "idx_executions_embedding_hnsw"
WITH = "WITH (m = 16, ef_construction = 64)"
HALFVEC = (
    f"CREATE INDEX {INDEX} ON executions USING hnsw "
    f"((embedding::halfvec(384)) halfvec_cosine_ops) {WITH}"
)
VECTOR = f"CREATE INDEX {INDEX} ON executions USING hnsw (embedding vector_cosine_ops) {WITH}"
# Enough for the graph of about a million rows to be built in memory (far faster than
# once it spills); allocated only as the graph grows. transaction_per_migration: LOCAL
# ends with this revision.
MEMORY = "SET LOCAL maintenance_work_mem = '1GB'"


def upgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {INDEX}")
    op.execute(MEMORY)
    op.execute(HALFVEC)


def downgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {INDEX}")
    op.execute(MEMORY)
    op.execute(VECTOR)
