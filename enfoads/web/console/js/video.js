// Video: a script, an avatar, a voice (with a spoken preview), subtitles; the rendered video plays here.
import * as api from "./api.js";
import { el, status } from "./ui.js";

async function authorisedBlobUrl(path) {
  const headers = !api.underSecretUrl && api.key() ? { Authorization: `Bearer ${api.key()}` } : {};
  const response = await fetch(api.base + path, { headers });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).message || message; } catch { /* not JSON */ }
    throw new Error(message);
  }
  return URL.createObjectURL(await response.blob());
}

export async function initVideo() {
  const form = document.getElementById("video-form");
  const bar = document.getElementById("video-progress");
  const avatarImage = document.getElementById("avatar-image");
  const audio = document.getElementById("voice-audio");
  const out = document.getElementById("video-result");
  let avatars = [];

  async function refresh() {
    try {
      avatars = (await api.get("/avatars")).avatars;
      const chosen = form.avatar_id.value;
      form.avatar_id.replaceChildren(...avatars.map((a) => el("option", { value: a.id, text: a.name, selected: a.id === chosen })));
      showAvatar();
    } catch (error) { status("video-status", error.message, "error"); }
  }
  function showAvatar() {
    const avatar = avatars.find((a) => a.id === form.avatar_id.value) || avatars[0];
    if (avatar) { avatarImage.src = avatar.img; avatarImage.hidden = false; }
  }
  form.avatar_id.addEventListener("change", showAvatar);
  await refresh();
  try {
    const { voices } = await api.get("/voices");
    form.voice_id.replaceChildren(...voices.map((v) => el("option", { value: v.id, text: `${v.name} (${v.language})` })));
  } catch (error) { status("video-status", error.message, "error"); }

  document.getElementById("voice-preview").addEventListener("click", async () => {
    try {
      status("video-status", "speaking…");
      audio.src = await authorisedBlobUrl(`/voices/${encodeURIComponent(form.voice_id.value)}/preview`);
      audio.hidden = false;
      await audio.play().catch(() => {});  // autoplay may be refused; the player is there
      status("video-status", "voice preview ready", "ok");
    } catch (error) { status("video-status", error.message, "error"); }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status("video-status", "rendering…");
    out.replaceChildren();
    try {
      const body = { script: form.script.value, avatar_id: form.avatar_id.value, voice_id: form.voice_id.value,
        orientation: form.orientation.value, resolution: Number(form.resolution.value), generate_subtitles: form.subtitles.checked };
      bar.hidden = false;
      bar.value = 0;
      const { job_id: jobId } = await api.post("/render-video", body);
      const done = await api.followJob(jobId, (u) => {
        bar.value = u.progress || 0;
        status("video-status", `${u.message || u.status} (${u.progress || 0}%)`);
      });
      bar.value = 100;
      out.replaceChildren(el("video", { src: done.url, controls: true, preload: "metadata" }),
        el("div", { class: "row" }, el("a", { href: done.url, download: "video.mp4", text: "Download" })));
      status("video-status", `done: ${(done.result.duration || 0).toFixed(1)} s`, "ok");
    } catch (error) {
      status("video-status", error.message, "error");
    }
  });
  return { refresh };
}
