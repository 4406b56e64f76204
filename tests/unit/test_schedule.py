"""Scheduling rules (aws-iot-jobs.md §6.8): times, AWS cron windows, and the job's status following them."""

from __future__ import annotations

from typing import Any

import pytest

from iotjobs.domain import job as j
from iotjobs.domain import quota as q
from iotjobs.domain import schedule as s
from iotjobs.domain.decision import Context
from iotjobs.domain.execution import IN_PROGRESS, SUCCEEDED, RecordExecutionStatus
from iotjobs.domain.targets import AddThingsToJob
from iotjobs.domain.thing import CancelExecution, QueueExecution

MIN = 60.0
NOW = s.parse_time("2026-12-05T10:00", "now")  # a Saturday


def at(text: str) -> float:
    return s.parse_time(text, "t")


def test_times_are_utc_unless_they_say_otherwise() -> None:
    assert at("2026-12-05T10:00") == at("2026-12-05T10:00Z") == at("2026-12-05T11:00+01:00")
    assert s.format_time(at("2026-12-05T10:00:59")) == "2026-12-05T10:00"
    with pytest.raises(s.ScheduleError, match="'noon'"):
        at("noon")


def test_aws_cron_days_of_week_run_from_sunday_as_one() -> None:
    weekdays = s.window_of("cron(0 12 ? * 2-6 *)", 60, MIN, "w")  # MON-FRI in AWS numbers
    assert s.format_time(weekdays.next_start(NOW) or 0) == "2026-12-07T12:00"
    sunday = s.window_of("cron(30 8 ? * 1 *)", 60, MIN, "w")
    assert s.format_time(sunday.next_start(NOW) or 0) == "2026-12-06T08:30"
    named = s.window_of("0 12 ? * SAT *", 60, MIN, "w")
    assert s.format_time(named.next_start(NOW) or 0) == "2026-12-05T12:00"


def test_a_window_with_a_year_opens_only_in_that_year() -> None:
    window = s.window_of("cron(0 9 1 * ? 2028)", 60, MIN, "w")
    assert s.format_time(window.next_start(NOW) or 0) == "2028-01-01T09:00"
    assert s.window_of("cron(0 9 1 * ? 2020)", 60, MIN, "w").next_start(NOW) is None


@pytest.mark.parametrize(
    ("expression", "needle"),
    [("0 12 * * *", "cron\\(minutes"), ("cron(0 12 1 * MON *)", "'\\?'"), ("cron(0 99 ? * * *)", "evaluate")],
)
def test_cron_expressions_that_cannot_be_read_name_themselves(expression: str, needle: str) -> None:
    with pytest.raises(s.ScheduleError, match=needle):
        s.window_of(expression, 60, MIN, "maintenanceWindows[0]")


def test_inside_a_window_and_the_next_seven() -> None:
    config = {s.SCHEDULING: {"maintenanceWindows": [{"startTime": "cron(0 12 ? * * *)", "durationInMinutes": 30}]}}
    plan = s.plan(config, MIN)
    assert plan.open_until(at("2026-12-05T12:00")) == at("2026-12-05T12:30")
    assert plan.open_until(at("2026-12-05T12:29")) == at("2026-12-05T12:30")
    assert plan.open_until(at("2026-12-05T12:30")) is None
    assert [s.format_time(t) for t in plan.rollouts(NOW)] == [f"2026-12-{d:02d}T12:00" for d in range(5, 12)]
    scaled = s.plan(config, 1.0)  # a minute of one second: the window lasts 30 s
    assert scaled.open_until(at("2026-12-05T12:00")) == at("2026-12-05T12:00") + 30


def test_lead_times_and_spans_are_checked() -> None:
    def check(block: dict[str, Any]) -> None:
        s.check({s.SCHEDULING: block}, NOW, MIN)

    check({"startTime": "2026-12-05T10:30"})
    with pytest.raises(s.ScheduleError, match="startTime"):
        check({"startTime": "2026-12-05T10:29"})
    with pytest.raises(s.ScheduleError, match="startTime"):
        check({"startTime": "2028-01-01T00:00"})
    with pytest.raises(s.ScheduleError, match="30 minutes to two years after"):
        check({"startTime": "2026-12-05T11:00", "endTime": "2026-12-05T11:20"})
    with pytest.raises(s.ScheduleError, match="endBehavior"):
        check({"endBehavior": "CANCEL"})


# --- the job follows its schedule ---------------------------------------------------------------


class Job:
    def __init__(
        self,
        scheduling: dict[str, Any],
        things: list[str],
        extra: dict[str, Any] | None = None,
        selection: str = "SNAPSHOT",
    ) -> None:
        self.state = j.initial("job/j1")
        self.sends: list[Any] = []
        config = {s.SCHEDULING: scheduling, **(extra or {})}
        spec = {"targets": [], "document": "{}", "config": config, "target_selection": selection}
        self.decide(j.CreateJob("j1", spec, things), NOW)

    def decide(self, command: Any, now: float) -> None:
        decision = j.decide(self.state, command, Context(now=now, seconds_per_minute=MIN))
        self.state = j.fold(self.state, decision.events)
        self.sends += decision.sends

    def fire(self, now: float) -> None:
        for timer in j.timers(self.state):
            if timer.due <= now:
                self.decide(timer.command, now)

    def next_schedule_edge(self) -> float | None:
        return next((t.due for t in j.timers(self.state) if isinstance(t.command, j.ScheduleTick)), None)

    def queued(self) -> list[str]:
        return [send.key for send in self.sends if isinstance(send.command, QueueExecution)]


def test_a_job_waits_for_its_start_time() -> None:
    job = Job({"startTime": "2026-12-05T12:00"}, ["a", "b"])
    assert job.state.status == j.SCHEDULED and job.queued() == []
    assert job.next_schedule_edge() == at("2026-12-05T12:00")
    job.fire(at("2026-12-05T12:00") + 0.2)
    assert job.state.status == j.IN_PROGRESS and job.queued() == ["thing/a", "thing/b"]
    assert job.next_schedule_edge() is None


def test_windows_flip_the_status_and_hold_the_rollout_between_them() -> None:
    windows = {"maintenanceWindows": [{"startTime": "cron(0 12 ? * * *)", "durationInMinutes": 30}]}
    job = Job(windows, [f"t{i}" for i in range(5)], {"jobExecutionsRolloutConfig": {"maximumPerMinute": 1}})
    assert job.state.status == j.SCHEDULED and job.next_schedule_edge() == at("2026-12-05T12:00")
    job.fire(at("2026-12-05T12:00"))
    assert job.state.status == j.IN_PROGRESS and len(job.queued()) == 1
    assert job.next_schedule_edge() == at("2026-12-05T12:30")
    job.fire(at("2026-12-05T12:01") + 1)  # a minute, and the second a release is given to reach its devices
    assert len(job.queued()) == 2
    job.fire(at("2026-12-05T12:30"))
    assert job.state.status == j.SCHEDULED and job.next_schedule_edge() == at("2026-12-06T12:00")
    assert [t for t in j.timers(job.state) if isinstance(t.command, j.RolloutTick)] == [], "no ticks outside"
    job.fire(at("2026-12-06T12:00"))
    assert job.state.status == j.IN_PROGRESS and len(job.queued()) == 3


def test_end_time_behaviours() -> None:
    end = {"endTime": "2026-12-05T12:00"}
    stop = Job(
        {**end, "endBehavior": "STOP_ROLLOUT"}, ["a", "b"], {"jobExecutionsRolloutConfig": {"maximumPerMinute": 1}}
    )
    stop.fire(at("2026-12-05T12:00"))
    assert stop.state.ended and not stop.state.backlog and stop.queued() == ["thing/a"]
    stop.decide(RecordExecutionStatus("j1", "a", 1, SUCCEEDED), at("2026-12-05T12:01"))
    assert stop.state.status == j.COMPLETED, "complete once what it released is done"

    for behavior, force in (("CANCEL", False), ("FORCE_CANCEL", True)):
        job = Job({**end, "endBehavior": behavior}, ["a"])
        job.decide(RecordExecutionStatus("j1", "a", 1, IN_PROGRESS), NOW + 1)
        job.fire(at("2026-12-05T12:00"))
        assert job.state.status == j.CANCELED and job.state.force_canceled is force
        assert CancelExecution("j1", force=force, from_job=True) in [send.command for send in job.sends]


def test_a_continuous_job_keeps_joiners_until_it_starts() -> None:
    job = Job({"startTime": "2026-12-05T12:00"}, [], selection=j.CONTINUOUS)
    job.decide(AddThingsToJob("j1", ["late"], "g"), NOW + 5)
    assert job.queued() == [] and "late" in job.state.waiting
    job.fire(at("2026-12-05T12:00"))
    assert job.queued() == ["thing/late"]


# --- the job-concurrency quota ------------------------------------------------------------------


def test_the_quota_grants_up_to_its_limit_forced_claims_beyond_it_and_frees_on_release() -> None:
    state = q.initial(q.KEY)
    ctx = Context(now=NOW)
    for job_id, force, granted in (("a", False, True), ("b", False, False), ("c", True, True), ("a", False, True)):
        decision = q.decide(state, q.ClaimSlot(job_id, 1, force), ctx)
        state = q.evolve(state, decision.events[0]) if decision.events else state
        assert decision.sends[0].command == q.SlotAnswer(job_id, granted, 1)
    assert state.holders == {"a", "c"}
    for event in q.decide(state, q.ReleaseSlot("a"), ctx).events:
        state = q.evolve(state, event)
    assert state.holders == {"c"} and q.decide(state, q.ReleaseSlot("a"), ctx).events == ()


class LimitedJob(Job):
    def decide(self, command: Any, now: float) -> None:
        decision = j.decide(self.state, command, Context(now=now, seconds_per_minute=MIN, max_concurrent_jobs=1))
        self.state = j.fold(self.state, decision.events)
        self.sends += decision.sends


def test_a_scheduled_start_waits_for_a_slot_and_rolls_out_or_is_canceled() -> None:
    for granted in (True, False):
        job = LimitedJob({"startTime": "2026-12-05T12:00"}, ["a"])
        job.fire(at("2026-12-05T12:00"))
        assert job.state.slot == "waiting" and job.queued() == []
        assert q.ClaimSlot("j1", 1, force=False) in [send.command for send in job.sends]
        job.decide(q.SlotAnswer("j1", granted, 1), at("2026-12-05T12:00") + 1)
        if granted:
            assert job.queued() == ["thing/a"] and job.state.slot == "released", "rolled out, so no longer held"
            assert q.ReleaseSlot("j1") in [send.command for send in job.sends]
        else:
            assert job.state.status == j.CANCELED and "limit of 1" in (job.state.comment or "")


def test_a_job_that_starts_at_creation_takes_a_slot_without_waiting() -> None:
    job = LimitedJob({}, ["a", "b"], extra={"jobExecutionsRolloutConfig": {"maximumPerMinute": 1}})
    assert job.state.slot == "held" and job.queued() == ["thing/a"]
    assert q.ClaimSlot("j1", 1, force=True) in [send.command for send in job.sends]
