// The instance's scaling policy (GET/PUT/DELETE /api/instances/<id>/policy) and the
// backtest of a candidate policy (POST /api/instances/<id>/backtest).
import { api, seg } from "./api.js";
import { h, field, say, busy, time, num } from "./dom.js";
import { backtestChart } from "./charts.js";

const FIELDS = [
  ["scale_up_cpu_above", "Scale up: CPU above (%)", "any"],
  ["scale_up_memory_above", "Scale up: memory above (%)", "any"],
  ["scale_down_cpu_below", "Scale down: CPU below (%)", "any"],
  ["scale_down_memory_below", "Scale down: memory below (%)", "any"],
  ["sustained_ratio", "Sustained ratio (0–1)", "any"],
  ["window_minutes", "Window (minutes)", "1"],
  ["min_samples", "Minimum samples", "1"],
  ["iqr_multiplier", "IQR multiplier", "any"],
  ["votes_needed", "Votes needed", "1"],
  ["cooldown_seconds", "Cooldown (seconds)", "1"],
  ["min_level", "Minimum level", "1"],
  ["max_level", "Maximum level", "1"],
];

// The policy form's current values, which the backtest tries as its candidate.
let candidate = () => ({});

export function policySection(instanceId) {
  const base = `/api/instances/${seg(instanceId)}/policy`;
  const inputs = new Map();
  const errors = new Map();
  const mode = field("Mode", h("select", { name: "mode" }, h("option", { value: "enforce" }, "enforce: act on decisions"), h("option", { value: "dry_run" }, "dry run: record, do not act")));
  inputs.set("mode", mode.input);
  errors.set("mode", mode.error);
  const wraps = [mode.wrap];
  for (const [name, label, step] of FIELDS) {
    const f = field(label, h("input", { type: "number", name, step, inputmode: "decimal" }));
    inputs.set(name, f.input);
    errors.set(name, f.error);
    wraps.push(f.wrap);
  }
  const state = h("p", { class: "muted", id: "policy-state" });
  const message = h("p", { class: "msg", role: "status", id: "policy-message" });
  const save = h("button", { type: "submit", id: "policy-save" }, "Save policy");
  const reset = h("button", { type: "button", id: "policy-reset", class: "secondary" }, "Reset to defaults");
  const form = h("form", { class: "grid-form", novalidate: true, id: "policy-form" }, wraps, h("div", { class: "form-actions" }, save, reset), message);

  function values() {
    const out = {};
    for (const [name, input] of inputs) {
      if (name === "mode") out.mode = input.value;
      else if (input.value.trim() !== "") out[name] = Number(input.value);
    }
    return out;
  }
  candidate = values;

  function clearErrors() {
    for (const [name, el] of errors) {
      el.textContent = "";
      inputs.get(name).removeAttribute("aria-invalid");
    }
  }

  function show(body) {
    const p = body.policy || {};
    for (const [name, input] of inputs) if (p[name] !== undefined) input.value = String(p[name]);
    state.textContent = body.is_default ? "This instance uses the default policy." : "This instance has its own policy.";
  }

  /** A 400 names its field first: show the message beside that field. */
  function fail(err) {
    const name = (err.message.match(/^([a-z_]+)/) || [])[1];
    if (err.status === 400 && errors.has(name)) {
      errors.get(name).textContent = err.message;
      inputs.get(name).setAttribute("aria-invalid", "true");
      inputs.get(name).focus();
      say(message, `Not saved: ${err.message}`);
    } else {
      say(message, err.message);
    }
  }

  async function load() {
    try {
      show(await api("GET", base));
      say(message, "");
    } catch (err) {
      say(message, `The policy could not be loaded: ${err.message}`);
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    clearErrors();
    say(message, "");
    busy(save, async () => {
      try {
        show(await api("PUT", base, values()));
        say(message, "Policy saved.", "ok");
      } catch (err) {
        fail(err);
      }
    });
  });
  reset.addEventListener("click", () =>
    busy(reset, async () => {
      clearErrors();
      try {
        show(await api("DELETE", base));
        say(message, "Policy reset to the defaults.", "ok");
      } catch (err) {
        fail(err);
      }
    }),
  );
  load();
  return h("section", { class: "card", "aria-labelledby": "policy-h", id: "policy" }, h("h2", { id: "policy-h" }, "Scaling policy"), state, form);
}

const SPANS = [
  ["1h", "1 h", 3600],
  ["6h", "6 h", 6 * 3600],
  ["24h", "24 h", 86400],
  ["7d", "7 d", 7 * 86400],
];

function duration(seconds) {
  if (typeof seconds !== "number") return "—";
  const h_ = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.round(seconds % 60);
  return h_ ? `${h_} h ${m} min` : m ? `${m} min ${s} s` : `${s} s`;
}

function summaryTable(baseline, summary) {
  const levels = [...new Set([...Object.keys(baseline.seconds_at_level || {}), ...Object.keys(summary.seconds_at_level || {})])].sort((a, b) => a - b);
  const rows = [
    ["Scale ups", (s) => String(s.scale_ups)],
    ["Scale downs", (s) => String(s.scale_downs)],
    ["Final level", (s) => String(s.final_level)],
    ["Highest level", (s) => String(s.max_level_reached)],
    ["Capacity hours", (s) => num(s.capacity_hours, 2)],
    ["Time overloaded", (s) => duration(s.overload_seconds)],
    ...levels.map((l) => [`Time at level ${l}`, (s) => duration((s.seconds_at_level || {})[l] ?? 0)]),
  ];
  return h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Backtest summaries" },
    h("table", { class: "summary", id: "backtest-summary" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, ""), h("th", { scope: "col" }, "Current policy"), h("th", { scope: "col" }, "Candidate policy"))),
      h("tbody", {}, rows.map(([label, f]) => h("tr", {}, h("th", { scope: "row" }, label), h("td", {}, f(baseline)), h("td", {}, f(summary)))))),
  );
}

export function backtestSection(instanceId, currentInstance) {
  const path = seg(instanceId);
  let span = "24h";
  const spans = h(
    "fieldset",
    { class: "ranges" },
    h("legend", {}, "Span (ending now)"),
    SPANS.map(([key, label]) => {
      const id = `bt-span-${key}`;
      return h("span", { class: "range" }, h("input", { type: "radio", name: "bt-span", id, value: key, checked: key === span, onchange: () => (span = key) }), h("label", { for: id }, label));
    }),
  );
  const start = field("Start level", h("input", { type: "number", name: "start_level", min: "1", step: "1" }), "Empty: the level the instance had at the start.");
  const run = h("button", { type: "submit", id: "backtest-run" }, "Run backtest");
  const message = h("p", { class: "msg", role: "status", id: "backtest-message" });
  const chartBox = h("div", { class: "chart", id: "backtest-chart" });
  const results = h("div", { id: "backtest-results" });
  let stopChart = () => {};
  const form = h("form", { class: "grid-form", novalidate: true }, spans, start.wrap, h("div", { class: "form-actions" }, run), message);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    say(message, "");
    busy(run, async () => {
      const seconds = SPANS.find(([k]) => k === span)[2];
      const to = new Date();
      const from = new Date(to.getTime() - seconds * 1000);
      const body = { policy: candidate(), from: from.toISOString(), to: to.toISOString() };
      if (start.input.value.trim() !== "") body.start_level = Number(start.input.value);
      say(message, "Running the backtest…", "info");
      try {
        const [result, series] = await Promise.all([
          api("POST", `/api/instances/${path}/backtest`, body),
          api("GET", `/api/metrics/${path}/series?from=${body.from}&to=${body.to}`),
        ]);
        const first = body.start_level ?? result.actions[0]?.level_before ?? series.levels[0]?.level ?? currentInstance()?.current_scale_level ?? 1;
        const path_ = [{ timestamp: result.from, level: first }, ...result.actions.filter((a) => a.level_after !== a.level_before).map((a) => ({ timestamp: a.timestamp, level: a.level_after }))];
        stopChart();
        results.replaceChildren(
          h("h3", {}, "Level paths"),
          chartBox,
          h("h3", {}, "Summaries"),
          summaryTable(result.baseline, result.summary),
          h("h3", {}, `Candidate actions (${result.actions.length}${result.actions_truncated ? ", truncated" : ""})`),
          result.actions.length
            ? h("ol", { class: "actions-list" }, result.actions.map((a) => h("li", {}, `${time(a.timestamp)}: ${a.decision.replace("_", " ")} ${a.level_before} → ${a.level_after}. ${a.reason}`)))
            : h("p", { class: "muted" }, "The candidate policy takes no action over this span."),
        );
        stopChart = backtestChart(chartBox, result.from, result.to, series.levels, path_);
        say(message, `Replayed ${result.ticks} ticks of ${result.interval_seconds} s.`, "ok");
      } catch (err) {
        say(message, err.message);
      }
    });
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "backtest-h", id: "backtest" },
    h("h2", { id: "backtest-h" }, "Backtest"),
    h("p", { class: "muted" }, "Replays the stored metrics with the policy form's values (saved or not) and compares them with the current policy."),
    form,
    results,
  );
}
