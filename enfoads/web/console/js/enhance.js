// Enhance: upscale an image or a video (and restore its faces) with the catalogue's or a dropped-in model.
import * as api from "./api.js";
import { dropZone, el, formValues, mediaCard, status, handoff } from "./ui.js";

export async function initEnhance() {
  const form = document.getElementById("enhance-form");
  const bar = document.getElementById("enhance-progress");
  const results = document.getElementById("enhance-results");
  const input = dropZone(document.getElementById("drop-enhance"), () => { fromGallery = null; });
  let fromGallery = null;
  try {
    const { enhance_models: models } = await api.get("/models");
    form.model.replaceChildren(...models.filter((m) => m.role === "upscale" && m.valid).map((m) =>
      el("option", { value: m.id, text: `${m.id} (x${m.scale})`, selected: m.default })));
  } catch (error) { status("enhance-status", error.message, "error"); }

  function refresh() {
    if (!handoff.enhance) return;
    fromGallery = handoff.enhance;
    handoff.enhance = null;
    const zone = document.getElementById("drop-enhance");
    zone.querySelector("img")?.remove();
    zone.append(el("img", { src: fromGallery, alt: "picture from the gallery" }));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status("enhance-status", "working…");
    results.replaceChildren();
    try {
      const file = input.files[0];
      if (!fromGallery && !file) throw new Error("choose an image or a video");
      const video = file ? file.type.startsWith("video/") : false;
      const media = fromGallery ? new URL(fromGallery, location.href).href : await api.fileToDataUri(file);
      const options = formValues(form);
      bar.hidden = false;
      bar.value = 0;
      const answer = await api.post("/enhance-media", { media_url: media, type: video ? "video" : "image", ...options });
      const done = await api.followJob(answer.job_id, (u) => {
        bar.value = u.progress || 0;
        status("enhance-status", `${u.message || u.status} (${u.progress || 0}%)`);
      });
      bar.value = 100;
      results.replaceChildren(mediaCard(done.url, { kind: video ? "video" : "image",
        caption: `${done.result.width}×${done.result.height}, ${done.result.model}` }));
      status("enhance-status", "done", "ok");
    } catch (error) {
      status("enhance-status", error.message, "error");
    }
  });
  refresh();
  return { refresh };
}
