// The dashboard: hash routes, each page a function that renders into <main> and
// returns a cleanup for its timers and charts.
import { api, session } from "./js/api.js";
import { h, zone, say } from "./js/dom.js";
import { authPage } from "./js/auth.js";
import { fleetPage, registerPage } from "./js/fleet.js";
import { instancePage } from "./js/instance.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const banner = document.getElementById("banner");
let cleanup = () => {};

document.getElementById("zone").textContent = `Times are shown in ${zone}`;
document.getElementById("signout").addEventListener("click", () => {
  session.clear();
  location.hash = "#/login";
});
let pendingBanner = "";
window.addEventListener("signedout", (e) => {
  pendingBanner = `${e.detail} Please sign in again.`;
  if (location.hash === "#/login") route();
  else location.hash = "#/login";
});

function showBanner(message) {
  say(banner, message);
  banner.hidden = !message;
}

async function whoami() {
  try {
    const me = await api("GET", "/api/auth/me");
    document.getElementById("whoami").textContent = me.email;
  } catch {
    /* a 401 signs out through the event; other errors show on the page */
  }
}

async function route() {
  cleanup();
  cleanup = () => {};
  showBanner(pendingBanner);
  pendingBanner = "";
  const hash = location.hash.replace(/^#/, "") || "/";
  const signedIn = Boolean(session.token);
  nav.hidden = !signedIn;
  main.replaceChildren(h("p", { class: "loading", role: "status" }, "Loading…"));
  let page;
  if (hash === "/login" || hash === "/signup") {
    if (signedIn) return void (location.hash = "#/");
    page = authPage(main, hash === "/signup");
  } else if (!signedIn) {
    return void (location.hash = "#/login");
  } else {
    whoami();
    const m = hash.match(/^\/instance\/(.+)$/);
    if (m) page = instancePage(main, decodeURIComponent(m[1]));
    else if (hash === "/register") page = registerPage(main);
    else page = fleetPage(main);
  }
  try {
    cleanup = (await page) || (() => {});
  } catch (e) {
    main.replaceChildren(h("p", { class: "msg error", role: "alert" }, e.message || String(e)));
  }
  const heading = main.querySelector("h1");
  if (heading) document.title = `${heading.textContent} · Autoscaler`;
}

window.addEventListener("hashchange", route);
route();
