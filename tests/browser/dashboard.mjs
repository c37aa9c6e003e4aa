// Drives the dashboard at BASE/ in headless Chromium the way a user would: sign up,
// register and monitor a mock instance, simulate high load, see the chart and a
// scale_up marker with its reason, change the policy (an invalid value, then a
// valid one), run a backtest, stop monitoring and delete the instance. On the way
// it attaches a scale target (a Deployment in the Kubernetes fake KUBE_FAKE that
// scripts/dashboard-test.sh starts, tests/browser/kube-fake.mjs), after a refused
// base capacity, sees the scale-up written to it and removes it. Every step
// saves a screenshot into SHOTS; any console error or unexpected HTTP error fails
// the step it belongs to. Steps run on after a failure, so one missing endpoint does
// not hide the others; the exit status is non-zero if any step failed.
//
//   BASE=http://127.0.0.1:5000 SHOTS=target/dashboard-screenshots node dashboard.mjs
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import { mkdirSync, copyFileSync } from "node:fs";
import { join, resolve } from "node:path";

const base = process.env.BASE;
const kubeFake = process.env.KUBE_FAKE; // the Kubernetes fake's URL
const shots = resolve(process.env.SHOTS || "target/dashboard-screenshots");
const docShot = process.env.DOC_SHOT; // where to copy the instance page, for the README
assert.ok(base, "BASE is required");
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

const email = `dash-${Date.now()}@example.com`;
const instanceId = `mock-dash-${Date.now() % 100000}`;
const results = [];
let current = null; // the running step
const problems = []; // {category, text}

// Errors of the endpoints other workers are adding count against their own steps.
function categoryOf(url, method) {
  if (/\/api\/instances\/[^/]+\/(target|actuations)/.test(url)) return "target";
  if (/\/api\/instances\/[^/]+\/policy/.test(url)) return "policy";
  if (/\/api\/instances\/[^/]+\/backtest/.test(url)) return "backtest";
  if (method === "DELETE" && /\/api\/instances\/[^/]+\/?$/.test(url)) return "delete";
  return current?.category ?? "setup";
}

const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
page.setDefaultTimeout(20000);
let lastDialog = "";
page.on("dialog", (d) => ((lastDialog = d.message()), d.accept()));
page.on("pageerror", (e) => problems.push({ category: current?.category ?? "setup", text: `page error: ${e.message}` }));
page.on("console", (msg) => {
  if (msg.type() !== "error") return;
  const url = msg.location()?.url || "";
  const m = msg.text().match(/status of (\d+)/);
  // A failed request is judged by the response listener below.
  if (m && url.includes("/api/")) return;
  problems.push({ category: categoryOf(url, "GET"), text: `console error: ${msg.text()} ${url}` });
});
page.on("response", (r) => {
  if (r.status() < 400) return;
  const method = r.request().method();
  const category = categoryOf(r.url(), method);
  const allowed = current?.allow?.some((a) => a.status === r.status() && a.url.test(r.url()));
  if (!allowed) problems.push({ category, text: `HTTP ${r.status()} from ${method} ${r.url()}` });
});

// STUB_PENDING=1 answers the policy and backtest endpoints in the browser, from
// their spec, for checking the dashboard before the server has them. Never for CI.
if (process.env.STUB_PENDING === "1") {
  const defaults = {
    mode: "enforce", scale_up_cpu_above: 90, scale_up_memory_above: 90, scale_down_cpu_below: 10,
    scale_down_memory_below: 20, sustained_ratio: 0.8, window_minutes: 5, min_samples: 3,
    iqr_multiplier: 1.5, votes_needed: 2, cooldown_seconds: 300, min_level: 1, max_level: 10,
  };
  let policy = { ...defaults };
  let isDefault = true;
  const json = (route, status, body) => route.fulfill({ status, contentType: "application/json", body: JSON.stringify(body) });
  await page.route(/\/api\/instances\/[^/]+\/policy$/, async (route) => {
    const req = route.request();
    const id = decodeURIComponent(req.url().split("/").at(-2));
    if (req.method() === "PUT") {
      const body = req.postDataJSON();
      if (body.sustained_ratio !== undefined && !(body.sustained_ratio > 0 && body.sustained_ratio <= 1))
        return json(route, 400, { error: "sustained_ratio must be a number above 0 and at most 1" });
      policy = { ...policy, ...body };
      isDefault = false;
    } else if (req.method() === "DELETE") {
      policy = { ...defaults };
      isDefault = true;
    }
    return json(route, 200, { instance_id: id, policy, is_default: isDefault });
  });
  await page.route(/\/api\/instances\/[^/]+\/backtest$/, async (route) => {
    const req = route.request();
    const body = req.postDataJSON();
    const from = new Date(body.from);
    const to = new Date(body.to);
    const at = (f) => new Date(from.getTime() + f * (to - from)).toISOString();
    const summary = (ups, downs, final) => ({
      scale_ups: ups, scale_downs: downs, final_level: final, max_level_reached: 3,
      seconds_at_level: { 1: 2400, 2: 900, 3: 300 }, capacity_hours: 1.4, overload_seconds: 60,
    });
    return json(route, 200, {
      instance_id: decodeURIComponent(req.url().split("/").at(-2)), from: body.from, to: body.to,
      interval_seconds: 15, ticks: 240, policy: { ...policy, ...body.policy },
      summary: summary(2, 1, 2), baseline: summary(1, 0, 2),
      actions: [
        { timestamp: at(0.5), decision: "scale_up", reason: "Sustained scale up (stub)", level_before: 1, level_after: 2 },
        { timestamp: at(0.6), decision: "scale_up", reason: "Sustained scale up (stub)", level_before: 2, level_after: 3 },
        { timestamp: at(0.8), decision: "scale_down", reason: "IQR outlier (stub)", level_before: 3, level_after: 2 },
      ],
      actions_truncated: false,
    });
  });
  console.log("STUB_PENDING=1: the policy and backtest endpoints are answered in the browser");
}

/** What the Kubernetes fake holds and was sent: {writes: [{name, replicas}], dry_runs}. */
async function fakeState() {
  assert.ok(kubeFake, "KUBE_FAKE is not set: run this through scripts/dashboard-test.sh");
  const r = await fetch(`${kubeFake}/_fake/state`);
  return r.json();
}

/** Polls `check` (a function resolving to a truthy value) until it holds. */
async function until(what, check, timeout = 40000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function step(name, category, fn, allow = [], fullPage = true) {
  current = { name, category, allow };
  const file = join(shots, `${String(results.length + 1).padStart(2, "0")}-${name.replace(/[^a-z0-9]+/gi, "-").toLowerCase()}.png`);
  let error = null;
  try {
    await fn();
  } catch (e) {
    error = e.message.split("\n")[0];
  }
  await page.waitForTimeout(300);
  await page.screenshot({ path: file, fullPage }).catch(() => {});
  results.push({ name, category, error, file });
  current = null;
}

try {
  await step("sign up", "auth", async () => {
    await page.goto(`${base}/`);
    await page.waitForURL(/#\/login$/);
    await page.getByRole("link", { name: "Create an account" }).click();
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill("testpass123");
    await page.getByRole("button", { name: "Sign up" }).click();
    await page.getByRole("heading", { name: "Fleet" }).waitFor();
    await page.getByText(email).waitFor();
    assert.ok(await page.evaluate(() => sessionStorage.getItem("autoscaler.token")), "token in sessionStorage");
  });

  await step("register instance", "instance", async () => {
    await page.getByRole("link", { name: "Register an instance" }).first().click();
    await page.getByLabel("Instance id").fill(instanceId);
    await page.getByRole("button", { name: "Register" }).click();
    await page.getByRole("heading", { name: instanceId }).waitFor();
    await page.getByText("not monitored").first().waitFor();
  });

  await step("scale target form errors by their fields", "target", async () => {
    const section = page.locator("#target");
    await section.getByText("No scale target").waitFor();
    await section.scrollIntoViewIfNeeded();
    const form = page.locator("#target-form");
    // The kind decides the fields: an Auto Scaling group has a group name and a region.
    await form.getByLabel("Kind", { exact: true }).selectOption("aws_asg");
    assert.ok(await form.getByLabel("Namespace").isHidden(), "no namespace for an Auto Scaling group");
    await form.getByLabel("Group name").fill("web-asg");
    await form.getByLabel("Region").fill("the moon");
    await page.getByRole("button", { name: "Attach target" }).click();
    const regionError = page.locator("#target-form [name=region] ~ .field-error");
    await regionError.waitFor({ state: "visible" });
    assert.match(await regionError.textContent(), /^Region must be an AWS region name such as us-east-1\.$/);
    await form.getByLabel("Kind", { exact: true }).selectOption("kubernetes");
    assert.ok(await form.getByLabel("Group name").isHidden(), "no group name for a workload");
    await form.getByLabel("Namespace").fill("default");
    await form.getByLabel("Workload name").fill("web");
    await form.getByLabel("Workload kind").selectOption("deployments");
    await form.getByText("Base capacity, 1.5× per level").click();
    // A workload the cluster doesn't have: the live check's answer, by the name.
    await form.getByLabel("Workload name").fill("missing");
    await form.getByLabel("Base capacity", { exact: true }).fill("1");
    await page.getByRole("button", { name: "Attach target" }).click();
    const nameError = page.locator("#target-form [name=name] ~ .field-error");
    await nameError.waitFor({ state: "visible" });
    assert.match(await nameError.textContent(), /^Deployment default\/missing does not exist\.$/);
    assert.equal(await form.getByLabel("Workload name").getAttribute("aria-invalid"), "true");
    await form.getByLabel("Workload name").fill("web");
    await form.getByLabel("Base capacity", { exact: true }).fill("0");
    await page.getByRole("button", { name: "Attach target" }).click();
    const error = page.locator("#target-form [name=base_capacity] ~ .field-error");
    await error.waitFor({ state: "visible" });
    assert.match(await error.textContent(), /^Base capacity must be a whole number from 1/);
    const input = form.getByLabel("Base capacity", { exact: true });
    assert.equal(await input.getAttribute("aria-invalid"), "true");
    assert.equal(await form.getByLabel("Workload name").getAttribute("aria-invalid"), null, "the name's error is cleared");
    assert.ok(await input.evaluate((el) => el === document.activeElement), "the wrong field has the focus");
    await page.locator("#target-message", { hasText: "Not saved" }).waitFor();
    assert.equal((await fakeState()).writes.length, 0, "nothing was written");
  }, [{ status: 400, url: /\/target$/ }]);

  await step("attach a scale target", "target", async () => {
    const form = page.locator("#target-form");
    await form.getByLabel("Base capacity", { exact: true }).fill("1");
    await page.locator("#target-preview", { hasText: "1 → 1, 2 → 2, 3 → 3, 4 → 4, 5 → 6" }).waitFor();
    await page.getByRole("button", { name: "Attach target" }).click();
    await page.locator("#target-message", { hasText: "Target saved: Deployment default/web." }).waitFor();
    assert.equal(await form.getByLabel("Base capacity", { exact: true }).getAttribute("aria-invalid"), null, "the old error is cleared");
    await page.locator("#target-name", { hasText: "Deployment default/web" }).waitFor();
    await page.getByRole("button", { name: "Remove target" }).waitFor();
    await page.getByRole("button", { name: "Save target" }).waitFor();
    const fake = await fakeState();
    assert.ok(fake.dry_runs >= 1, "the server checked the target with a dry run");
    assert.equal(fake.writes.length, 0, "attaching writes nothing");
    // The facts' badge comes from the instance list, reloaded after the attach.
    await page.locator(".facts-card [data-target-kind=kubernetes]").waitFor();
  });

  await step("start monitoring", "instance", async () => {
    await page.getByRole("button", { name: "Start monitoring" }).click();
    await page.getByText("Monitoring started successfully").waitFor();
    await page.getByRole("button", { name: "Stop monitoring" }).waitFor();
  });

  await step("simulate high load", "instance", async () => {
    await page.getByLabel("CPU %").fill("95");
    await page.getByLabel("Memory %").fill("50");
    await page.getByLabel("Duration (minutes)").fill("10");
    await page.getByLabel("Interval (seconds)").fill("30");
    await page.getByRole("button", { name: "Simulate load" }).click();
    await page.getByText("Created 20 simulated metrics over 10 minutes").waitFor();
  });

  await step("chart and scale_up marker", "instance", async () => {
    await page.locator("#series-chart canvas").first().waitFor();
    // The page refreshes every 15 s; the scaling job (1 s ticks) decides within one.
    const marker = page.locator("#series-chart .marker.scale_up").first();
    await marker.waitFor({ timeout: 40000 });
    const points = Number(await page.locator("#series-chart").getAttribute("data-points"));
    assert.ok(points >= 10, `chart has ${points} buckets`);
    await marker.hover();
    const tip = marker.locator(".tip");
    await tip.waitFor({ state: "visible" });
    assert.match(await tip.textContent(), /Scale up at .*Sustained scale up: CPU > 90%/);
    // Keyboard: the marker is a button; focus shows the same tooltip.
    await page.mouse.move(0, 0);
    await marker.focus();
    await tip.waitFor({ state: "visible" });
    await page.locator("table.decisions tr.scale_up").first().waitFor();
    if (docShot) await page.screenshot({ path: docShot });
  });

  await step("scale target applied the scale-up", "target", async () => {
    // The engine scaled up; the worker PATCHes the scale subresource within ~2 s.
    const write = await until("a PATCH of default/web's scale", async () => (await fakeState()).writes[0]);
    assert.equal(write.name, "default/web");
    assert.ok(write.replicas >= 2, `wrote ${write.replicas} replicas`);
    // The page shows it at its next refresh (every 15 s).
    const row = page.locator("#target-history tr[data-event=applied]").first();
    await row.waitFor({ timeout: 40000 });
    assert.match(await row.textContent(), /applied.*Deployment default\/web/);
    await until("the page to show the new capacity", async () => {
      const observed = await page.locator("#target-observed").textContent();
      return Number.parseInt(observed, 10) >= 2;
    });
    const state = await page.locator("#target-summary .target-state").getAttribute("data-state");
    assert.ok(["in_sync", "converging", "pending"].includes(state), `state ${state}`);
    // Newest first: the times in the history never increase going down.
    const times = await page.locator("#target-history tbody tr").evaluateAll((rows) => rows.map((r) => Date.parse(r.dataset.timestamp)));
    for (let i = 1; i < times.length; i++) assert.ok(times[i] <= times[i - 1], "history is newest first");
    await page.locator("#target").scrollIntoViewIfNeeded();
    await page.locator("#target").screenshot({ path: join(shots, "target-section-desktop.png") });
  });

  await step("scale target in observe mode writes nothing", "target", async () => {
    const before = (await fakeState()).writes.length;
    const editor = page.locator("#target-edit");
    if (!(await editor.evaluate((d) => d.open))) await editor.locator("summary").click();
    await page.locator("#target-form").getByLabel("Mode", { exact: true }).selectOption("observe");
    await page.getByRole("button", { name: "Save target" }).click();
    await page.locator("#target-message", { hasText: "Nothing is written to it in observe mode." }).waitFor();
    // The worker's next pass; the page looks again 3 s after a pending state.
    await page.locator("#target-summary .target-state[data-state=observing]").waitFor({ timeout: 30000 });
    assert.equal(await page.locator("#target-mode").textContent(), "observe: nothing is written");
    assert.equal((await fakeState()).writes.length, before, "observe mode wrote nothing");
  });

  await step("policy rejects an invalid value", "policy", async () => {
    const form = page.locator("#policy-form");
    await form.getByLabel("Sustained ratio (0–1)").waitFor();
    await page.waitForFunction(() => document.querySelector("#policy-form [name=sustained_ratio]").value !== "");
    await form.getByLabel("Sustained ratio (0–1)").fill("5");
    await page.getByRole("button", { name: "Save policy" }).click();
    const error = page.locator("#policy-form [name=sustained_ratio] ~ .field-error");
    await error.waitFor({ state: "visible" });
    assert.match(await error.textContent(), /^sustained_ratio /);
    assert.equal(await form.getByLabel("Sustained ratio (0–1)").getAttribute("aria-invalid"), "true");
  }, [{ status: 400, url: /\/policy$/ }]);

  await step("policy saves a valid value", "policy", async () => {
    await page.locator("#policy-form").getByLabel("Sustained ratio (0–1)").fill("0.7");
    await page.getByRole("button", { name: "Save policy" }).click();
    await page.locator("#policy-message", { hasText: "Policy saved." }).waitFor();
    await page.getByText("This instance has its own policy.").waitFor();
  });

  await step("backtest shows both summaries", "backtest", async () => {
    await page.locator("#backtest").getByText("1 h", { exact: true }).click();
    await page.getByRole("button", { name: "Run backtest" }).click();
    const table = page.locator("#backtest-summary");
    await table.waitFor();
    assert.equal(await table.locator("thead th").nth(1).textContent(), "Current policy");
    assert.equal(await table.locator("thead th").nth(2).textContent(), "Candidate policy");
    assert.ok((await table.locator("tbody tr").count()) >= 6, "summary rows");
    await page.locator("#backtest-chart canvas").first().waitFor();
  });

  await step("phone width", "layout", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(500);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `page scrolls sideways by ${overflow} px at 390 px`);
    await page.locator("#series-chart canvas").first().waitFor();
    await page.locator("#target").scrollIntoViewIfNeeded();
    await page.locator("#target").screenshot({ path: join(shots, "target-section-phone.png") });
    await page.locator("#chart-h").scrollIntoViewIfNeeded();
  }, [], false);

  await step("fleet at phone width", "layout", async () => {
    await page.goto(`${base}/#/`);
    await page.getByRole("link", { name: instanceId }).waitFor();
    await page.locator(".spark canvas").first().waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `fleet scrolls sideways by ${overflow} px at 390 px`);
  }, [], false);

  await step("fleet at desktop width", "instance", async () => {
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.reload();
    await page.getByRole("link", { name: instanceId }).waitFor();
    await page.locator(".spark canvas").first().waitFor();
    await page.getByText("policy: enforce").first().waitFor();
    const targetBadge = page.locator(".fleet [data-target-kind=kubernetes]");
    await targetBadge.waitFor();
    assert.match(await targetBadge.textContent(), /^target: Kubernetes · observing only$/);
  });

  await step("stop monitoring", "instance", async () => {
    await page.getByRole("link", { name: instanceId }).click();
    await page.getByRole("button", { name: "Stop monitoring" }).click();
    await page.getByText("Monitoring stopped successfully").waitFor();
    await page.getByRole("button", { name: "Start monitoring" }).waitFor();
  });

  await step("remove the scale target", "target", async () => {
    const before = (await fakeState()).writes.length;
    await page.locator("#target").scrollIntoViewIfNeeded();
    await page.getByRole("button", { name: "Remove target" }).click();
    await page.locator("#target-message", { hasText: "Scale target detached" }).waitFor();
    assert.match(lastDialog, /Remove the scale target Deployment default\/web\?/);
    await page.locator("#target-summary", { hasText: "No scale target" }).waitFor();
    await page.getByRole("button", { name: "Attach target" }).waitFor();
    assert.ok(await page.locator("#target-h").evaluate((el) => el === document.activeElement), "focus on the section's heading");
    assert.ok(await page.locator("#target-remove").isHidden(), "no Remove button without a target");
    await page.locator(".facts-card [data-target-kind]").waitFor({ state: "detached" });
    assert.equal((await fakeState()).writes.length, before, "detaching writes nothing");
  }, [{ status: 404, url: /\/target$/ }]); // a refresh already under way may ask once more

  await step("delete instance", "delete", async () => {
    await page.getByRole("button", { name: "Delete instance" }).click();
    await page.getByRole("heading", { name: "Fleet" }).waitFor();
    await page.getByText("No instances yet.").waitFor();
  });
} finally {
  await browser.close();
}

// Attribute recorded problems to the steps of their category.
for (const r of results) {
  const mine = problems.filter((p) => p.category === r.category);
  if (mine.length && !r.error) r.error = mine[0].text;
  r.extra = mine.map((p) => p.text);
}
const orphans = problems.filter((p) => !results.some((r) => r.category === p.category));
let failed = orphans.length > 0;
for (const r of results) {
  console.log(`${r.error ? "FAIL" : "ok  "} ${r.name}${r.error ? `: ${r.error}` : ""}`);
  for (const extra of new Set(r.extra)) if (extra !== r.error) console.log(`       also: ${extra}`);
  console.log(`       screenshot: ${r.file}`);
  if (r.error) failed = true;
}
for (const o of orphans) console.log(`FAIL ${o.category}: ${o.text}`);
if (docShot) console.log(`README screenshot: ${docShot}`);
process.exit(failed ? 1 : 0);
