"""The Grafana dashboard reads only metrics the services define, and shows each kind the services export."""

from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase

from iotjobs.runtime import metrics
from services.projector.observed import RolloutCollector
from tests.support.dashboard import expressions, load, metric_names

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def defined() -> set[str]:
    """Every series name the iotjobs metrics expose (a counter as `_total`, a histogram's three series)."""
    names = set()
    families = [
        family
        for value in vars(metrics).values()
        if isinstance(value, MetricWrapperBase)
        for family in value.describe()
    ]
    families += list(RolloutCollector().describe())
    for family in families:
        names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def dashboard_names() -> set[str]:
    return set().union(*(metric_names(e) for e in expressions(load())))


def test_every_metric_the_dashboard_reads_is_defined() -> None:
    used = dashboard_names()
    assert used - defined() == set()


def test_every_iotjobs_metric_is_on_the_dashboard() -> None:
    # A histogram counts as shown when its buckets are (quantiles) or its count is (how many).
    shown = {name.removesuffix("_bucket").removesuffix("_count") for name in dashboard_names()}
    families = {
        name.removesuffix("_total").removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
        for name in defined()
    }
    assert families - {name.removesuffix("_total") for name in shown} == set()


def test_names_are_read_from_promql_not_from_its_words() -> None:
    expr = 'histogram_quantile(0.99, sum by (le, plane) (rate(iotjobs_a_bucket{error!="x y"}[$__rate_interval]))) * 60'
    assert metric_names(expr) == {"iotjobs_a_bucket"}
    assert metric_names("label_values(iotjobs_b, job_id)") == {"iotjobs_b"}
    assert metric_names("max(x) / on (role) group_left count(y offset 5m)") == {"x", "y"}
