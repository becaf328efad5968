"""Embeddings stored in half precision: the ``embedding`` column becomes ``halfvec(384)``
and the HNSW index is built on the column itself, with ef_construction 128.

Why (bench/SEARCH.md): a full-precision row took 2,048 heap bytes (four rows per 8 kB page,
the 1,544-byte vector being most of each row); in half precision the vector takes 776 bytes
and a page holds seven rows, so the table, the pages a search reads and the bytes a bulk
load writes are all about halved. The HNSW index was already half precision (revision
0006), so the graph and its recall do not change. Half precision keeps 11 significant bits:
a stored unit vector's cosine to the float32 original is above 0.99999, far inside the
0.9992 that the default quantised model already differs from the reference model by, and
similarities are computed on the stored vectors, so the exact path and the re-ranking of
HNSW candidates agree with each other.

ef_construction 128 instead of pgvector's 64: at a million clustered rows the graph built
with 64 held recall@10 at 0.94 however wide the search; with 128 it recalls 0.97-0.98 at the
library's ef_search, for a build about 1.85 times as long and slower inserts.

The upgrade rewrites the table (an ACCESS EXCLUSIVE lock for the duration: about a minute
per million rows, plus the index build): run it in a maintenance window. The downgrade
restores float32 columns from the half-precision values (the dropped bits do not come back).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "idx_executions_embedding_hnsw"
WITH = "WITH (m = 16, ef_construction = 128)"
WITH_0006 = "WITH (m = 16, ef_construction = 64)"
COMMENT = "COMMENT ON COLUMN executions.embedding IS {}"
HALF_COMMENT = (
    "'all-MiniLM-L6-v2 embedding of task_description, half precision (unit length, cosine)'"
)
FULL_COMMENT = "'all-MiniLM-L6-v2 embedding of task_description (unit length, cosine)'"
# The bulk path's figure (orb_learning.bulk), which built a million rows' graph in 487 s;
# with revision 0006's 1GB this upgrade's build took over 14 minutes at 1M rows (on 2 cores
# shared with a test run): pgvector builds more slowly once the graph outgrows the memory.
# Allocated only as the graph grows; LOCAL ends with this revision.
MEMORY = "SET LOCAL maintenance_work_mem = '2GB'"


def upgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {INDEX}")
    op.execute(MEMORY)
    op.execute(
        "ALTER TABLE executions ALTER COLUMN embedding TYPE halfvec(384) "
        "USING embedding::halfvec(384)"
    )
    op.execute(COMMENT.format(HALF_COMMENT))
    op.execute(
        f"CREATE INDEX {INDEX} ON executions USING hnsw (embedding halfvec_cosine_ops) {WITH}"
    )


def downgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {INDEX}")
    op.execute(MEMORY)
    op.execute(
        "ALTER TABLE executions ALTER COLUMN embedding TYPE vector(384) "
        "USING embedding::vector(384)"
    )
    op.execute(COMMENT.format(FULL_COMMENT))
    op.execute(
        f"CREATE INDEX {INDEX} ON executions USING hnsw "
        f"((embedding::halfvec(384)) halfvec_cosine_ops) {WITH_0006}"
    )
