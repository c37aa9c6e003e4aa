// The fleet (every instance with a CPU sparkline) and registering an instance.
import { api, seg } from "./api.js";
import { h, field, say, busy, time, num } from "./dom.js";
import { sparkline } from "./charts.js";
import { fleetTargetBadge } from "./target.js";

const REFRESH_MS = 15000;

export function badge(text, kind) {
  return h("span", { class: `badge ${kind || ""}` }, text);
}

export async function fleetPage(main) {
  const status = h("p", { class: "msg", role: "status" });
  const list = h("ul", { class: "fleet", "aria-label": "Instances" });
  main.replaceChildren(
    h("div", { class: "title-row" }, h("h1", {}, "Fleet"), h("a", { class: "button", href: "#/register" }, "Register an instance")),
    status,
    list,
  );
  const sparks = new Map();
  async function load() {
    let instances;
    try {
      ({ instances } = await api("GET", "/api/instances/"));
      say(status, "");
    } catch (e) {
      say(status, e.message);
      return;
    }
    if (!instances.length) {
      list.replaceChildren(h("li", { class: "empty" }, "No instances yet. ", h("a", { href: "#/register" }, "Register one"), "."));
      return;
    }
    for (const stop of sparks.values()) stop();
    sparks.clear();
    list.replaceChildren(...instances.map(card));
    for (const inst of instances) {
      const box = list.querySelector(`[data-spark="${CSS.escape(inst.instance_id)}"]`);
      api("GET", `/api/metrics/${seg(inst.instance_id)}/series`)
        .then((series) => {
          if (!box.isConnected) return;
          if (!series.points.length) return void (box.textContent = "No samples in the last hour");
          sparks.set(inst.instance_id, sparkline(box, series));
          box.setAttribute("aria-label", `CPU over the last hour, latest ${num(series.points.at(-1).cpu_avg)} %`);
        })
        .catch((e) => (box.textContent = e.message));
    }
  }
  await load();
  const timer = setInterval(load, REFRESH_MS);
  return () => {
    clearInterval(timer);
    for (const stop of sparks.values()) stop();
  };
}

function card(inst) {
  const mode = inst.policy_mode || "enforce";
  return h(
    "li",
    { class: "card instance" },
    h("h2", {}, h("a", { href: `#/instance/${encodeURIComponent(inst.instance_id)}` }, inst.instance_id)),
    h(
      "p",
      { class: "badges" },
      badge(inst.is_mock ? "mock" : "real", inst.is_mock ? "mock" : "real"),
      badge(inst.is_monitoring ? "monitoring" : "not monitored", inst.is_monitoring ? "on" : "off"),
      badge(`policy: ${mode}`, mode === "dry_run" ? "dry" : ""),
      fleetTargetBadge(inst),
    ),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Type"), h("dd", {}, inst.instance_type),
      h("dt", {}, "Region"), h("dd", {}, inst.region),
      h("dt", {}, "Level"), h("dd", {}, `${inst.current_scale_level} (capacity ${num(inst.cpu_capacity)} %)`),
      inst.recommended_scale_level != null ? [h("dt", {}, "Recommended"), h("dd", {}, `level ${inst.recommended_scale_level}`)] : null,
      h("dt", {}, "Last collection"), h("dd", {}, time(inst.last_collected_at)),
      inst.last_collection_error ? [h("dt", {}, "Collection error"), h("dd", { class: "error-text" }, inst.last_collection_error)] : null,
    ),
    h("p", { class: "muted small spark-caption" }, "CPU, last hour (0–100 %)"),
    h("div", { class: "spark", "data-spark": inst.instance_id, role: "img", "aria-label": "CPU over the last hour" }, h("span", { class: "muted" }, "Loading CPU…")),
  );
}

export function registerPage(main) {
  const id = field("Instance id", h("input", { name: "instance_id", required: true, autocomplete: "off", placeholder: "mock-web-1" }), "A mock id, or a real EC2 id such as i-0abc12345678def90.");
  const type = field("Instance type", h("input", { name: "instance_type", required: true, value: "t2.micro" }));
  const region = field("Region", h("input", { name: "region", required: true, value: "mock" }), "An AWS region such as us-east-1 for a real instance.");
  const mock = h("input", { type: "checkbox", name: "is_mock", id: "is_mock", checked: true });
  const message = h("p", { class: "msg", role: "alert" });
  const submit = h("button", { type: "submit" }, "Register");
  const form = h(
    "form",
    { class: "card narrow", novalidate: true },
    id.wrap, type.wrap, region.wrap,
    h("div", { class: "field check" }, mock, h("label", { for: "is_mock" }, "Mock instance (generated metrics, no AWS account needed)")),
    submit, message,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    say(message, "");
    busy(submit, async () => {
      try {
        const body = {
          instance_id: id.input.value.trim(),
          instance_type: type.input.value.trim(),
          region: region.input.value.trim(),
          is_mock: mock.checked,
        };
        const { instance } = await api("POST", "/api/instances/", body);
        location.hash = `#/instance/${encodeURIComponent(instance.instance_id)}`;
      } catch (err) {
        say(message, err.message);
      }
    });
  });
  main.replaceChildren(h("h1", {}, "Register an instance"), form);
  id.input.focus();
}
