"""Rollout pacing, abort criteria and retries of the job aggregate (aws-iot-jobs.md §6.5-§6.7), driven the way
the runtime drives it: decisions, and the job's own timers firing (late, by random amounts) as RolloutTick.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from iotjobs.domain import job as j
from iotjobs.domain import rollout
from iotjobs.domain.decision import Context, Decision, Send
from iotjobs.domain.execution import FAILED, IN_PROGRESS, QUEUED, REJECTED, SUCCEEDED, TIMED_OUT, RecordExecutionStatus
from iotjobs.domain.targets import ReleaseTargets
from iotjobs.domain.thing import CancelExecution, QueueExecution
from tests.support.rolling import most_in_window

JOB = "j1"
T0 = 1_700_000_000.0
MINUTE = 60.0
GROUP = "arn:aws:iot:us-east-1:123456789012:thinggroup/fleet"


def job_spec(config: dict[str, Any] | None = None, targets: list[str] | None = None) -> dict[str, Any]:
    return {"targets": targets or [GROUP], "document": "{}", "target_selection": j.SNAPSHOT, "config": config}


def paced(maximum: int | None = None, exponential: dict[str, Any] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {}
    if maximum is not None:
        block["maximumPerMinute"] = maximum
    if exponential is not None:
        block["exponentialRate"] = exponential
    return {rollout.ROLLOUT_CONFIG: block}


class Rollout:
    """One job, its state kept as the runtime keeps it, and every thing it queued with the time it did."""

    def __init__(self, config: dict[str, Any] | None, targets: list[str] | None = None) -> None:
        self.state = j.initial(j.key_for(JOB))
        self.now = T0
        self.queued: list[tuple[float, str]] = []
        self.decide(j.CreateJob(JOB, job_spec(config, targets), []), T0)

    def decide(self, command: Any, now: float) -> Decision:
        self.now = now
        decision = j.decide(self.state, command, Context(now=now, seconds_per_minute=MINUTE))
        self.state = j.fold(self.state, decision.events)
        for send in decision.sends:
            if isinstance(send.command, QueueExecution):
                assert send.command.queued_at == now, "a thing's queuedAt is the time the job released it"
                self.queued.append((now, send.key.removeprefix("thing/")))
        return decision

    def stream(self, names: list[str], now: float, last: bool = True) -> None:
        self.decide(ReleaseTargets(JOB, names, self.state.release or "", last, "fleet"), now)

    def tick_until_done(self, jitter: list[float] | None = None, limit: int = 100_000) -> None:
        """Fire the job's timer each time it falls due (plus the next jitter, as a busy runtime would)."""
        jitter = list(jitter or [])
        for _ in range(limit):
            timers = j.timers(self.state)
            if not timers:
                return
            (timer,) = timers
            late = jitter.pop(0) if jitter else 0.0
            self.decide(timer.command, max(timer.due, self.queued[-1][0] if self.queued else T0) + late)
        raise AssertionError("the rollout did not finish")

    def tick_until(self, end: float) -> None:
        """Fire the job's timers as they fall due, up to `end`."""
        while (timers := j.timers(self.state)) and min(t.due for t in timers) <= end:
            timer = min(timers, key=lambda t: t.due)
            self.decide(timer.command, max(timer.due, self.now))  # a timer due in the past fires now

    def most_in_a_rolling_minute(self) -> int:
        return most_in_window([at for at, _thing in self.queued], MINUTE)

    def per_minute(self) -> list[int]:
        counts: dict[int, int] = {}
        for at, _thing in self.queued:
            counts[int((at - T0) // MINUTE)] = counts.get(int((at - T0) // MINUTE), 0) + 1
        return [counts.get(m, 0) for m in range(max(counts) + 1)]


def names(n: int, prefix: str = "t") -> list[str]:
    return [f"{prefix}{i:06d}" for i in range(n)]


# --- maximumPerMinute ---------------------------------------------------------------------------


def test_no_rollout_config_releases_everything_as_it_arrives() -> None:
    run = Rollout(None)
    run.stream(names(2500), T0 + 1)
    assert len(run.queued) == 2500 and {at for at, _ in run.queued} == {T0 + 1}
    assert j.timers(run.state) == []


def test_maximum_per_minute_releases_that_many_each_minute_in_order() -> None:
    run = Rollout(paced(maximum=10))
    run.stream(names(35), T0)
    assert [thing for _, thing in run.queued] == names(1), "a tenth of the rate goes at once"
    assert not any(name in run.state.executions for name in names(35)[1:]), "the rest has no execution yet"
    run.tick_until_done()
    assert [thing for _, thing in run.queued] == names(35), "in order"
    assert run.per_minute() == [10, 10, 10, 5]
    gaps = {round(b[0] - a[0], 3) for a, b in zip(run.queued, run.queued[1:], strict=False)}
    assert min(gaps) >= MINUTE / 10, "slices a tenth of a minute apart, not bursts"
    assert run.state.status == j.IN_PROGRESS and not run.state.backlog


def test_things_named_and_streamed_share_the_rate_and_the_job_completes_after_the_last() -> None:
    thing = "arn:aws:iot:us-east-1:123456789012:thing/first"
    run = Rollout(None)
    run.state = j.initial(j.key_for(JOB))
    run.queued.clear()
    run.decide(j.CreateJob(JOB, job_spec(paced(maximum=2), [thing, GROUP]), ["first"]), T0)
    assert run.state.processing == (GROUP,), "the named thing went at once; the group has yet to stream"
    run.stream(["a", "b", "c"], T0 + 1)
    assert run.state.processing == (GROUP,)
    run.tick_until_done()
    assert [name for _, name in run.queued] == ["first", "a", "b", "c"]
    assert run.per_minute() == [2, 2]
    assert run.state.processing == ()
    for _, name in run.queued:
        run.decide(RecordExecutionStatus(JOB, name, 1, SUCCEEDED), run.queued[-1][0] + 1)
    assert run.state.status == j.COMPLETED


@settings(max_examples=60, deadline=None)
@given(
    rate=st.integers(1, 40),
    fleet=st.integers(0, 300),
    chunks=st.integers(1, 5),
    jitter=st.lists(st.floats(0, 90, allow_nan=False), max_size=50),
    exponential=st.booleans(),
)
def test_no_rolling_minute_ever_holds_more_than_the_rate(
    rate: int, fleet: int, chunks: int, jitter: list[float], exponential: bool
) -> None:
    expo = {"baseRatePerMinute": 1, "incrementFactor": 1.5, "rateIncreaseCriteria": {"numberOfNotifiedThings": 7}}
    run = Rollout(paced(maximum=rate, exponential=expo if exponential else None))
    things = names(fleet)
    size = max(1, -(-fleet // chunks))
    parts = [things[i : i + size] for i in range(0, fleet, size)] or [[]]
    for i, part in enumerate(parts):
        run.stream(part, T0 + i * 7.5, last=i == len(parts) - 1)
    run.tick_until_done(jitter)
    assert sorted(name for _, name in run.queued) == things, "every thing released once"
    assert run.most_in_a_rolling_minute() <= rate
    if not exponential and not jitter and fleet >= rate and chunks == 1:
        assert run.most_in_a_rolling_minute() == rate, "as close to the rate as the targets allow"


def test_update_job_changes_the_rate_from_the_next_tick() -> None:
    run = Rollout(paced(maximum=5))
    run.stream(names(30), T0)
    run.decide(j.UpdateJob(JOB, {"config": paced(maximum=10)}), T0 + 1)
    assert len(run.queued) == 1, "the update releases nothing itself"
    run.tick_until_done()
    assert run.per_minute() == [10, 10, 10], "the next ticks already go at the new rate"


# --- exponentialRate ----------------------------------------------------------------------------


def test_the_documented_exponential_example_50_100_200_400() -> None:
    expo = {"baseRatePerMinute": 50, "incrementFactor": 2, "rateIncreaseCriteria": {"numberOfNotifiedThings": 1000}}
    run = Rollout(paced(exponential=expo))
    run.stream(names(4000), T0)
    run.tick_until_done()
    times = [at for at, _thing in run.queued]
    for first, rate in ((0, 50), (1000, 100), (2000, 200), (3000, 400)):
        phase = times[first : first + 1000]
        assert most_in_window(phase, MINUTE) == rate, f"things {first}-{first + 1000} at {rate} a minute"
        # and it takes as long as that rate makes it (each minute holds one extra second, rollout.DELIVERY)
        assert 1000 / rate - 1 <= (phase[-1] - phase[0]) / MINUTE <= 1000 / rate * 61 / 60


def test_an_exponential_rate_is_capped_by_maximum_per_minute_and_computed_exactly() -> None:
    def rate_after(notified: int, factor: float, maximum: int | None = None) -> int | None:
        expo = {
            "baseRatePerMinute": 100,
            "incrementFactor": factor,
            "rateIncreaseCriteria": {"numberOfNotifiedThings": 10},
        }
        return rollout.rate(paced(maximum, expo), notified, 0)

    assert [rate_after(n, 1.1) for n in (0, 9, 10, 20, 30)] == [100, 100, 110, 121, 133]
    assert rate_after(10_000, 5.0) == 1000, "without maximumPerMinute AWS's ceiling of 1000 holds"
    assert rate_after(30, 2.0, maximum=300) == 300


def test_a_success_criterion_raises_the_rate_as_things_succeed() -> None:
    expo = {"baseRatePerMinute": 2, "incrementFactor": 2, "rateIncreaseCriteria": {"numberOfSucceededThings": 2}}
    run = Rollout(paced(exponential=expo))
    run.stream(names(40), T0)
    run.tick_until(T0 + MINUTE - 1)
    assert len(run.queued) == 2, "two in the first minute"
    for _, name in list(run.queued):
        run.decide(RecordExecutionStatus(JOB, name, 1, SUCCEEDED), T0 + MINUTE - 1)
    run.tick_until(T0 + 4 * MINUTE)
    later = [at for at, _thing in run.queued[2:]]
    assert later[0] >= T0 + MINUTE - 1, "from the next tick"
    assert most_in_window(later, MINUTE) == 4, "two successes doubled the rate"


# --- abortConfig --------------------------------------------------------------------------------


def abort(failure: str, threshold: float, least: int) -> dict[str, Any]:
    criterion = {"failureType": failure, "action": "CANCEL", "thresholdPercentage": threshold}
    return {"criteriaList": [{**criterion, "minNumberOfExecutedThings": least}]}


def finish(run: Rollout, outcomes: list[str], now: float) -> list[Decision]:
    return [
        run.decide(RecordExecutionStatus(JOB, name, 1, outcome), now)
        for (_, name), outcome in zip(list(run.queued), outcomes, strict=False)
    ]


def test_abort_waits_for_the_minimum_then_cancels_queued_executions_only() -> None:
    # 10 things at 50%: 4 failures in the first 9 are not counted yet; the 10th executed (a failure)
    # makes 5 of 10 = 50% and aborts.
    run = Rollout({"abortConfig": abort(FAILED, 50, 10)})
    run.stream(names(20), T0)
    run.decide(RecordExecutionStatus(JOB, "t000019", 1, IN_PROGRESS), T0 + 1)
    outcomes = [FAILED, SUCCEEDED] * 4 + [SUCCEEDED, FAILED]
    decisions = finish(run, outcomes, T0 + 2)
    assert all(not any(isinstance(e, j.JobCanceled) for e in d.events) for d in decisions[:9])
    (canceled,) = [e for e in decisions[9].events if isinstance(e, j.JobCanceled)]
    assert (canceled.reason_code, canceled.force) == (j.ABORTED, False)
    assert "5 of 10" in (canceled.comment or "") and "50" in (canceled.comment or "")
    cancels = [s for s in decisions[9].sends if isinstance(s.command, CancelExecution)]
    assert [s.key for s in cancels] == [f"thing/{n}" for n in names(20)[10:]]
    assert all(s.command == CancelExecution(JOB, force=False, from_job=True, aborted=True) for s in cancels)
    assert run.state.status == j.CANCELED


def test_abort_criteria_are_evaluated_in_order_and_all_counts_every_failure_kind() -> None:
    config = {
        "abortConfig": {
            "criteriaList": [abort(FAILED, 90, 10)["criteriaList"][0], abort("ALL", 60, 5)["criteriaList"][0]]
        }
    }
    run = Rollout(config)
    run.stream(names(10), T0)
    decisions = finish(run, [FAILED, REJECTED, TIMED_OUT, SUCCEEDED, SUCCEEDED], T0 + 1)
    assert not any(isinstance(e, j.JobCanceled) for d in decisions[:4] for e in d.events), "fewer than 5 executed"
    assert run.state.status == j.CANCELED, "3 of 5 failed in some way: 60%"
    assert "ALL" in (run.state.comment or "")
    below = Rollout(config)
    below.stream(names(10), T0)
    finish(below, [SUCCEEDED, REJECTED, TIMED_OUT, SUCCEEDED, SUCCEEDED], T0 + 1)
    assert below.state.status == j.IN_PROGRESS, "2 of 5 is 40%"
    first = Rollout(
        {
            "abortConfig": {
                "criteriaList": [abort(FAILED, 20, 1)["criteriaList"][0], config["abortConfig"]["criteriaList"][1]]
            }
        }
    )
    first.stream(names(10), T0)
    finish(first, [FAILED], T0 + 1)
    assert first.state.status == j.CANCELED and "FAILED" in (first.state.comment or "")


def test_an_aborted_rollout_stops_releasing() -> None:
    run = Rollout({**paced(maximum=2), "abortConfig": abort(FAILED, 100, 2)})
    run.stream(names(10), T0)
    run.tick_until(T0 + MINUTE / 2)
    finish(run, [FAILED, FAILED], T0 + MINUTE / 2)
    assert run.state.status == j.CANCELED and j.timers(run.state) == []
    assert len(run.queued) == 2 and run.state.processing == ()


# --- jobExecutionsRetryConfig -------------------------------------------------------------------


def retries(**budget: int) -> dict[str, Any]:
    return {j.RETRY_CONFIG: {"criteriaList": [{"failureType": k, "numberOfRetries": n} for k, n in budget.items()]}}


def report(run: Rollout, thing: str, number: int, status: str, now: float) -> Decision:
    return run.decide(RecordExecutionStatus(JOB, thing, number, status), now)


def test_a_failed_execution_is_retried_until_its_budget_is_spent_then_all_pays() -> None:
    run = Rollout(retries(FAILED=1, ALL=1))
    run.stream(["a"], T0)
    first = report(run, "a", 1, FAILED, T0 + 1)
    assert [type(e) for e in first.events] == [j.JobExecutionRecorded, j.JobExecutionRetried]
    assert first.sends == (Send("thing/a", QueueExecution(JOB, "{}", queued_at=T0 + 1, retry_attempt=1)),)
    second = report(run, "a", 2, FAILED, T0 + 2)
    assert [e.criterion for e in second.events if isinstance(e, j.JobExecutionRetried)] == ["ALL"]
    assert second.sends[0].command.retry_attempt == 2
    third = report(run, "a", 3, FAILED, T0 + 3)
    assert not third.sends and any(isinstance(e, j.JobCompleted) for e in third.events)
    assert run.state.counts == {FAILED: 3}, "AWS counts executions: three failed"


def test_timed_out_retries_do_not_pay_for_failures_and_rejections_are_never_retried() -> None:
    run = Rollout(retries(TIMED_OUT=2))
    run.stream(["a", "b"], T0)
    assert not report(run, "a", 1, FAILED, T0 + 1).sends
    assert not report(run, "b", 1, REJECTED, T0 + 1).sends
    run2 = Rollout(retries(TIMED_OUT=2))
    run2.stream(["a"], T0)
    assert report(run2, "a", 1, TIMED_OUT, T0 + 1).sends[0].command.retry_attempt == 1


def test_retries_lowered_to_zero_stop_and_a_job_that_is_not_running_retries_nothing() -> None:
    run = Rollout(retries(FAILED=3))
    run.stream(["a", "b"], T0)
    assert run.decide(j.UpdateJob(JOB, {"config": retries(FAILED=0)}), T0 + 1).reply is not None
    assert not report(run, "a", 1, FAILED, T0 + 2).sends
    canceled = Rollout(retries(FAILED=3))
    canceled.stream(["a", "b"], T0)
    canceled.decide(j.CancelJob(JOB), T0 + 1)
    assert not report(canceled, "a", 1, FAILED, T0 + 2).sends


def test_a_retried_job_completes_only_after_the_retry_ends() -> None:
    run = Rollout(retries(ALL=1))
    run.stream(["a"], T0)
    retried = report(run, "a", 1, FAILED, T0 + 1)
    assert not any(isinstance(e, j.JobCompleted) for e in retried.events)
    assert run.state.executions["a"] == QUEUED
    done = report(run, "a", 2, SUCCEEDED, T0 + 2)
    assert any(isinstance(e, j.JobCompleted) for e in done.events)
    assert run.state.counts == {FAILED: 1, SUCCEEDED: 1}


def test_the_rollout_state_survives_a_snapshot() -> None:
    run = Rollout({**paced(maximum=3), **retries(FAILED=1)})
    run.stream(names(10), T0)
    report(run, "t000000", 1, FAILED, T0 + 1)
    restored = j.JobState.from_dict(run.state.to_dict())
    assert restored == run.state
    assert j.timers(restored) == j.timers(run.state)
