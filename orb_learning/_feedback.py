"""User feedback: stored beside the execution it rates, the latest kept on the execution.

Several feedback rows per execution are allowed. The latest (by its timestamp) sets
``executions.user_rating`` to its rating and ``executions.user_accepted``: true for
``thumbs_up``/``accept(ed)``/``approve(d)``, false for ``thumbs_down``/``reject(ed)``,
otherwise ``rating >= 3``. Storing the same feedback_id again changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._store import write_transaction
from .errors import UnknownExecutionError
from .models import FeedbackRecord

if TYPE_CHECKING:
    import asyncpg

POSITIVE = ("thumbs_up", "accept", "accepted", "approve", "approved")
NEGATIVE = ("thumbs_down", "reject", "rejected")

INSERT_FEEDBACK = """\
INSERT INTO feedback (feedback_id, task_id, "timestamp", feedback_type, rating, comment, user_id)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (feedback_id) DO NOTHING"""

UPDATE_EXECUTION = """\
UPDATE executions e
SET user_rating = latest.rating,
    user_accepted = CASE
        WHEN lower(latest.feedback_type) = ANY($2::text[]) THEN true
        WHEN lower(latest.feedback_type) = ANY($3::text[]) THEN false
        ELSE latest.rating >= 3
    END
FROM (
    SELECT rating, feedback_type FROM feedback WHERE task_id = $1
    ORDER BY "timestamp" DESC, recorded_at DESC LIMIT 1
) AS latest
WHERE e.task_id = $1"""


async def store_feedback(connection: asyncpg.Connection, feedback: FeedbackRecord) -> None:
    """Insert the feedback and bring the execution's user_rating/user_accepted up to date."""
    import asyncpg

    async with write_transaction(connection):
        try:
            await connection.execute(
                INSERT_FEEDBACK,
                feedback.feedback_id,
                feedback.task_id,
                feedback.timestamp,
                feedback.feedback_type,
                feedback.rating,
                feedback.comment,
                feedback.user_id,
            )
        except asyncpg.ForeignKeyViolationError:
            raise UnknownExecutionError(
                f"feedback {feedback.feedback_id} is for task {feedback.task_id}, "
                "which is not stored: store the execution first"
            ) from None
        await connection.execute(UPDATE_EXECUTION, feedback.task_id, POSITIVE, NEGATIVE)
