// Tiny DOM and formatting helpers. Text always goes in as text, never as HTML.

/** h("p", {class: "x", onclick: f}, "text", child) */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "text") {
      el.textContent = value;
    } else if (key in el && typeof value !== "string") {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** A timestamp in the browser's zone, or a dash. */
export function time(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "—" : dateTime.format(d);
}

const clock = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
const day = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });

/** Like time(), without the date when it is today. */
export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "—";
  return day.format(d) === day.format(new Date()) ? clock.format(d) : dateTime.format(d);
}

export function num(v, digits = 1, unit = "") {
  return typeof v === "number" && Number.isFinite(v) ? `${v.toFixed(digits)}${unit}` : "—";
}

let uid = 0;
/** A unique id for label/for and aria pairs. */
export const nextId = (prefix = "f") => `${prefix}-${++uid}`;

/** A labelled form field: returns {wrap, input, error}. */
export function field(label, input, hint) {
  const id = input.id || nextId();
  input.id = id;
  const error = h("span", { class: "field-error", id: `${id}-error`, role: "status" });
  input.setAttribute("aria-describedby", `${id}-error`);
  const wrap = h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("small", { class: "muted" }, hint) : null, error);
  return { wrap, input, error };
}

/** Shows a message (or clears it) in a status element. */
export function say(el, message, kind = "error") {
  el.textContent = message || "";
  el.className = `msg ${message ? kind : ""}`;
}

/** Runs `work` with `button` disabled and marked busy. */
export async function busy(button, work) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

export const capacity = (level) => 100 * 1.5 ** (level - 1);
