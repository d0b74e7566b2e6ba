// Generate: a prompt (and the magic prompt), style, ratio, steps, guidance, seed, count; live preview
// frames and progress from the job's events; cancel.
import * as api from "./api.js";
import { el, formValues, mediaCard, status, handoff } from "./ui.js";

export async function initGenerate() {
  const form = document.getElementById("generate-form");
  const bar = document.getElementById("generate-progress");
  const preview = document.getElementById("generate-preview");
  const cancel = document.getElementById("generate-cancel");
  const results = document.getElementById("generate-results");
  let current = null;

  try {
    const { styles } = await api.get("/styles");
    form.elements.style.replaceChildren(...styles.map((name) => el("option", { value: name === "None" ? "" : name, text: name })));
  } catch (error) { status("generate-status", error.message, "error"); }

  document.getElementById("magic").addEventListener("click", async () => {
    try {
      const { prompt } = await api.post("/magic-prompt", { prompt: form.prompt.value });
      form.prompt.value = prompt;
    } catch (error) { status("generate-status", error.message, "error"); }
  });
  cancel.addEventListener("click", () => current && api.cancelJob(current).catch(() => {}));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status("generate-status", "submitting…");
    const params = formValues(form);
    params.preview_every = 1;
    results.replaceChildren();
    bar.hidden = false;
    bar.value = 0;
    try {
      const job = await api.post("/api/jobs", { kind: "image.generate", params });
      current = job.id;
      cancel.disabled = false;
      status("generate-status", "queued");
      const done = await api.followJob(job.id, (update) => {
        bar.value = update.progress || 0;
        status("generate-status", `${update.message || update.status} (${update.progress || 0}%)`);
        if (update.preview_url) { preview.src = update.preview_url; preview.hidden = false; }
      });
      const ids = done.result.image_asset_ids || [done.result.asset_id];
      results.replaceChildren(...ids.map((id) => mediaCard(done.asset_urls[id], {
        caption: `seed ${done.result.seed}`,
        actions: [["Use in face swap", () => { handoff.target = done.asset_urls[id]; location.hash = "faceswap"; }],
                  ["Enhance", () => { handoff.enhance = done.asset_urls[id]; location.hash = "enhance"; }]],
      })));
      preview.hidden = true;
      bar.value = 100;
      status("generate-status", `done in ${done.finished_at && done.started_at ? (done.finished_at - done.started_at).toFixed(1) : "?"} s`, "ok");
    } catch (error) {
      status("generate-status", error.message, "error");
    } finally {
      current = null;
      cancel.disabled = true;
    }
  });
}
