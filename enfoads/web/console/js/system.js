// System: the device, both memory budgets, the resident models with their footprints (evict one), and
// every model's licence.
import * as api from "./api.js";
import { el, status } from "./ui.js";

const gb = (bytes) => `${(bytes / 1e9).toFixed(2)} GB`;

export function initSystem() {
  const device = document.getElementById("system-device");
  const resident = document.getElementById("system-resident");
  const models = document.getElementById("system-models");

  async function refresh() {
    try {
      const [gpu, listed] = await Promise.all([api.get("/gpu-status"), api.get("/models")]);
      const r = gpu.residency;
      device.replaceChildren(
        el("p", { text: `${gpu.device} · profile ${gpu.profile} · ${gpu.gpu ? `${gpu.vram_total_gb} GB VRAM` : "no GPU"}` }),
        el("p", { text: `GPU budget ${gb(r.gpu_used)} of ${gb(r.gpu_budget)} · RAM budget ${gb(r.ram_used)} of ${gb(r.ram_budget)} · host RAM ${gpu.host_ram_available_gb} of ${gpu.host_ram_total_gb} GB free` }),
      );
      resident.replaceChildren(...r.models.filter((m) => m.tier).map((m) => el("tr", {},
        el("td", { text: m.id }), el("td", { text: m.tier }), el("td", { text: `${gb(m.bytes)}${m.measured ? "" : " (estimate)"}` }),
        el("td", { text: String(m.leases) }),
        el("td", {}, el("button", { type: "button", class: "secondary", text: "Evict", disabled: m.leases > 0,
          onclick: async () => { await api.post(`/api/models/${encodeURIComponent(m.id)}/unload`); refresh(); } })))));
      if (!resident.children.length) resident.append(el("tr", {}, el("td", { colspan: 5, class: "muted", text: "No model is loaded." })));
      models.replaceChildren(...listed.models.map((m) => el("tr", {}, el("td", { text: m.role }), el("td", { text: m.id }),
        el("td", { text: m.present ? "yes" : "no" }), el("td", { text: m.licence }))),
        ...listed.enhance_models.filter((m) => m.source === "drop-in").map((m) => el("tr", {}, el("td", { text: m.role }),
          el("td", { text: m.id }), el("td", { text: m.valid ? "yes" : `unusable: ${m.reason}` }), el("td", { text: m.licence }))));
    } catch (error) {
      device.replaceChildren(el("p", { class: "error", text: error.message }));
    }
  }
  document.getElementById("system-refresh").addEventListener("click", refresh);
  refresh();
  return { refresh };
}
