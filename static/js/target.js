// An instance's scale target (GET/PUT/DELETE /api/instances/<id>/target): what it
// is and where it stands, its actuation history, a form to attach or change it and
// a button to detach it. Also the labels the fleet uses for a target.
import { api, seg } from "./api.js";
import { h, field, say, busy, time, when } from "./dom.js";

const KINDS = { aws_asg: "Auto Scaling group", kubernetes: "Kubernetes" };
const STATES = {
  in_sync: ["in sync", "on"],
  pending: ["pending", "busy"],
  converging: ["converging", "busy"],
  blocked: ["blocked", "warn"],
  failed: ["failed", "bad"],
  observing: ["observing only", "dry"],
};
const EVENTS = {
  applied: "applied",
  converged: "converged",
  blocked: "blocked",
  retrying: "retrying",
  failed: "failed",
  drift_adopted: "drift adopted",
  drift_enforced: "drift enforced",
  would_apply: "would apply",
};
const FOLLOW_UP_MS = 3000;
const WORKLOADS = { deployments: "Deployment", statefulsets: "StatefulSet" };

// The API's field names as the form labels them, for the server's messages.
const LABELS = {
  kind: "Kind",
  namespace: "Namespace",
  name: "Workload name",
  resource: "Workload kind",
  group_name: "Group name",
  region: "Region",
  base_capacity: "Base capacity",
  capacities: "Capacities",
  on_drift: "When changed outside",
  mode: "Mode",
};

/** A badge for a target's state (a fleet card, the section). */
export function stateBadge(state) {
  const [text, kind] = STATES[state] || [String(state || "unknown").replace(/_/g, " "), ""];
  return h("span", { class: `badge target-state ${kind}`, "data-state": state || "" }, text);
}

/** "target: Kubernetes · in sync" for a fleet card, or null without a target. */
export function fleetTargetBadge(inst) {
  if (!inst.target_kind) return null;
  const [state, kind] = STATES[inst.actuation_state] || [inst.actuation_state ? inst.actuation_state.replace(/_/g, " ") : "", ""];
  const text = `target: ${KINDS[inst.target_kind] || inst.target_kind}${state ? ` · ${state}` : ""}`;
  return h("span", { class: `badge target-state ${kind}`, "data-target-kind": inst.target_kind, "data-state": inst.actuation_state || "" }, text);
}

/** How people name the target: "Deployment default/web", "Auto Scaling group web (us-east-1)". */
export function describe(t) {
  if (!t) return "";
  if (t.kind === "kubernetes") return `${WORKLOADS[t.resource] || "Deployment"} ${t.namespace}/${t.name}`;
  if (t.kind === "aws_asg") return `Auto Scaling group ${t.group_name} (${t.region})`;
  return String(t.kind);
}

/** The capacity of `level` for base capacity `base`, as the server computes it. */
function baseCapacity(base, level) {
  const value = Math.round(base * 1.5 ** (level - 1) * 1e9) / 1e9;
  return Math.ceil(value);
}

function sizingText(t) {
  if (Array.isArray(t.capacities)) return `${t.capacities.join(", ")} (level 1 first)`;
  if (typeof t.base_capacity === "number") {
    const first = [1, 2, 3, 4].map((l) => baseCapacity(t.base_capacity, l)).join(", ");
    return `base ${t.base_capacity}, 1.5× per level (${first}, …)`;
  }
  return "—";
}

/** The server's message in the form's words: its field names become labels. */
export function humanize(message) {
  let text = String(message || "");
  text = text.replace(/policy's max_level/g, "policy's maximum level").replace(/\bmax_level\b/g, "maximum level");
  const first = (text.match(/^([a-z_]+)\b/) || [])[1];
  if (first && LABELS[first]) text = LABELS[first] + text.slice(first.length);
  text = text.replace(/"apply" or "observe"/, "apply or observe").replace(/"adopt" or "enforce"/, "adopt or enforce");
  text = text.replace(/"deployments" or "statefulsets"/, "Deployment or StatefulSet");
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

/** Which form field a refusal belongs to (null: the form as a whole). */
function fieldOf(err, kind) {
  const first = (err.message.match(/^([a-z_]+)\b/) || [])[1];
  if (first && LABELS[first]) return first;
  const nameField = kind === "aws_asg" ? "group_name" : "name";
  // The live check: "Deployment default/web does not exist", "... does not carry the
  // annotation ...", "... belongs to another user"; 409: another instance drives it.
  if (err.status === 409) return nameField;
  if (/^Kubernetes is not configured/.test(err.message)) return "kind";
  if (err.status === 400 && /^(Deployment|StatefulSet|Auto Scaling group) /.test(err.message)) return nameField;
  return null;
}

/**
 * The section. `onChange` runs after an attach or detach (the page reloads the
 * instance). Returns {el, update(instance), stop()}: `update` is the refresh
 * loop's call, with the instance from the list (its `target_kind` says whether to
 * ask); `stop` ends the follow-up timer when the page goes.
 */
export function targetSection(instanceId, onChange = () => {}) {
  const base = `/api/instances/${seg(instanceId)}/target`;
  const heading = h("h2", { id: "target-h", tabindex: "-1" }, "Scale target");
  const summary = h("div", { id: "target-summary" }, h("p", { class: "loading" }, "Loading…"));
  // What a screen reader hears when the target's state or capacity changes: one
  // sentence, not the whole list of facts on every refresh.
  const live = h("p", { class: "sr-only", "aria-live": "polite", id: "target-live" });
  const message = h("p", { class: "msg", role: "status", id: "target-message" });
  const historyMsg = h("p", { class: "msg", role: "status" });
  const historyBody = h("tbody");
  const history = h(
    "div",
    { id: "target-history", hidden: true },
    h("h3", {}, "Actuation history"),
    historyMsg,
    h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Actuation history" },
      h("table", { class: "actuations" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Time"), h("th", { scope: "col" }, "Event"), h("th", { scope: "col" }, "Capacity"), h("th", { scope: "col" }, "What happened"))),
        historyBody)),
  );

  // The form.
  const inputs = new Map();
  const errors = new Map();
  const wraps = new Map();
  const add = (name, f) => {
    inputs.set(name, f.input);
    errors.set(name, f.error);
    wraps.set(name, f.wrap);
    return f.wrap;
  };
  const kind = field("Kind", h("select", { name: "kind" },
    h("option", { value: "kubernetes" }, "Kubernetes"),
    h("option", { value: "aws_asg" }, "Auto Scaling group")), "A Kubernetes Deployment or StatefulSet, or an AWS Auto Scaling group.");
  const namespace = field("Namespace", h("input", { name: "namespace", value: "default", autocomplete: "off", spellcheck: "false" }));
  const name = field("Workload name", h("input", { name: "name", autocomplete: "off", spellcheck: "false", placeholder: "web" }), "It needs the annotation autoscaler/managed: \"true\".");
  const resource = field("Workload kind", h("select", { name: "resource" }, h("option", { value: "deployments" }, "Deployment"), h("option", { value: "statefulsets" }, "StatefulSet")));
  const group = field("Group name", h("input", { name: "group_name", autocomplete: "off", spellcheck: "false", placeholder: "web-asg" }), "It needs the tag autoscaler:managed = true.");
  const region = field("Region", h("input", { name: "region", autocomplete: "off", spellcheck: "false", placeholder: "us-east-1" }));
  let sizing = "base";
  const sizingGroup = h(
    "fieldset",
    { class: "ranges", id: "target-sizing" },
    h("legend", {}, "Capacity per level"),
    [["base", "Base capacity, 1.5× per level"], ["list", "A capacity for each level"]].map(([key, label]) => {
      const id = `target-sizing-${key}`;
      return h("span", { class: "range" },
        h("input", { type: "radio", name: "target-sizing", id, value: key, checked: key === sizing, onchange: () => ((sizing = key), toggle()) }),
        h("label", { for: id }, label));
    }),
  );
  const baseCap = field("Base capacity", h("input", { type: "number", name: "base_capacity", min: "1", step: "1", inputmode: "numeric", value: "1" }), "Machines or replicas at level 1.");
  const capacities = field("Capacities", h("input", { name: "capacities", autocomplete: "off", inputmode: "numeric", placeholder: "1, 2, 3, 5, 8, 12, 18, 27, 40, 60" }), "Level 1 first, separated by commas, never decreasing, one for each level up to the policy's maximum level.");
  const preview = h("p", { class: "muted small", id: "target-preview" });
  const onDrift = field("When changed outside", h("select", { name: "on_drift" },
    h("option", { value: "adopt" }, "adopt the change"),
    h("option", { value: "enforce" }, "write ours back")), "Adopt: someone else's change becomes the level. Or write our capacity back.");
  const mode = field("Mode", h("select", { name: "mode" },
    h("option", { value: "apply" }, "apply"),
    h("option", { value: "observe" }, "observe only")), "Observe records what would be written and writes nothing.");
  const save = h("button", { type: "submit", id: "target-save" }, "Attach target");
  const remove = h("button", { type: "button", id: "target-remove", class: "danger", hidden: true }, "Remove target");
  const form = h(
    "form",
    { class: "grid-form", novalidate: true, id: "target-form", "aria-label": "Scale target settings" },
    add("kind", kind), add("namespace", namespace), add("name", name), add("resource", resource),
    add("group_name", group), add("region", region),
    sizingGroup, add("base_capacity", baseCap), add("capacities", capacities), preview,
    add("on_drift", onDrift), add("mode", mode),
    h("div", { class: "form-actions" }, save),
  );
  // Folded away while a target exists (it is on the page already, in the summary).
  const formTitle = h("summary", { id: "target-form-h" }, "Attach a target");
  const editor = h("details", { id: "target-edit", open: true }, formTitle, form);
  let rendered = false; // the first render decides whether the editor starts open
  let followUp = 0; // a timer: a pending or converging target is looked at again soon
  let stopped = false;

  let target = null; // the stored target, or null
  let shownStatus = ""; // the summary's last content, so an unchanged one is not re-announced
  let shownHistory = "";
  let filledFrom = ""; // the stored target the form was filled from
  let dirty = false; // the user has edited the form since

  function toggle() {
    const k = inputs.get("kind").value;
    for (const f of ["namespace", "name", "resource"]) wraps.get(f).hidden = k !== "kubernetes";
    for (const f of ["group_name", "region"]) wraps.get(f).hidden = k !== "aws_asg";
    wraps.get("base_capacity").hidden = sizing !== "base";
    wraps.get("capacities").hidden = sizing !== "list";
    renderPreview();
  }

  function renderPreview() {
    const b = Number(inputs.get("base_capacity").value);
    preview.textContent = sizing === "base" && Number.isInteger(b) && b >= 1
      ? `Capacity by level: ${[1, 2, 3, 4, 5].map((l) => `${l} → ${baseCapacity(b, l)}`).join(", ")}, …`
      : "";
  }

  form.addEventListener("input", () => {
    dirty = true;
    renderPreview();
  });
  inputs.get("kind").addEventListener("change", toggle);

  function clearErrors() {
    for (const [f, el] of errors) {
      el.textContent = "";
      inputs.get(f).removeAttribute("aria-invalid");
    }
  }

  function showError(f, text) {
    errors.get(f).textContent = text;
    inputs.get(f).setAttribute("aria-invalid", "true");
    inputs.get(f).focus();
  }

  function fill(t) {
    inputs.get("kind").value = t.kind;
    for (const f of ["namespace", "name", "group_name", "region"]) if (typeof t[f] === "string") inputs.get(f).value = t[f];
    if (t.resource) inputs.get("resource").value = t.resource;
    if (Array.isArray(t.capacities)) {
      sizing = "list";
      inputs.get("capacities").value = t.capacities.join(", ");
    } else if (typeof t.base_capacity === "number") {
      sizing = "base";
      inputs.get("base_capacity").value = String(t.base_capacity);
    }
    form.querySelector(`#target-sizing-${sizing}`).checked = true;
    inputs.get("on_drift").value = t.on_drift || "adopt";
    inputs.get("mode").value = t.mode || "apply";
    filledFrom = JSON.stringify(t);
    dirty = false;
    toggle();
  }

  /** The body to PUT, or null after showing a field's error. */
  function body() {
    const k = inputs.get("kind").value;
    const out = { kind: k };
    const text = (f) => inputs.get(f).value.trim();
    if (k === "kubernetes") {
      out.namespace = text("namespace");
      out.name = text("name");
      out.resource = inputs.get("resource").value;
    } else {
      out.group_name = text("group_name");
      out.region = text("region");
    }
    if (sizing === "base") {
      const v = text("base_capacity");
      if (v === "") return void showError("base_capacity", "Enter the capacity of level 1: a whole number, 1 or more.");
      out.base_capacity = Number(v);
    } else {
      const parts = text("capacities").split(/[\s,;]+/).filter(Boolean);
      if (!parts.length) return void showError("capacities", "Enter one capacity for each level, level 1 first, such as 1, 2, 3.");
      if (parts.some((p) => !/^\d+$/.test(p))) return void showError("capacities", "Capacities must be whole numbers separated by commas, such as 1, 2, 3.");
      out.capacities = parts.map(Number);
    }
    out.on_drift = inputs.get("on_drift").value;
    out.mode = inputs.get("mode").value;
    return out;
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    clearErrors();
    say(message, "");
    const b = body();
    if (!b) return void say(message, "Not saved: correct the field marked above.");
    busy(save, async () => {
      say(message, "Checking the target with the cloud…", "info");
      try {
        const r = await api("PUT", base, b);
        target = r.target;
        fill(r.target);
        render(r);
        say(message, `Target saved: ${describe(r.target)}. ${r.target.mode === "observe" ? "Nothing is written to it in observe mode." : "The level's capacity is written to it from now on."}`, "ok");
        onChange();
      } catch (err) {
        const f = fieldOf(err, b.kind);
        const text = humanize(err.message);
        if (f && errors.has(f) && !wraps.get(f).hidden) {
          showError(f, text);
          say(message, `Not saved: ${text}`);
        } else if (err.status === 502) {
          say(message, `Not saved: ${text} Try again in a moment.`);
        } else {
          say(message, `Not saved: ${text}`);
        }
      }
    });
  });

  remove.addEventListener("click", () =>
    busy(remove, async () => {
      say(message, "");
      const what = describe(target) || "the scale target";
      if (!window.confirm(`Remove the scale target ${what}? It keeps its current capacity; the autoscaler stops writing to it.`)) return;
      try {
        const r = await api("DELETE", base);
        say(message, `${r.message}: ${what} keeps its current capacity.`, "ok");
        target = null;
        render(null);
        editor.open = true;
        onChange();
        heading.focus();
      } catch (err) {
        say(message, humanize(err.message));
      }
    }),
  );

  function render(r) {
    const t = r?.target || null;
    remove.hidden = !t;
    save.textContent = t ? "Save target" : "Attach target";
    formTitle.textContent = t ? "Change the target" : "Attach a target";
    history.hidden = !t;
    if (!rendered) {
      rendered = true;
      editor.open = !t;
    }
    const key = JSON.stringify(r);
    if (key === shownStatus) return;
    shownStatus = key;
    if (!t) {
      live.textContent = "";
      summary.replaceChildren(h("p", { class: "muted", id: "target-none" },
        "No scale target: decisions change the level here only. Attach a Kubernetes workload or an Auto Scaling group so that they change real capacity."));
      historyBody.replaceChildren();
      shownHistory = "";
      return;
    }
    const s = r.status || {};
    const cap = (v) => (typeof v === "number" ? String(v) : "—");
    const problem = s.state === "blocked" || s.state === "failed";
    const running = typeof s.observed_capacity === "number"
      ? `${s.observed_capacity} running${typeof s.observed_desired_capacity === "number" && s.observed_desired_capacity !== s.observed_capacity ? `, ${s.observed_desired_capacity} asked for` : ""}`
      : "not observed yet";
    const sentence = `${describe(t)}: ${(STATES[s.state] || [s.state])[0]}, ${cap(s.desired_capacity)} wanted, ${running}.${problem && s.message ? ` ${s.message}` : ""}`;
    if (live.textContent !== sentence) live.textContent = sentence;
    summary.replaceChildren(...[
      h("p", { class: "target-title" },
        h("strong", { id: "target-name" }, describe(t)), " ",
        stateBadge(s.state),
        s.limited ? [" ", h("span", { class: "badge warn" }, "limited")] : null),
      s.message ? h("p", { class: problem ? "msg error" : "msg info", id: "target-status-message" }, s.message) : null,
      h("dl", { class: "facts" },
        h("dt", {}, "Desired capacity"), h("dd", { id: "target-desired" }, `${cap(s.desired_capacity)} (level ${cap(s.desired_level)})`),
        h("dt", {}, "Observed capacity"), h("dd", { id: "target-observed" }, running),
        h("dt", {}, "Last written"), h("dd", {}, cap(s.applied_capacity)),
        typeof s.min_capacity === "number" || typeof s.max_capacity === "number"
          ? [h("dt", {}, "Group bounds"), h("dd", {}, `${cap(s.min_capacity)} to ${cap(s.max_capacity)}`)]
          : null,
        h("dt", {}, "Capacity per level"), h("dd", {}, sizingText(t)),
        h("dt", {}, "Mode"), h("dd", { id: "target-mode" }, t.mode === "observe" ? "observe: nothing is written" : "apply: the capacity is written"),
        h("dt", {}, "When changed outside"), h("dd", {}, t.on_drift === "enforce" ? "enforce: written back" : "adopt: taken as the level"),
        h("dt", {}, "Last observed"), h("dd", {}, time(s.observed_at)),
        s.attempts > 0 ? [h("dt", {}, "Retries"), h("dd", {}, `${s.attempts}${s.next_attempt_at ? `, next at ${time(s.next_attempt_at)}` : ""}`)] : null),
    ].filter(Boolean));
  }

  function renderHistory(actuations) {
    const key = JSON.stringify(actuations);
    if (key === shownHistory) return;
    shownHistory = key;
    say(historyMsg, actuations.length ? "" : "Nothing done yet.", "info");
    historyBody.replaceChildren(
      ...actuations.map((a) => {
        const cap = (v) => (typeof v === "number" ? String(v) : "—");
        return h("tr", { class: `event ${a.event}`, "data-event": a.event, "data-timestamp": a.timestamp },
          h("td", { class: "nowrap", title: time(a.timestamp) }, when(a.timestamp)),
          h("td", {}, EVENTS[a.event] || a.event.replace(/_/g, " ")),
          h("td", { class: "nowrap" }, `${cap(a.desired_capacity)} wanted, ${cap(a.observed_capacity)} seen`),
          h("td", {}, a.message));
      }),
    );
  }

  async function load() {
    clearTimeout(followUp);
    try {
      const r = await api("GET", base);
      target = r.target;
      if (!dirty && filledFrom !== JSON.stringify(r.target)) fill(r.target);
      render(r);
      // A write is due or on its way: show where it gets to without waiting 15 s.
      if (!stopped && ["pending", "converging"].includes(r.status?.state)) followUp = setTimeout(load, FOLLOW_UP_MS);
    } catch (err) {
      if (err.status === 404) {
        target = null;
        render(null);
      } else {
        say(message, `The scale target could not be loaded: ${humanize(err.message)}`);
      }
      return;
    }
    try {
      const { actuations } = await api("GET", `/api/instances/${seg(instanceId)}/actuations?limit=20`);
      renderHistory(actuations);
    } catch (err) {
      say(historyMsg, `The history could not be loaded: ${humanize(err.message)}`);
    }
  }

  /** The refresh loop's call: asks the server only when the instance has a target. */
  async function update(instance) {
    if (instance && !instance.target_kind) {
      clearTimeout(followUp);
      target = null;
      render(null);
      return;
    }
    await load();
  }

  toggle();
  const el = h("section", { class: "card", "aria-labelledby": "target-h", id: "target" },
    heading, live, summary, h("div", { class: "actions" }, remove), history, editor, message);
  const stop = () => {
    stopped = true;
    clearTimeout(followUp);
  };
  return { el, update, stop, state: () => target };
}
