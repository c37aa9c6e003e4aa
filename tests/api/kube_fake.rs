//! A Kubernetes API server fake, enough of it for the scale subresource: apps/v1
//! Deployments and StatefulSets (GET), their `/scale` (GET, merge PATCH, dry run),
//! the discovery documents kubectl reads, bearer-token auth, and injected errors.
//! Bodies follow the real API's wire format (checked with kubectl in
//! `targets::kubectl_speaks_to_the_fake`). It listens on 127.0.0.1 only.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// One workload the fake holds.
#[derive(Debug, Clone)]
pub struct Workload {
    pub replicas: i64,
    /// What the controller reports; follows `replicas` at once unless `hold` is set.
    pub status_replicas: i64,
    pub annotations: HashMap<String, String>,
    pub generation: i64,
    pub hold: bool,
}

#[derive(Default)]
struct Inner {
    /// (namespace, resource, name) → workload.
    objects: HashMap<(String, String, String), Workload>,
    /// Statuses to answer the next requests with, in turn.
    errors: VecDeque<u16>,
    /// Statuses to answer the next scale writes (PATCH, PUT) with, in turn.
    write_errors: VecDeque<u16>,
    /// Every non-dry-run PATCH of a scale subresource: (name, replicas).
    writes: Vec<(String, i64)>,
    dry_runs: usize,
    requests: usize,
}

/// A running fake: its URL and its state.
#[derive(Clone)]
pub struct KubeFake {
    pub url: String,
    pub token: Option<String>,
    inner: Arc<Mutex<Inner>>,
}

impl KubeFake {
    /// Starts a fake that requires `token` as a bearer token (when given).
    pub async fn start(token: Option<&str>) -> KubeFake {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let fake = KubeFake {
            url: String::new(),
            token: token.map(str::to_owned),
            inner,
        };
        let app = Router::new()
            .route("/api", get(core_versions))
            .route("/version", get(version))
            .route("/apis", get(groups))
            .route("/apis/apps/v1", get(apps_resources))
            .route(
                "/apis/apps/v1/namespaces/{ns}/{resource}/{name}",
                get(get_object),
            )
            .route(
                "/apis/apps/v1/namespaces/{ns}/{resource}/{name}/scale",
                get(get_scale).patch(write_scale).put(write_scale),
            )
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        KubeFake { url, ..fake }
    }

    /// Adds (or replaces) a workload with `replicas`, managed or not, owned or not.
    pub fn add(
        &self,
        ns: &str,
        resource: &str,
        name: &str,
        replicas: i64,
        annotations: &[(&str, &str)],
    ) {
        let workload = Workload {
            replicas,
            status_replicas: replicas,
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            generation: 1,
            hold: false,
        };
        self.inner
            .lock()
            .unwrap()
            .objects
            .insert((ns.into(), resource.into(), name.into()), workload);
    }

    /// Changes a workload in place (an operator's edit).
    pub fn edit(&self, ns: &str, resource: &str, name: &str, f: impl FnOnce(&mut Workload)) {
        let mut inner = self.inner.lock().unwrap();
        let w = inner
            .objects
            .get_mut(&(ns.into(), resource.into(), name.into()))
            .expect("workload exists");
        f(w);
        if !w.hold {
            w.status_replicas = w.replicas;
        }
    }

    pub fn remove(&self, ns: &str, resource: &str, name: &str) {
        self.inner
            .lock()
            .unwrap()
            .objects
            .remove(&(ns.into(), resource.into(), name.into()));
    }

    pub fn workload(&self, ns: &str, resource: &str, name: &str) -> Workload {
        self.inner.lock().unwrap().objects[&(ns.into(), resource.into(), name.into())].clone()
    }

    /// The next requests are answered with these statuses, one each.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.inner.lock().unwrap().errors.extend(statuses);
    }

    /// The next scale writes are answered with these statuses, one each.
    pub fn fail_next_writes(&self, statuses: &[u16]) {
        self.inner.lock().unwrap().write_errors.extend(statuses);
    }

    /// The writes (not dry runs) that reached the fake: (name, replicas).
    pub fn writes(&self) -> Vec<(String, i64)> {
        self.inner.lock().unwrap().writes.clone()
    }

    pub fn dry_runs(&self) -> usize {
        self.inner.lock().unwrap().dry_runs
    }

    /// A kubeconfig for this fake, written to `path`.
    pub fn write_kubeconfig(&self, path: &Path) {
        let user = match &self.token {
            Some(t) => format!("    token: {t}\n"),
            None => "    {}\n".to_owned(),
        };
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n{user}",
            self.url
        );
        std::fs::write(path, text).unwrap();
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap(),
        axum::Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code
        })),
    )
        .into_response()
}

/// Auth and injected errors, before any handler: the answer that stops the request.
fn gate(fake: &KubeFake, headers: &HeaderMap) -> Option<Response> {
    gate_for(fake, headers, false)
}

fn gate_for(fake: &KubeFake, headers: &HeaderMap, write: bool) -> Option<Response> {
    let mut inner = fake.inner.lock().unwrap();
    inner.requests += 1;
    if let Some(token) = &fake.token {
        let sent = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if sent != Some(token.as_str()) {
            return Some(status(401, "Unauthorized", "Unauthorized"));
        }
    }
    let injected = match inner.errors.pop_front() {
        Some(code) => Some(code),
        None if write => inner.write_errors.pop_front(),
        None => None,
    };
    if let Some(code) = injected {
        let reason = match code {
            409 => "Conflict",
            429 => "TooManyRequests",
            403 => "Forbidden",
            _ => "InternalError",
        };
        return Some(status(code, reason, &format!("injected {code}")));
    }
    None
}

async fn core_versions(State(fake): State<KubeFake>, headers: HeaderMap) -> Response {
    if let Some(r) = gate(&fake, &headers) {
        return r;
    }
    axum::Json(json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]
    }))
    .into_response()
}

async fn version(State(fake): State<KubeFake>, headers: HeaderMap) -> Response {
    if let Some(r) = gate(&fake, &headers) {
        return r;
    }
    axum::Json(json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "gitCommit": "0",
        "gitTreeState": "clean", "buildDate": "2026-12-01T00:00:00Z", "goVersion": "go1.24",
        "compiler": "gc", "platform": "linux/amd64"
    }))
    .into_response()
}

async fn groups(State(fake): State<KubeFake>, headers: HeaderMap) -> Response {
    if let Some(r) = gate(&fake, &headers) {
        return r;
    }
    axum::Json(json!({
        "kind": "APIGroupList", "apiVersion": "v1",
        "groups": [{"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                    "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}]
    }))
    .into_response()
}

async fn apps_resources(State(fake): State<KubeFake>, headers: HeaderMap) -> Response {
    if let Some(r) = gate(&fake, &headers) {
        return r;
    }
    let verbs = json!(["get", "list", "patch", "update"]);
    let resource = |name: &str, kind: &str, short: &[&str]| {
        json!({"name": name, "singularName": kind.to_lowercase(), "namespaced": true, "kind": kind,
               "verbs": verbs, "shortNames": short})
    };
    let scale = |name: &str| {
        json!({"name": format!("{name}/scale"), "singularName": "", "namespaced": true,
               "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]})
    };
    axum::Json(json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1",
        "resources": [resource("deployments", "Deployment", &["deploy"]), scale("deployments"),
                      resource("statefulsets", "StatefulSet", &["sts"]), scale("statefulsets")]
    }))
    .into_response()
}

fn kind_of(resource: &str) -> Option<&'static str> {
    match resource {
        "deployments" => Some("Deployment"),
        "statefulsets" => Some("StatefulSet"),
        _ => None,
    }
}

fn not_found(resource: &str, name: &str) -> Response {
    status(
        404,
        "NotFound",
        &format!("{resource}.apps \"{name}\" not found"),
    )
}

fn object_json(ns: &str, resource: &str, name: &str, w: &Workload) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": kind_of(resource).unwrap_or("Deployment"),
        "metadata": {"name": name, "namespace": ns, "uid": format!("00000000-0000-4000-8000-{:012}", w.generation),
                     "resourceVersion": w.generation.to_string(), "generation": w.generation,
                     "creationTimestamp": "2026-12-01T00:00:00Z", "annotations": w.annotations},
        "spec": {"replicas": w.replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": name, "image": "nginx"}]}}},
        "status": {"observedGeneration": w.generation, "replicas": w.status_replicas,
                   "readyReplicas": w.status_replicas, "availableReplicas": w.status_replicas,
                   "updatedReplicas": w.status_replicas}
    })
}

fn scale_json(ns: &str, name: &str, w: &Workload) -> Value {
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": name, "namespace": ns, "uid": format!("00000000-0000-4000-8000-{:012}", w.generation),
                     "resourceVersion": w.generation.to_string(), "creationTimestamp": "2026-12-01T00:00:00Z"},
        "spec": {"replicas": w.replicas},
        "status": {"replicas": w.status_replicas, "selector": format!("app={name}")}
    })
}

type Key = UrlPath<(String, String, String)>;

/// Answers a read of the workload at `key` with `render` of it.
fn read(
    fake: &KubeFake,
    headers: &HeaderMap,
    (ns, resource, name): (String, String, String),
    render: impl FnOnce(&str, &str, &str, &Workload) -> Value,
) -> Response {
    if let Some(r) = gate(fake, headers) {
        return r;
    }
    let inner = fake.inner.lock().unwrap();
    match inner
        .objects
        .get(&(ns.clone(), resource.clone(), name.clone()))
    {
        Some(w) if kind_of(&resource).is_some() => {
            axum::Json(render(&ns, &resource, &name, w)).into_response()
        }
        _ => not_found(&resource, &name),
    }
}

async fn get_object(
    State(fake): State<KubeFake>,
    UrlPath(key): Key,
    headers: HeaderMap,
) -> Response {
    read(&fake, &headers, key, object_json)
}

async fn get_scale(
    State(fake): State<KubeFake>,
    UrlPath(key): Key,
    headers: HeaderMap,
) -> Response {
    read(&fake, &headers, key, |ns, _, name, w| {
        scale_json(ns, name, w)
    })
}

/// A PUT or merge PATCH of the scale subresource (kubectl sends either).
async fn write_scale(
    State(fake): State<KubeFake>,
    method: Method,
    UrlPath((ns, resource, name)): Key,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = gate_for(&fake, &headers, !is_dry_run(&query)) {
        return r;
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if method == Method::PATCH
        && !content_type.starts_with("application/merge-patch+json")
        && !content_type.starts_with("application/strategic-merge-patch+json")
    {
        return status(
            415,
            "UnsupportedMediaType",
            &format!("the body of the request was in an unknown format: {content_type}"),
        );
    }
    write_replicas(&fake, &ns, &resource, &name, &query, &body)
}

fn is_dry_run(query: &HashMap<String, String>) -> bool {
    query.get("dryRun").is_some_and(|v| v == "All")
}

fn write_replicas(
    fake: &KubeFake,
    ns: &str,
    resource: &str,
    name: &str,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Response {
    let Ok(patch) = serde_json::from_slice::<Value>(body) else {
        return status(400, "BadRequest", "invalid JSON");
    };
    let Some(replicas) = patch["spec"]["replicas"].as_i64() else {
        return status(422, "Invalid", "spec.replicas: Required value");
    };
    if replicas < 0 {
        return status(
            422,
            "Invalid",
            "spec.replicas: must be greater than or equal to 0",
        );
    }
    let dry_run = is_dry_run(query);
    let mut inner = fake.inner.lock().unwrap();
    let key = (ns.to_owned(), resource.to_owned(), name.to_owned());
    let Some(w) = inner.objects.get(&key).cloned() else {
        return not_found(resource, name);
    };
    let mut after = w.clone();
    if after.replicas != replicas {
        after.replicas = replicas;
        after.generation += 1;
        if !after.hold {
            after.status_replicas = replicas;
        }
    }
    if dry_run {
        inner.dry_runs += 1;
    } else {
        inner.writes.push((name.to_owned(), replicas));
        inner.objects.insert(key, after.clone());
    }
    axum::Json(scale_json(ns, name, &after)).into_response()
}
