// Face swap: drag and drop a source face and a target picture; when the target has several faces, the
// result lists them and the user picks which to replace, then swaps again.
import * as api from "./api.js";
import { dropZone, el, mediaCard, status, handoff } from "./ui.js";

async function urlToDataUri(url) {
  const blob = await (await fetch(url)).blob();
  return api.fileToDataUri(blob);
}

export function initFaceSwap() {
  const form = document.getElementById("faceswap-form");
  const faces = document.getElementById("faceswap-faces");
  const results = document.getElementById("faceswap-results");
  let target = null;  // a data URI when it came from another tab
  const source = dropZone(document.getElementById("drop-source"));
  const targetInput = dropZone(document.getElementById("drop-target"), () => { target = null; faces.replaceChildren(); });

  function refresh() {
    if (!handoff.target) return;
    const url = handoff.target;
    handoff.target = null;
    urlToDataUri(url).then((uri) => {
      target = uri;
      const zone = document.getElementById("drop-target");
      zone.querySelector("img")?.remove();
      zone.append(el("img", { src: url, alt: "target from the gallery" }));
    });
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status("faceswap-status", "swapping…");
    results.replaceChildren();
    try {
      if (!source.files[0]) throw new Error("choose a source face image");
      const targetUri = target || (targetInput.files[0] && await api.fileToDataUri(targetInput.files[0]));
      if (!targetUri) throw new Error("choose a target picture");
      const params = { source_image: await api.fileToDataUri(source.files[0]), target_image: targetUri,
        restore: form.restore.checked };
      const chosen = [...faces.querySelectorAll("input:checked")].map((box) => Number(box.value));
      if (faces.children.length && chosen.length) params.target_face_indices = chosen;
      const done = await api.runJob("faces.swap", params, (u) => status("faceswap-status", `${u.message || u.status} (${u.progress || 0}%)`));
      results.replaceChildren(mediaCard(done.asset_urls[done.result.asset_id], { caption: "swapped" }));
      const found = done.result.target_faces_found || [];
      const replaced = new Set((done.result.target_faces || []).map((f) => f.index));
      faces.replaceChildren(...(found.length > 1 ? found.map((f) => el("label", {},
        el("span", {}, el("input", { type: "checkbox", value: f.index, checked: replaced.has(f.index) }), ` face ${f.index + 1}`))) : []));
      status("faceswap-status", found.length > 1 ? `${found.length} faces found: choose which to replace and swap again`
        : "done", "ok");
    } catch (error) {
      status("faceswap-status", error.message, "error");
    }
  });
  refresh();
  return { refresh };
}
