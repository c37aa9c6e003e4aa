// A tiny Kubernetes API fake for the dashboard test: apps/v1 Deployments (GET) and
// their scale subresource (GET, merge PATCH, `?dryRun=All` changing nothing), no
// auth, on 127.0.0.1 at a port the system picks. It holds one managed Deployment,
// default/web, at 1 replica; status.replicas and observedGeneration follow a write
// at once (the controller is instant). Bodies follow the shapes of
// tests/api/kube_fake.rs, which are checked against kubectl there.
//
//   node kube-fake.mjs DIR
//
// writes DIR/kubeconfig (for the server's KUBECONFIG) and then DIR/kube-fake.url
// (its base URL: the sign that it is listening). GET /_fake/state answers
// {"writes": [{name, replicas, at}], "dry_runs": N, "objects": {...}} for the test.
import { createServer } from "node:http";
import { writeFileSync, renameSync } from "node:fs";
import { join } from "node:path";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node kube-fake.mjs DIR");
  process.exit(2);
}

const objects = new Map(); // "ns/deployments/name" → {replicas, statusReplicas, generation, annotations}
objects.set("default/deployments/web", { replicas: 1, statusReplicas: 1, generation: 1, annotations: { "autoscaler/managed": "true" } });
const writes = [];
let dryRuns = 0;

const send = (res, code, body) => {
  res.writeHead(code, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
};
const status = (res, code, reason, message) =>
  send(res, code, { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code });

const uid = (w) => `00000000-0000-4000-8000-${String(w.generation).padStart(12, "0")}`;
const deployment = (ns, name, w) => ({
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name, namespace: ns, uid: uid(w), resourceVersion: String(w.generation), generation: w.generation, creationTimestamp: "2026-12-01T00:00:00Z", annotations: w.annotations },
  spec: { replicas: w.replicas, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name, image: "nginx" }] } } },
  status: { observedGeneration: w.generation, replicas: w.statusReplicas, readyReplicas: w.statusReplicas, availableReplicas: w.statusReplicas, updatedReplicas: w.statusReplicas },
});
const scale = (ns, name, w) => ({
  kind: "Scale",
  apiVersion: "autoscaling/v1",
  metadata: { name, namespace: ns, uid: uid(w), resourceVersion: String(w.generation), creationTimestamp: "2026-12-01T00:00:00Z" },
  spec: { replicas: w.replicas },
  status: { replicas: w.statusReplicas, selector: `app=${name}` },
});

const server = createServer((req, res) => {
  const url = new URL(req.url, "http://fake");
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () => {
    if (url.pathname === "/_fake/state" && req.method === "GET") {
      return send(res, 200, { writes, dry_runs: dryRuns, objects: Object.fromEntries(objects) });
    }
    const m = url.pathname.match(/^\/apis\/apps\/v1\/namespaces\/([^/]+)\/(deployments|statefulsets)\/([^/]+)(\/scale)?$/);
    if (!m) return status(res, 404, "NotFound", `the server could not find the requested resource (${req.method} ${url.pathname})`);
    const [, ns, resource, name, sub] = m;
    const w = objects.get(`${ns}/${resource}/${name}`);
    if (!w) return status(res, 404, "NotFound", `${resource}.apps "${name}" not found`);
    if (req.method === "GET") return send(res, 200, sub ? scale(ns, name, w) : deployment(ns, name, w));
    if (!(sub && req.method === "PATCH")) return status(res, 405, "MethodNotAllowed", `${req.method} is not supported here`);
    const type = req.headers["content-type"] || "";
    if (!type.startsWith("application/merge-patch+json")) return status(res, 415, "UnsupportedMediaType", `the body of the request was in an unknown format: ${type}`);
    let replicas;
    try {
      replicas = JSON.parse(body)?.spec?.replicas;
    } catch {
      return status(res, 400, "BadRequest", "invalid JSON");
    }
    if (!Number.isInteger(replicas) || replicas < 0) return status(res, 422, "Invalid", "spec.replicas: Invalid value");
    const dryRun = url.searchParams.get("dryRun") === "All";
    const after = { ...w };
    if (after.replicas !== replicas) {
      after.replicas = replicas;
      after.statusReplicas = replicas;
      after.generation += 1;
    }
    if (dryRun) dryRuns += 1;
    else {
      writes.push({ name: `${ns}/${name}`, replicas, at: new Date().toISOString() });
      objects.set(`${ns}/${resource}/${name}`, after);
    }
    return send(res, 200, scale(ns, name, after));
  });
});

server.listen(0, "127.0.0.1", () => {
  const base = `http://127.0.0.1:${server.address().port}`;
  const kubeconfig = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "fake", cluster: { server: base } }],
    contexts: [{ name: "fake", context: { cluster: "fake", user: "fake" } }],
    "current-context": "fake",
    users: [{ name: "fake", user: {} }],
  };
  // JSON is YAML; the URL file last, written whole, so its presence means ready.
  writeFileSync(join(dir, "kubeconfig"), JSON.stringify(kubeconfig, null, 2));
  writeFileSync(join(dir, "kube-fake.url.tmp"), base);
  renameSync(join(dir, "kube-fake.url.tmp"), join(dir, "kube-fake.url"));
  console.log(`kube fake at ${base}`);
});
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
