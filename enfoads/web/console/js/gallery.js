// Gallery: every finished output, newest first, with its parameters; download, and "use in" face swap,
// enhance or video (as an avatar).
import * as api from "./api.js";
import { el, mediaCard, handoff } from "./ui.js";

const SHOWN = ["image.generate", "faces.swap", "enhance.image", "enhance.video", "video.render", "video.render_multi"];

function caption(job) {
  const p = job.params || {};
  return [job.kind, p.prompt || p.script || "", p.style || ""].filter(Boolean).join(" · ").slice(0, 160);
}

async function useAsAvatar(url) {
  const blob = await (await fetch(url)).blob();
  const image = await new Promise((resolve) => { const r = new FileReader(); r.onload = () => resolve(r.result); r.readAsDataURL(blob); });
  await api.post("/avatars", { image, name: "from the gallery" });
  location.hash = "video";
}

export function initGallery() {
  const box = document.getElementById("gallery-items");
  async function refresh() {
    try {
      const { jobs } = await api.get("/api/jobs?state=succeeded&limit=100");
      const cards = [];
      for (const job of jobs.filter((j) => SHOWN.includes(j.kind))) {
        const video = job.kind.startsWith("video.") || job.kind === "enhance.video";
        const ids = job.result.image_asset_ids || [job.result.asset_id];
        for (const id of ids.filter((i) => job.asset_urls[i])) {
          const url = job.asset_urls[id];
          cards.push(mediaCard(url, { kind: video ? "video" : "image", caption: caption(job), actions: video ? [] : [
            ["Face swap", () => { handoff.target = url; location.hash = "faceswap"; }],
            ["Enhance", () => { handoff.enhance = url; location.hash = "enhance"; }],
            ["Use as avatar", () => useAsAvatar(url)],
          ] }));
        }
      }
      box.replaceChildren(...(cards.length ? cards : [el("p", { class: "muted", text: "Nothing made yet." })]));
    } catch (error) {
      box.replaceChildren(el("p", { class: "error", text: error.message }));
    }
  }
  document.getElementById("gallery-refresh").addEventListener("click", refresh);
  refresh();
  return { refresh };
}
