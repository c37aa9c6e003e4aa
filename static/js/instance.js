// One instance: its facts, the series chart with scaling markers, monitoring,
// simulated load, deletion, the scale target, the decisions, the policy and the
// backtest.
import { api, seg } from "./api.js";
import { h, field, say, busy, time, num, zone } from "./dom.js";
import { instanceChart } from "./charts.js";
import { badge } from "./fleet.js";
import { policySection, backtestSection } from "./policy.js";
import { targetSection, fleetTargetBadge } from "./target.js";

const REFRESH_MS = 15000;
const RANGES = [
  ["1h", "1 h", 3600],
  ["6h", "6 h", 6 * 3600],
  ["24h", "24 h", 24 * 3600],
  ["7d", "7 d", 7 * 86400],
];

export async function instancePage(main, instanceId) {
  const path = seg(instanceId);
  const title = h("h1", {}, instanceId);
  const facts = h("div", { class: "card facts-card", "aria-live": "polite" }, h("p", { class: "loading" }, "Loading…"));
  const actionsMsg = h("p", { class: "msg", role: "alert" });
  const monitorBtn = h("button", { type: "button", id: "monitor-toggle" }, "…");
  const deleteBtn = h("button", { type: "button", id: "delete-instance", class: "danger" }, "Delete instance");
  let instance = null;

  // The chart and its range.
  let range = "1h";
  const rangeGroup = h(
    "fieldset",
    { class: "ranges" },
    h("legend", {}, "Range"),
    RANGES.map(([key, label]) => {
      const id = `range-${key}`;
      return h(
        "span",
        { class: "range" },
        h("input", { type: "radio", name: "range", id, value: key, checked: key === range, onchange: () => ((range = key), loadSeries()) }),
        h("label", { for: id }, label),
      );
    }),
  );
  const chartBox = h("div", { class: "chart", id: "series-chart" });
  const chartMsg = h("p", { class: "msg", role: "status" }, "Loading the chart…");
  const chart = instanceChart(chartBox);
  const target = targetSection(instanceId, () => loadInstance());

  // Decisions.
  const decisionsBody = h("tbody");
  const decisionsMsg = h("p", { class: "msg", role: "status" });
  const decisionsTable = h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Scaling decisions" },
    h("table", { class: "decisions" }, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Time"), h("th", { scope: "col" }, "Decision"), h("th", { scope: "col" }, "Reason"), h("th", { scope: "col" }, "Level"), h("th", { scope: "col" }, "CPU / memory"))), decisionsBody),
  );

  main.replaceChildren(
    h("p", {}, h("a", { href: "#/" }, "← Fleet")),
    title,
    facts,
    h("div", { class: "actions" }, monitorBtn, deleteBtn),
    actionsMsg,
    h("section", { class: "card", "aria-labelledby": "chart-h" }, h("h2", { id: "chart-h" }, "CPU, memory and level"), rangeGroup, chartMsg, chartBox,
      h("p", { class: "muted small" }, `▲ scale up, ▼ scale down, ◆ both: hover or focus a marker for the reasons. The level is the step line (right axis). Times in ${zone}.`)),
    target.el,
    simulateSection(instanceId, () => refresh()),
    h("section", { class: "card", "aria-labelledby": "decisions-h" }, h("h2", { id: "decisions-h" }, "Decisions"), decisionsMsg, decisionsTable),
    policySection(instanceId),
    backtestSection(instanceId, () => instance),
  );

  async function loadInstance() {
    try {
      const { instances } = await api("GET", "/api/instances/");
      instance = instances.find((i) => i.instance_id === instanceId) || null;
      if (!instance) {
        facts.replaceChildren(h("p", { class: "msg error" }, "Instance not found. It may have been deleted."));
        monitorBtn.disabled = deleteBtn.disabled = true;
        return;
      }
      renderFacts(instance);
    } catch (e) {
      facts.replaceChildren(h("p", { class: "msg error" }, e.message));
    }
  }

  function renderFacts(i) {
    const mode = i.policy_mode || "enforce";
    facts.replaceChildren(
      h("p", { class: "badges" },
        badge(i.is_mock ? "mock" : "real", i.is_mock ? "mock" : "real"),
        badge(i.is_monitoring ? "monitoring" : "not monitored", i.is_monitoring ? "on" : "off"),
        badge(`policy: ${mode}`, mode === "dry_run" ? "dry" : ""),
        fleetTargetBadge(i)),
      h("dl", { class: "facts" },
        h("dt", {}, "Type"), h("dd", {}, i.instance_type),
        h("dt", {}, "Region"), h("dd", {}, i.region),
        h("dt", {}, "Level"), h("dd", { id: "current-level" }, `${i.current_scale_level} (capacity ${num(i.cpu_capacity)} %)`),
        i.recommended_scale_level != null ? [h("dt", {}, "Recommended level"), h("dd", {}, String(i.recommended_scale_level))] : null,
        h("dt", {}, "Registered"), h("dd", {}, time(i.created_at)),
        h("dt", {}, "Last collection"), h("dd", {}, time(i.last_collected_at)),
        h("dt", {}, "Collection error"), h("dd", { class: i.last_collection_error ? "error-text" : "" }, i.last_collection_error || "none")),
    );
    monitorBtn.textContent = i.is_monitoring ? "Stop monitoring" : "Start monitoring";
    monitorBtn.disabled = false;
    deleteBtn.disabled = false;
  }

  async function loadSeries() {
    const seconds = RANGES.find(([k]) => k === range)[2];
    const to = new Date();
    const from = new Date(to.getTime() - seconds * 1000);
    try {
      const series = await api("GET", `/api/metrics/${path}/series?from=${from.toISOString()}&to=${to.toISOString()}`);
      chart.update(series);
      const n = series.points.reduce((a, p) => a + p.samples, 0);
      say(chartMsg, n ? `${n} samples in ${series.points.length} buckets of ${series.step} s, ${series.decisions.length} scaling actions.` : "No samples in this range yet.", "info");
      chartBox.dataset.points = String(series.points.length);
      chartBox.dataset.decisions = String(series.decisions.length);
    } catch (e) {
      say(chartMsg, e.message);
    }
  }

  async function loadDecisions() {
    try {
      const { decisions } = await api("GET", `/api/metrics/decisions/${path}?limit=50`);
      say(decisionsMsg, decisions.length ? "" : "No decisions yet.", "info");
      decisionsBody.replaceChildren(
        ...decisions.map((d) =>
          h("tr", { class: d.decision },
            h("td", {}, time(d.timestamp)),
            h("td", {}, d.decision.replace("_", " "), d.dry_run ? [" ", badge("dry run", "dry")] : null),
            h("td", {}, d.reason),
            h("td", {}, d.level_before != null && d.level_after != null ? `${d.level_before} → ${d.level_after}` : "—"),
            h("td", {}, `${num(d.cpu_utilization)} % / ${num(d.memory_usage)} %`)),
        ),
      );
    } catch (e) {
      say(decisionsMsg, e.message);
    }
  }

  function refresh() {
    const withTarget = loadInstance().then(() => (instance ? target.update(instance) : undefined));
    return Promise.all([withTarget, loadSeries(), loadDecisions()]);
  }

  monitorBtn.addEventListener("click", () =>
    busy(monitorBtn, async () => {
      say(actionsMsg, "");
      const action = instance?.is_monitoring ? "stop" : "start";
      try {
        const { message } = await api("PATCH", `/api/instances/${path}/monitor/${action}`);
        say(actionsMsg, message, "ok");
      } catch (e) {
        say(actionsMsg, e.message);
      }
      await loadInstance();
    }),
  );
  deleteBtn.addEventListener("click", () =>
    busy(deleteBtn, async () => {
      say(actionsMsg, "");
      if (!window.confirm(`Delete ${instanceId} with all its metrics and decisions?`)) return;
      try {
        const { message } = await api("DELETE", `/api/instances/${path}`);
        say(actionsMsg, message, "ok");
        location.hash = "#/";
      } catch (e) {
        say(actionsMsg, e.message);
      }
    }),
  );

  await refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => {
    clearInterval(timer);
    target.stop();
    chart.destroy();
  };
}

function simulateSection(instanceId, done) {
  const cpu = field("CPU %", h("input", { type: "number", name: "cpu_utilization", min: "0", max: "100", step: "any", value: "95", required: true }));
  const mem = field("Memory %", h("input", { type: "number", name: "memory_usage", min: "0", max: "100", step: "any", value: "50" }), "Leave empty for unknown.");
  const duration = field("Duration (minutes)", h("input", { type: "number", name: "duration_minutes", min: "1", max: "1440", step: "1", value: "10" }), "Leave empty for one sample now.");
  const interval = field("Interval (seconds)", h("input", { type: "number", name: "interval_seconds", min: "1", step: "1", value: "30" }));
  const message = h("p", { class: "msg", role: "status" });
  const submit = h("button", { type: "submit" }, "Simulate load");
  const form = h("form", { class: "grid-form", novalidate: true, "aria-labelledby": "simulate-h" }, cpu.wrap, mem.wrap, duration.wrap, interval.wrap, h("div", { class: "form-actions" }, submit), message);
  const value = (input) => (input.value.trim() === "" ? undefined : Number(input.value));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    say(message, "");
    busy(submit, async () => {
      const body = { instance_id: instanceId, cpu_utilization: value(cpu.input), memory_usage: value(mem.input) };
      if (value(duration.input) !== undefined) {
        body.duration_minutes = value(duration.input);
        body.interval_seconds = value(interval.input);
      }
      try {
        const r = await api("POST", "/api/metrics/simulate", body);
        say(message, r.message, "ok");
        await done();
      } catch (err) {
        say(message, err.message);
      }
    });
  });
  return h("section", { class: "card", "aria-labelledby": "simulate-h" }, h("h2", { id: "simulate-h" }, "Simulate load"), form);
}
