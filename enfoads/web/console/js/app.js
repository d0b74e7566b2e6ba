// The console's shell: the key (when not under the secret URL), the Socket.IO connection, the tabs
// (hash routing, arrow keys between tabs), and each tab's module, started once.
import * as api from "./api.js";
import { initGenerate } from "./generate.js";
import { initGallery } from "./gallery.js";
import { initFaceSwap } from "./faceswap.js";
import { initEnhance } from "./enhance.js";
import { initTranscribe } from "./transcribe.js";
import { initVideo } from "./video.js";
import { initSystem } from "./system.js";
import { initJobs } from "./jobs.js";

const tabs = [...document.querySelectorAll('[role="tab"]')];
const modules = { generate: initGenerate, gallery: initGallery, faceswap: initFaceSwap, enhance: initEnhance,
  transcribe: initTranscribe, video: initVideo, system: initSystem, jobs: initJobs };
const started = new Map();

function show(name) {
  if (!modules[name]) name = "generate";
  for (const tab of tabs) {
    const selected = tab.getAttribute("aria-controls") === name;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    document.getElementById(tab.getAttribute("aria-controls")).hidden = !selected;
  }
  if (!started.has(name)) started.set(name, modules[name]());
  else if (started.get(name) && started.get(name).refresh) started.get(name).refresh();
}

tabs.forEach((tab, index) => {
  // pushState, not location.hash: a fragment navigation would move focus off the tab to the panel's anchor.
  tab.addEventListener("click", () => { history.pushState(null, "", `#${tab.getAttribute("aria-controls")}`); show(tab.getAttribute("aria-controls")); });
  tab.addEventListener("keydown", (event) => {
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (!step) return;
    const next = tabs[(index + step + tabs.length) % tabs.length];
    next.focus();
    next.click();
  });
});
window.addEventListener("hashchange", () => show(location.hash.slice(1)));
window.addEventListener("popstate", () => show(location.hash.slice(1)));

function setConnection(ok) {
  const status = document.getElementById("conn");
  status.textContent = ok ? "live updates on" : "live updates off (polling)";
  status.className = ok ? "ok" : "muted";
}

async function start() {
  const form = document.getElementById("key-form");
  if (!api.underSecretUrl && !api.key()) {
    form.hidden = false;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      api.setKey(document.getElementById("key").value);
      location.reload();
    });
  }
  api.connect(setConnection);
  show(location.hash.slice(1) || "generate");
}

start();
