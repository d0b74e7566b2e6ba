// The API the console talks to: this server, under the secret URL prefix it was opened from, or at the
// root with the key the user typed (kept in this tab's sessionStorage only). Errors become Error objects
// carrying the API's own message.
import { io } from "../vendor/socket.io.esm.min.js";

const KEY_STORE = "enfoads-console-key";
// "/<prefix>/console/..." -> "/<prefix>"; "/console" -> "".
export const base = location.pathname.replace(/\/console(\/.*)?$/, "");
export const underSecretUrl = base !== "";

// The notebook opens the console with a login token in the fragment (#token=...): kept, then cleared.
if (location.hash.startsWith("#token=")) {
  sessionStorage.setItem(KEY_STORE, decodeURIComponent(location.hash.slice(7)));
  history.replaceState(null, "", location.pathname + location.search);
}

export function key() { return sessionStorage.getItem(KEY_STORE) || ""; }
export function setKey(value) { sessionStorage.setItem(KEY_STORE, value.trim()); }

function headers(extra = {}) {
  const out = { ...extra };
  if (!underSecretUrl && key()) out.Authorization = `Bearer ${key()}`;
  return out;
}

export async function call(method, path, body) {
  const init = { method, headers: headers() };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  const response = await fetch(base + path, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    const message = (data && data.message) || `${response.status} ${response.statusText}`;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return data;
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body);

export function fileToDataUri(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// Socket.IO: under the secret URL the namespace is the prefix (every job's events); at the root the key
// authenticates and "*" subscribes to every job. Handlers get each job_update.
const listeners = new Set();
export function onJobUpdate(handler) { listeners.add(handler); return () => listeners.delete(handler); }

export function connect(onState) {
  const options = { path: "/socket.io", transports: ["websocket", "polling"] };
  const socket = underSecretUrl ? io(location.origin + base, options)
    : io(location.origin, { ...options, auth: { key: key() } });
  socket.on("connect", () => {
    if (!underSecretUrl) socket.emit("subscribe", { job_id: "*" });
    onState(true);
  });
  socket.on("disconnect", () => onState(false));
  socket.on("connect_error", () => onState(false));
  socket.on("job_update", (update) => listeners.forEach((handler) => handler(update)));
  return socket;
}

// A job from start to end: submit, follow its job_update events (and poll as a fallback), resolve with
// the finished job view; onProgress(update) for each step.
export async function runJob(kind, params, onProgress = () => {}) {
  const job = await post("/api/jobs", { kind, params });
  return followJob(job.id, onProgress);
}

export function followJob(jobId, onProgress = () => {}) {
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = async () => {
      if (done) return;
      const view = await get(`/api/jobs/${jobId}`);
      if (!["completed", "failed", "cancelled"].includes(view.status) && view.state !== "cancelled") return;
      done = true;
      stop();
      clearInterval(timer);
      if (view.status === "completed") resolve(view);
      else reject(Object.assign(new Error(view.error || view.status), { job: view }));
    };
    const stop = onJobUpdate((update) => {
      if (update.job_id !== jobId) return;
      onProgress(update);
      if (["completed", "failed"].includes(update.status) || update.state === "cancelled") finish().catch(reject);
    });
    const timer = setInterval(() => finish().catch(() => {}), 1500);
    finish().catch(() => {});  // it may have finished already (a cached image, a fast job)
  });
}

export const cancelJob = (jobId) => post(`/api/jobs/${jobId}/cancel`);
