// Drives Swagger UI at BASE/api/docs in headless Chromium the way a user would:
// Authorize with a bearer token, then "Try it out" on GET /api/auth/me and
// POST /api/instances/, and check the live responses.
//
//   BASE=http://127.0.0.1:5000 TOKEN=... EMAIL=... node swagger.mjs
import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const base = process.env.BASE;
const token = process.env.TOKEN;
const email = process.env.EMAIL;
assert.ok(base && token && email, "BASE, TOKEN and EMAIL are required");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await browser.newPage();
  const failures = [];
  page.on("pageerror", (e) => failures.push(e.message));

  await page.goto(`${base}/api/docs`);
  await page.waitForSelector(".swagger-ui .info .title", { timeout: 15000 });
  const title = await page.textContent(".swagger-ui .info .title");
  assert.match(title, /Cloud Resource Autoscaler API/);
  // Every operation of the document is listed, however many the API has.
  const doc = await (await fetch(`${base}/api/openapi.json`)).json();
  const documented = Object.values(doc.paths).flatMap((item) =>
    Object.keys(item).filter((m) => ["get", "post", "put", "patch", "delete"].includes(m)),
  ).length;
  const operations = await page.locator(".opblock").count();
  assert.equal(operations, documented, `all ${documented} operations are listed`);

  // Authorize with the token (no "Bearer" prefix, as the README says).
  await page.click("button.authorize");
  await page.fill(".modal-ux input[type=text]", token);
  await page.click(".modal-ux button.authorize");
  await page.click(".modal-ux button.btn-done");

  // GET /api/auth/me: Try it out → Execute → 200 with our email.
  const me = page.locator("#operations-auth-me");
  await me.locator(".opblock-summary").click();
  await me.locator("button.try-out__btn").click();
  await me.locator("button.execute").click();
  await me.locator(".live-responses-table tbody .response-col_status").first().waitFor();
  assert.equal((await me.locator(".live-responses-table tbody .response-col_status").first().textContent()).trim(), "200");
  const meBody = await me.locator(".live-responses-table tbody .microlight").first().textContent();
  assert.equal(JSON.parse(meBody).email, email);

  // POST /api/instances/: the example body registers a mock instance → 201.
  const register = page.locator("#operations-instances-register_instance");
  await register.locator(".opblock-summary").click();
  await register.locator("button.try-out__btn").click();
  await register.locator("button.execute").click();
  await register.locator(".live-responses-table tbody .response-col_status").first().waitFor();
  assert.equal(
    (await register.locator(".live-responses-table tbody .response-col_status").first().textContent()).trim(),
    "201",
  );
  const created = JSON.parse(await register.locator(".live-responses-table tbody .microlight").first().textContent());
  assert.equal(created.message, "Instance registered successfully");

  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  assert.deepEqual(failures, [], "no script errors on the page");
  console.log("Swagger UI: Authorize and Try it out work (GET /api/auth/me 200, POST /api/instances/ 201)");
} finally {
  await browser.close();
}
