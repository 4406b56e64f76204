// The rollout dashboard: Alpine.js binds the page to the state below, Chart.js draws the outcomes over time.
// Live updates come from the server-sent event stream; the selected job is read again only when its entry in
// the stream changes.
"use strict";

const API = "/_iotjobs/dashboard";
const STREAM = "/_iotjobs/events/stream";
const STATUSES = ["QUEUED", "IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT", "CANCELED", "REMOVED"];
const SERIES = [
  { key: "released", label: "released", color: "#9fb0c4", stack: "released" },
  { key: "succeeded", label: "succeeded", color: "#2e9d5b" },
  { key: "failed", label: "failed, rejected, timed out", color: "#d0453b" },
  { key: "canceled", label: "canceled, removed", color: "#b7a13a" },
];

// Kept outside Alpine's reactive state: Chart.js does not work through a Proxy.
let chart = null;

async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (!response.ok) {
    const error = new Error(`${path}: HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

function drawTimeline(timeline) {
  const canvas = document.getElementById("timeline");
  if (!canvas) return;
  const labels = timeline.series.released.map((_, i) =>
    new Date((timeline.start + i * timeline.bucketSeconds) * 1000).toLocaleTimeString(),
  );
  const datasets = SERIES.map((s) => ({
    label: s.label,
    key: s.key,
    type: "bar",
    data: timeline.series[s.key],
    backgroundColor: s.color,
    borderColor: s.color,
    stack: s.stack || "outcomes",
    order: 1,
  }));
  // The rollout's course: every execution finished so far, whatever its outcome, against the right axis.
  let finished = 0;
  datasets.push({
    label: "finished so far",
    key: "finishedSoFar",
    type: "line",
    yAxisID: "total",
    data: timeline.series.released.map(
      (_, i) => (finished += timeline.series.succeeded[i] + timeline.series.failed[i] + timeline.series.canceled[i]),
    ),
    borderColor: "#1d2530",
    backgroundColor: "#1d2530",
    borderDash: [4, 3],
    pointRadius: 0,
    order: 0,
  });
  if (chart && chart.canvas === canvas) {
    chart.data.labels = labels;
    chart.data.datasets.forEach((d, i) => (d.data = datasets[i].data));
    chart.update("none");
    return;
  }
  if (chart) chart.destroy();
  chart = new Chart(canvas, {
    type: "bar",
    data: { labels, datasets },
    options: {
      animation: false,
      maintainAspectRatio: false,
      scales: {
        x: { stacked: true },
        y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "per interval" } },
        total: {
          position: "right",
          beginAtZero: true,
          grid: { drawOnChartArea: false },
          ticks: { precision: 0 },
          title: { display: true, text: "finished so far" },
        },
      },
      plugins: {
        title: { display: true, text: `executions per ${timeline.bucketSeconds} s` },
        legend: { position: "bottom" },
      },
    },
  });
}

document.addEventListener("alpine:init", () => {
  Alpine.data("dashboard", () => ({
    statuses: STATUSES,
    jobs: [],
    connection: "connecting",
    selectedId: null,
    detail: null,
    executions: [],
    matching: 0,
    statusFilter: "",
    thingFilter: "",
    historyOf: null,
    history: null,
    seen: {}, // the selected job's stream entry, as JSON, when it was last read
    loading: false,
    again: false,

    init() {
      const wanted = new URLSearchParams(location.hash.slice(1)).get("job");
      if (wanted) this.select(wanted);
      this.listen();
    },

    listen() {
      const events = new EventSource(STREAM);
      events.onopen = () => (this.connection = "live");
      events.onerror = () => (this.connection = "reconnecting"); // EventSource retries by itself
      events.addEventListener("jobs", (message) => {
        this.connection = "live";
        this.jobs = JSON.parse(message.data).jobs;
        const entry = this.jobs.find((j) => j.jobId === this.selectedId);
        if (entry && JSON.stringify(entry) !== this.seen[entry.jobId]) {
          this.seen[entry.jobId] = JSON.stringify(entry);
          this.refresh();
        }
      });
    },

    connectionText() {
      return { live: "live", connecting: "connecting…", reconnecting: "reconnecting…" }[this.connection];
    },

    select(jobId) {
      if (jobId === this.selectedId) return;
      this.selectedId = jobId;
      this.detail = null;
      this.executions = [];
      this.historyOf = null;
      this.seen = {};
      window.history.replaceState(null, "", `#job=${encodeURIComponent(jobId)}`);
      this.refresh();
    },

    // One refresh at a time; a change that arrives meanwhile triggers one more afterwards.
    async refresh() {
      if (this.loading) {
        this.again = true;
        return;
      }
      this.loading = true;
      try {
        do {
          this.again = false;
          const jobId = this.selectedId;
          const detail = await getJson(`${API}/jobs/${encodeURIComponent(jobId)}`);
          if (jobId !== this.selectedId) continue;
          this.detail = detail;
          await this.$nextTick();
          drawTimeline(detail.timeline);
          await this.loadExecutions();
        } while (this.again);
      } catch (error) {
        console.warn("dashboard refresh failed", error);
      } finally {
        this.loading = false;
      }
    },

    async loadExecutions() {
      const jobId = this.selectedId;
      const query = new URLSearchParams({ limit: "100" });
      if (this.statusFilter) query.set("status", this.statusFilter);
      if (this.thingFilter.trim()) query.set("thing", this.thingFilter.trim());
      const page = await getJson(`${API}/jobs/${encodeURIComponent(jobId)}/executions?${query}`);
      if (jobId !== this.selectedId) return;
      this.executions = page.executions;
      this.matching = page.matching;
      if (this.historyOf) {
        const now = page.executions.find((e) => e.thingName === this.historyOf.thingName);
        if (now && now.versionNumber !== this.historyOf.versionNumber) this.showHistory(now);
      }
    },

    // The execution history extension operation; where it is not served (404) or fails, the panel says so.
    async showHistory(execution) {
      this.historyOf = execution;
      this.history = null;
      const path = `/_iotjobs/things/${encodeURIComponent(execution.thingName)}/jobs/${encodeURIComponent(
        this.selectedId,
      )}/history`;
      let entries = [];
      try {
        entries = (await getJson(path)).history || [];
      } catch (error) {
        entries = [];
      }
      if (this.historyOf === execution) this.history = entries;
    },

    failed(job) {
      return (job.byStatus.FAILED || 0) + (job.byStatus.REJECTED || 0) + (job.byStatus.TIMED_OUT || 0);
    },

    barStyle(job) {
      const total = Math.max(job.progress.total, 1);
      return `width: ${(100 * job.progress.done) / total}%`;
    },

    rolloutLimit() {
      const config = this.detail.job.rolloutConfig || {};
      if (config.maximumPerMinute) return `${config.maximumPerMinute} per minute`;
      if (config.exponentialRate) return `exponential from ${config.exponentialRate.baseRatePerMinute} per minute`;
      return "none";
    },

    time(epochSeconds) {
      return epochSeconds == null ? "" : new Date(epochSeconds * 1000).toLocaleTimeString();
    },
  }));
});
