// Jobs: a live table of recent jobs (job_update events), with cancel for unfinished ones.
import * as api from "./api.js";
import { el } from "./ui.js";

export function initJobs() {
  const rows = document.getElementById("jobs-rows");
  const jobs = new Map();

  function render() {
    const sorted = [...jobs.values()].sort((a, b) => (b.created_at || 0) - (a.created_at || 0)).slice(0, 100);
    rows.replaceChildren(...sorted.map((job) => el("tr", { "data-job": job.id },
      el("td", { text: job.id.slice(0, 8) }), el("td", { text: job.kind || "" }), el("td", { text: job.status }),
      el("td", {}, el("progress", { max: 100, value: job.progress || 0, "aria-label": `progress of ${job.id}` })),
      el("td", { text: job.error || job.stage || "" }),
      el("td", {}, ["queued", "processing"].includes(job.status) ? el("button", { type: "button", class: "secondary",
        text: "Cancel", onclick: () => api.cancelJob(job.id).catch(() => {}) }) : null))));
    if (!sorted.length) rows.append(el("tr", {}, el("td", { colspan: 6, class: "muted", text: "No jobs yet." })));
  }

  async function refresh() {
    try {
      for (const job of (await api.get("/api/jobs?limit=100")).jobs) jobs.set(job.id, job);
      render();
    } catch (error) {
      rows.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "error", text: error.message })));
    }
  }
  api.onJobUpdate((update) => {
    const job = jobs.get(update.job_id) || { id: update.job_id, kind: update.kind, created_at: Date.now() / 1000 };
    jobs.set(update.job_id, { ...job, status: update.status, progress: update.progress, stage: update.message,
      error: update.error || null });
    render();
  });
  refresh();
  return { refresh };
}
