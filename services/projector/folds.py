"""How each event lands in the read models. Every write is guarded by the aggregate's sequence or
the execution's versionNumber, so replaying the log from offset 0 into empty tables gives the same rows."""

from __future__ import annotations

from typing import Any, Protocol

from iotjobs.domain import event_config, group, history, job, quota, tagging, template, thing


class Executor(Protocol):
    async def execute(self, sql: str, *args: Any) -> Any: ...


async def apply(conn: Executor, event: Any, seq: int) -> None:
    match event:
        case thing.ThingCreated():
            await conn.execute(
                """INSERT INTO things (thing_name, thing_id, thing_type_name, attributes, version, seq)
                   VALUES ($1, $2, $3, $4, 1, $5)
                   ON CONFLICT (thing_name) DO UPDATE SET thing_id = $2, thing_type_name = $3,
                       attributes = $4, version = 1, seq = $5
                   WHERE things.seq < $5""",
                event.thing_name,
                event.thing_id,
                event.thing_type_name,
                event.attributes,
                seq,
            )
        case group.ThingGroupCreated():
            await conn.execute(
                """INSERT INTO thing_groups (group_name, group_id, parent_group_name, description,
                       attributes, created_at, version, seq)
                   VALUES ($1, $2, $3, $4, $5, $6, 1, $7)
                   ON CONFLICT (group_name) DO UPDATE SET group_id = $2, parent_group_name = $3,
                       description = $4, attributes = $5, created_at = $6, version = 1, seq = $7
                   WHERE thing_groups.seq < $7""",
                event.group_name,
                event.group_id,
                event.parent_group_name,
                event.description,
                event.attributes,
                event.created_at,
                seq,
            )
        case thing.ThingUpdated():
            await conn.execute(
                """UPDATE things SET thing_type_name = $2, attributes = $3, version = version + 1, seq = $4
                   WHERE thing_name = $1 AND seq < $4""",
                event.thing_name,
                event.thing_type_name,
                event.attributes,
                seq,
            )
        case group.ThingGroupUpdated():
            await conn.execute(
                """UPDATE thing_groups SET description = $2, attributes = $3, version = version + 1, seq = $4
                   WHERE group_name = $1 AND seq < $4""",
                event.group_name,
                event.description,
                event.attributes,
                seq,
            )
        case thing.ThingAddedToThingGroup():
            await conn.execute(
                """INSERT INTO thing_group_members (group_name, thing_name, seq) VALUES ($1, $2, $3)
                   ON CONFLICT (group_name, thing_name) DO NOTHING""",
                event.group_name,
                event.thing_name,
                seq,
            )
            await conn.execute(
                "UPDATE things SET version = version + 1, seq = $2 WHERE thing_name = $1 AND seq < $2",
                event.thing_name,
                seq,
            )
        case job.JobCreated():
            spec = job.JobSpec(**event.spec)
            await conn.execute(
                """INSERT INTO jobs (job_id, status, target_selection, targets, description, document,
                       spec, created_at, last_updated_at, seq)
                   VALUES ($1, 'IN_PROGRESS', $2, $3, $4, $5, $6, $7, $7, $8)
                   ON CONFLICT (job_id) DO NOTHING""",
                event.job_id,
                spec.target_selection,
                spec.targets,
                spec.description,
                spec.document,
                event.spec,
                event.created_at,
                seq,
            )
        case job.JobScheduleChanged() | job.JobRolloutEnded():
            status = event.status if isinstance(event, job.JobScheduleChanged) else job.IN_PROGRESS
            await conn.execute(
                """UPDATE jobs SET status = $2, last_updated_at = $3, seq = $4 WHERE job_id = $1 AND seq < $4""",
                event.job_id,
                status,
                event.at,
                seq,
            )
        case job.JobRolloutProgressed():
            await conn.execute(
                """UPDATE jobs SET processing_targets = $2, last_updated_at = $3, seq = $4
                   WHERE job_id = $1 AND seq < $4""",
                event.job_id,
                event.processing,
                event.at,
                seq,
            )
        case (
            job.JobExecutionRecorded()
            | job.JobExecutionForgotten()
            | job.JobExecutionAdded()
            | job.JobTargetsReleased()
            | job.JobRolledOut()
            | job.JobExecutionRetried()
            | job.JobThingsJoined()
        ):
            await conn.execute(
                "UPDATE jobs SET last_updated_at = $2, seq = $3 WHERE job_id = $1 AND seq < $3",
                event.job_id,
                event.at,
                seq,
            )
        case job.JobCompleted():
            await conn.execute(
                """UPDATE jobs SET status = 'COMPLETED', completed_at = $2, last_updated_at = $2, seq = $3
                   WHERE job_id = $1 AND seq < $3""",
                event.job_id,
                event.completed_at,
                seq,
            )
        case thing.ExecutionQueued():
            await conn.execute(
                """INSERT INTO job_executions (job_id, thing_name, execution_number, status, status_details,
                       queued_at, last_updated_at, version_number, retry_attempt, namespace_id)
                   VALUES ($1, $2, $3, 'QUEUED', '{}'::jsonb, $4, $4, 1, $5, $6)
                   ON CONFLICT (job_id, thing_name, execution_number) DO NOTHING""",
                event.job_id,
                event.thing_name,
                event.execution_number,
                event.queued_at,
                event.retry_attempt,
                event.namespace_id,
            )
        case thing.ExecutionUpdated():
            deadlines = [d for d in (event.in_progress_deadline, event.step_deadline) if d is not None]
            await conn.execute(
                """UPDATE job_executions SET status = $4, status_details = $5, started_at = $6,
                       last_updated_at = $7, version_number = $8, deadline = $9, force_canceled = $10
                   WHERE job_id = $1 AND thing_name = $2 AND execution_number = $3 AND version_number < $8""",
                event.job_id,
                event.thing_name,
                event.execution_number,
                event.status,
                event.status_details,
                event.started_at,
                event.last_updated_at,
                event.version_number,
                min(deadlines, default=None),
                event.force_canceled,
            )
        case thing.ExecutionDeleted():
            await conn.execute(
                "DELETE FROM job_executions WHERE job_id = $1 AND thing_name = $2 AND execution_number = $3",
                event.job_id,
                event.thing_name,
                event.execution_number,
            )
        case job.JobUpdated():
            await conn.execute(
                """UPDATE jobs SET spec = spec || ($2::jsonb - 'config')
                           || CASE WHEN $2::jsonb ? 'config'
                                   THEN jsonb_build_object(
                                       'config',
                                       COALESCE(NULLIF(spec->'config', 'null'::jsonb), '{}'::jsonb)
                                       || ($2::jsonb->'config'))
                                   ELSE '{}'::jsonb END,
                       last_updated_at = $3, seq = $4,
                       description = CASE WHEN $2::jsonb ? 'description' THEN $2::jsonb->>'description'
                                          ELSE description END
                   WHERE job_id = $1 AND seq < $4""",
                event.job_id,
                event.changes,
                event.at,
                seq,
            )
        case job.JobCanceled():
            await conn.execute(
                """UPDATE jobs SET status = 'CANCELED', force_canceled = $2, reason_code = $3, comment = $4,
                       last_updated_at = $5, completed_at = COALESCE(completed_at, $5), seq = $6
                   WHERE job_id = $1 AND seq < $6""",
                event.job_id,
                event.force,
                event.reason_code,
                event.comment,
                event.at,
                seq,
            )
        case job.JobDeletionStarted():
            await conn.execute(
                """UPDATE jobs SET status = 'DELETION_IN_PROGRESS', last_updated_at = $2, seq = $3
                   WHERE job_id = $1 AND seq < $3""",
                event.job_id,
                event.at,
                seq,
            )
        case job.JobTargetsAssociated():
            await conn.execute(
                """UPDATE jobs SET targets = targets || $2::jsonb,
                       spec = jsonb_set(spec, '{targets}', (spec->'targets') || $2::jsonb),
                       last_updated_at = $3, seq = $4
                   WHERE job_id = $1 AND seq < $4""",
                event.job_id,
                event.targets,
                event.at,
                seq,
            )
        case job.JobDeleted():
            await conn.execute("DELETE FROM jobs WHERE job_id = $1 AND seq < $2", event.job_id, seq)
            await conn.execute(
                "DELETE FROM resource_tags WHERE resource_type = $1 AND resource_id = $2 AND seq < $3",
                tagging.JOB,
                event.job_id,
                seq,
            )
        case event_config.EventConfigurationsUpdated():
            for event_type, enabled in sorted(event.enabled.items()):
                await conn.execute(
                    """INSERT INTO event_configurations (event_type, enabled, created_at, updated_at, seq)
                       VALUES ($1, $2, $3, $3, $4)
                       ON CONFLICT (event_type) DO UPDATE SET enabled = $2, updated_at = $3, seq = $4
                       WHERE event_configurations.seq < $4""",
                    event_type,
                    enabled,
                    event.at,
                    seq,
                )
        case template.JobTemplateCreated():
            await conn.execute(
                """INSERT INTO job_templates (template_id, description, spec, created_at, seq)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (template_id) DO UPDATE SET description = $2, spec = $3, created_at = $4, seq = $5
                   WHERE job_templates.seq < $5""",
                event.template_id,
                event.spec.get("description", ""),
                event.spec,
                event.created_at,
                seq,
            )
        case template.JobTemplateDeleted():
            await conn.execute("DELETE FROM job_templates WHERE template_id = $1 AND seq < $2", event.template_id, seq)
            await conn.execute(
                "DELETE FROM resource_tags WHERE resource_type = $1 AND resource_id = $2 AND seq < $3",
                tagging.TEMPLATE,
                event.template_id,
                seq,
            )
        case tagging.TagsChanged():
            await conn.execute(
                """INSERT INTO resource_tags (resource_type, resource_id, tags, seq) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (resource_type, resource_id) DO UPDATE SET tags = $3, seq = $4
                   WHERE resource_tags.seq < $4""",
                event.resource_type,
                event.resource_id,
                event.tags,
                seq,
            )
        case thing.ThingDeleted():
            await conn.execute("DELETE FROM things WHERE thing_name = $1 AND seq < $2", event.thing_name, seq)
            await conn.execute(
                "DELETE FROM thing_group_members WHERE thing_name = $1 AND seq < $2", event.thing_name, seq
            )
        case thing.ThingRemovedFromThingGroup():
            await conn.execute(
                "DELETE FROM thing_group_members WHERE group_name = $1 AND thing_name = $2 AND seq < $3",
                event.group_name,
                event.thing_name,
                seq,
            )
            await conn.execute(
                "UPDATE things SET version = version + 1, seq = $2 WHERE thing_name = $1 AND seq < $2",
                event.thing_name,
                seq,
            )
        case group.ThingGroupDeleted():
            # Its members' rows go as each member leaves it (their ThingRemovedFromThingGroup).
            await conn.execute("DELETE FROM thing_groups WHERE group_name = $1 AND seq < $2", event.group_name, seq)
        case (
            group.ChildGroupAdded()
            | group.ChildGroupRemoved()
            | group.GroupMemberAdded()
            | group.GroupMemberRemoved()
            | group.GroupJobAdded()
            | group.GroupJobRemoved()
        ):
            pass  # the group's own index: the read model's membership is the things' own record
        case job.JobSlotChanged() | quota.SlotTaken() | quota.SlotFreed() | thing.ExecutionTimeoutChanged():
            pass  # the quota's bookkeeping, a queued execution's timeout to come: no read model shows them
        case _:
            raise TypeError(f"no read model for {type(event).__name__}")


async def apply_history(conn: Executor, event: Any, seq: int) -> None:
    """The execution history's row for an event that moved an execution. Kept apart from `apply` so a batch's
    history rows go to PostgreSQL together (they read nothing but the history), not one between each two
    rows of the other read models."""
    moved = history.transition(event)
    if moved is None:
        return
    if moved.status == history.DELETED:
        await _record_deletion(conn, moved, seq)
        return
    await conn.execute(
        """INSERT INTO execution_history (thing_name, seq, job_id, execution_number, status, cause,
               status_details, version_number, at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (thing_name, seq) DO NOTHING""",
        moved.thing_name,
        seq,
        moved.job_id,
        moved.execution_number,
        moved.status,
        moved.cause,
        moved.status_details,
        moved.version_number,
        moved.at,
    )


async def _record_deletion(conn: Executor, moved: history.Transition, seq: int) -> None:
    """A deletion keeps the statusDetails and versionNumber of the transition before it (and its time, when
    the deletion was logged without one)."""
    await conn.execute(
        """INSERT INTO execution_history (thing_name, seq, job_id, execution_number, status, cause,
               status_details, version_number, at)
           SELECT $1, $2, $3, $4, $5, $6, COALESCE(before.status_details, '{}'::jsonb),
                  COALESCE(before.version_number, 0), COALESCE($7::double precision, before.at, 0)
           FROM (SELECT 1) AS one
           LEFT JOIN LATERAL (
               SELECT status_details, version_number, at FROM execution_history
               WHERE thing_name = $1 AND job_id = $3 AND execution_number = $4 AND seq < $2
               ORDER BY seq DESC LIMIT 1
           ) AS before ON true
           ON CONFLICT (thing_name, seq) DO NOTHING""",
        moved.thing_name,
        seq,
        moved.job_id,
        moved.execution_number,
        moved.status,
        moved.cause,
        moved.at,
    )
