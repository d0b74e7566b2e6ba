// Transcribe: upload or record, language, task; the transcript with timings; SRT and VTT downloads.
import * as api from "./api.js";
import { el, status } from "./ui.js";

function clock(seconds) {
  const m = Math.floor(seconds / 60);
  return `${m}:${(seconds - 60 * m).toFixed(1).padStart(4, "0")}`;
}

export function initTranscribe() {
  const form = document.getElementById("transcribe-form");
  const out = document.getElementById("transcribe-result");
  const recordButton = document.getElementById("record");
  let recorded = null;
  let recorder = null;

  recordButton.addEventListener("click", async () => {
    if (recorder) { recorder.stop(); return; }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const chunks = [];
      recorder = new MediaRecorder(stream);
      recorder.ondataavailable = (event) => chunks.push(event.data);
      recorder.onstop = () => {
        stream.getTracks().forEach((t) => t.stop());
        recorded = new Blob(chunks, { type: recorder.mimeType || "audio/webm" });
        recorder = null;
        recordButton.textContent = "Record";
        status("transcribe-status", `recorded ${(recorded.size / 1024).toFixed(0)} KB: press Transcribe`);
      };
      recorder.start();
      recordButton.textContent = "Stop recording";
      status("transcribe-status", "recording…");
    } catch (error) {
      status("transcribe-status", `cannot record: ${error.message}`, "error");
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status("transcribe-status", "transcribing…");
    out.replaceChildren();
    try {
      const file = form.audio.files[0] || recorded;
      if (!file) throw new Error("choose an audio file or record one");
      const params = { audio: await api.fileToDataUri(file), task: form.task.value, response_format: "verbose_json" };
      if (form.language.value.trim()) params.language = form.language.value.trim();
      const done = await api.runJob("speech.transcribe", params, (u) => status("transcribe-status", `${u.message || u.status} (${u.progress || 0}%)`));
      const r = done.result;
      out.replaceChildren(
        el("p", { text: `${r.language || "?"} · ${r.duration.toFixed(1)} s · ${r.segment_count} segments` }),
        el("pre", { text: r.segments.map((s) => `[${clock(s.start)} → ${clock(s.end)}] ${s.text.trim()}`).join("\n") || r.text }),
        el("div", { class: "row" },
          el("a", { href: done.asset_urls[r.srt_asset_id], download: "transcript.srt", text: "Download SRT" }),
          el("a", { href: done.asset_urls[r.vtt_asset_id], download: "transcript.vtt", text: "Download VTT" })),
      );
      (r.warnings || []).forEach((w) => out.append(el("p", { class: "muted", text: w })));
      status("transcribe-status", "done", "ok");
    } catch (error) {
      status("transcribe-status", error.message, "error");
    }
  });
}
