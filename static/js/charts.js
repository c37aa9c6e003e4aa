// uPlot charts: the CPU sparkline, the instance chart (CPU, memory, scaling markers
// and the level as a step line) and the backtest's two level paths.
import uPlot from "../vendor/uPlot.esm.js";
import { h, time, capacity } from "./dom.js";

const secs = (iso) => new Date(iso).getTime() / 1000;
const css = (name, fallback) =>
  getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;

/** The level in effect at each x, from level points [{timestamp, level}]. */
function levelsAt(xs, levels) {
  const pts = levels.map((l) => [secs(l.timestamp), l.level]);
  let i = 0;
  return xs.map((x) => {
    while (i + 1 < pts.length && pts[i + 1][0] <= x) i++;
    return pts.length ? pts[i][1] : null;
  });
}

/** Keeps a chart as wide as its container. */
function fit(chart, container, height) {
  const observer = new ResizeObserver(() => {
    const width = Math.max(200, container.clientWidth);
    if (Math.abs(width - chart.width) > 1) chart.setSize({ width, height });
  });
  observer.observe(container);
  return () => observer.disconnect();
}

/** A CPU sparkline (average per bucket) in `container`. */
export function sparkline(container, series) {
  const xs = series.points.map((p) => secs(p.timestamp));
  const ys = series.points.map((p) => p.cpu_avg);
  const from = secs(series.from);
  const to = secs(series.to);
  const opts = {
    width: Math.max(120, container.clientWidth || 160),
    height: 40,
    cursor: { show: false },
    legend: { show: false },
    select: { show: false },
    scales: { x: { time: true, range: () => [from, to] }, y: { range: [0, 100] } },
    axes: [{ show: false }, { show: false }],
    series: [{}, { stroke: css("--cpu", "#2563eb"), width: 1.5, fill: "rgba(37,99,235,0.12)" }],
  };
  container.replaceChildren();
  const chart = new uPlot(opts, [xs, ys], container);
  const stop = fit(chart, container, 40);
  return () => {
    stop();
    chart.destroy();
  };
}

/** Series data with nulls where buckets are missing, so lines break over gaps. */
function withGaps(series) {
  const xs = [];
  const cols = [[], [], []];
  // A gap is a pause well beyond the usual spacing of buckets (sparse samples,
  // e.g. a simulation every 30 s on 5 s buckets, still draw as one line).
  const spacing = series.points.slice(1).map((p, i) => secs(p.timestamp) - secs(series.points[i].timestamp)).sort((a, b) => a - b);
  const typical = spacing.length ? spacing[Math.floor(spacing.length / 2)] : series.step;
  const step = Math.max(series.step, typical) * 2;
  series.points.forEach((p, i) => {
    const x = secs(p.timestamp);
    xs.push(x);
    cols[0].push(p.cpu_avg);
    cols[1].push(p.cpu_max);
    cols[2].push(p.memory_avg);
    const next = series.points[i + 1];
    if (next && secs(next.timestamp) - x > step * 1.5) {
      xs.push(x + series.step);
      cols.forEach((c) => c.push(null));
    }
  });
  return { xs, cols };
}

/**
 * The instance chart. Returns {update(series), destroy()}: update redraws with new
 * data in place, so the 15 s refresh does not flicker.
 */
export function instanceChart(container) {
  let current = null;
  let chart = null;
  let stopFit = () => {};
  const markers = h("div", { class: "markers" });

  /** One marker per cluster of actions a few pixels apart, its tooltip listing each. */
  function placeMarkers(u) {
    markers.replaceChildren();
    if (!current) return;
    const width = u.over.clientWidth;
    markers.style.setProperty("--plot-height", `${u.over.clientHeight}px`);
    const groups = [];
    for (const d of current.decisions) {
      const x = u.valToPos(secs(d.timestamp), "x");
      if (!(x >= 0 && x <= u.over.clientWidth)) continue;
      const last = groups.at(-1);
      if (last && x - last.x < 12) last.items.push(d);
      else groups.push({ x, items: [d] });
    }
    for (const { x, items } of groups) {
      const ups = items.filter((d) => d.decision === "scale_up").length;
      const downs = items.length - ups;
      const symbol = downs === 0 ? "▲" : ups === 0 ? "▼" : "◆";
      const kinds = [ups ? "scale_up" : "", downs ? "scale_down" : ""].join(" ").trim();
      const describe = (d) => {
        const levels = d.level_before != null && d.level_after != null ? ` (level ${d.level_before} → ${d.level_after})` : "";
        const dry = d.dry_run ? " — dry run, not applied" : "";
        return `${d.decision === "scale_up" ? "Scale up" : "Scale down"} at ${time(d.timestamp)}${levels}: ${d.reason}${dry}`;
      };
      const label =
        items.length === 1
          ? `${items[0].decision === "scale_up" ? "Scale up" : "Scale down"} at ${time(items[0].timestamp)}`
          : `${items.length} scaling actions from ${time(items[0].timestamp)}`;
      const tipId = `tip-${items[0].id}`;
      markers.append(
        h(
          "button",
          {
            type: "button",
            class: `marker ${kinds}${items.every((d) => d.dry_run) ? " dry-run" : ""} ${x > width * 0.6 ? "end" : x < width * 0.4 ? "start" : ""}`,
            style: `left:${x}px`,
            "aria-label": label,
            "aria-describedby": tipId,
          },
          h("span", { "aria-hidden": "true" }, symbol),
          h("span", { class: "tip", role: "tooltip", id: tipId }, items.map((d) => h("span", { class: "tip-line" }, describe(d)))),
        ),
      );
    }
  }

  function data(series) {
    const { xs, cols } = withGaps(series);
    // The level line spans the whole range: add its change points and the ends.
    const extra = [secs(series.from), secs(series.to), ...series.levels.map((l) => secs(l.timestamp))];
    const all = [...new Set([...xs, ...extra])].sort((a, b) => a - b);
    const index = new Map(xs.map((x, i) => [x, i]));
    const pick = (col) =>
      all.map((x) => (index.has(x) ? col[index.get(x)] : undefined)); // undefined: joined, not a gap
    return [all, pick(cols[0]), pick(cols[1]), pick(cols[2]), levelsAt(all, series.levels)];
  }

  function create(series) {
    const maxLevel = Math.max(3, ...series.levels.map((l) => l.level)) + 1;
    const opts = {
      width: Math.max(280, container.clientWidth),
      height: 320,
      scales: {
        x: { time: true, range: () => [secs(current.from), secs(current.to)] },
        pct: { range: [0, 100] },
        level: { range: () => [0, maxLevel] },
      },
      series: [
        { value: (u, v) => (v == null ? "—" : time(new Date(v * 1000).toISOString())) },
        { label: "CPU avg", scale: "pct", stroke: css("--cpu", "#2563eb"), width: 2, value: (u, v) => (v == null ? "—" : `${v.toFixed(1)} %`) },
        { label: "CPU max", scale: "pct", stroke: css("--cpu", "#2563eb"), width: 1, dash: [4, 4], value: (u, v) => (v == null ? "—" : `${v.toFixed(1)} %`) },
        { label: "Memory avg", scale: "pct", stroke: css("--mem", "#16a34a"), width: 2, value: (u, v) => (v == null ? "—" : `${v.toFixed(1)} %`) },
        {
          label: "Level",
          scale: "level",
          stroke: css("--level", "#9333ea"),
          width: 2,
          paths: uPlot.paths.stepped({ align: 1 }),
          points: { show: false },
          value: (u, v) => (v == null ? "—" : `${v} (capacity ${capacity(v).toFixed(1)} %)`),
        },
      ],
      axes: [
        {},
        { scale: "pct", label: "CPU / memory %", size: 50 },
        { scale: "level", side: 1, label: "Level", grid: { show: false }, incrs: [1], size: 40 },
      ],
      hooks: { draw: [placeMarkers] },
    };
    container.replaceChildren();
    chart = new uPlot(opts, data(series), container);
    chart.over.append(markers);
    stopFit = fit(chart, container, 320);
    chart.root.querySelector("canvas")?.setAttribute("aria-hidden", "true");
  }

  return {
    update(series) {
      const rescale = !current || current.from !== series.from;
      const levelChange = current && Math.max(...series.levels.map((l) => l.level)) !== Math.max(...current.levels.map((l) => l.level));
      current = series;
      if (!chart || levelChange) {
        if (chart) {
          stopFit();
          chart.destroy();
        }
        create(series);
      } else {
        chart.setData(data(series), rescale || true);
      }
    },
    destroy() {
      stopFit();
      chart?.destroy();
      chart = null;
    },
  };
}

/** The backtest chart: the actual level path and the candidate's, as step lines. */
export function backtestChart(container, from, to, actual, candidate) {
  const f = secs(from);
  const t = secs(to);
  const all = [...new Set([f, t, ...actual.map((l) => secs(l.timestamp)), ...candidate.map((l) => secs(l.timestamp))])]
    .filter((x) => x >= f && x <= t)
    .sort((a, b) => a - b);
  const maxLevel = Math.max(3, ...actual.map((l) => l.level), ...candidate.map((l) => l.level)) + 1;
  const stepped = uPlot.paths.stepped({ align: 1 });
  const opts = {
    width: Math.max(280, container.clientWidth),
    height: 240,
    scales: { x: { time: true, range: () => [f, t] }, level: { range: () => [0, maxLevel] } },
    series: [
      { value: (u, v) => (v == null ? "—" : time(new Date(v * 1000).toISOString())) },
      { label: "Actual level", scale: "level", stroke: css("--level", "#9333ea"), width: 2, paths: stepped, points: { show: false } },
      { label: "Candidate level", scale: "level", stroke: css("--candidate", "#ea580c"), width: 2, dash: [6, 4], paths: stepped, points: { show: false } },
    ],
    axes: [{}, { scale: "level", label: "Level", incrs: [1], size: 40 }],
  };
  container.replaceChildren();
  const chart = new uPlot(opts, [all, levelsAt(all, actual), levelsAt(all, candidate)], container);
  const stop = fit(chart, container, 240);
  return () => {
    stop();
    chart.destroy();
  };
}
