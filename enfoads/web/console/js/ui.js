// Small DOM helpers shared by the tabs: building elements, status lines, result cards.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

export function status(id, text, kind = "muted") {
  const node = document.getElementById(id);
  node.textContent = text;
  node.className = kind;
}

export function formValues(form) {
  const out = {};
  for (const [name, value] of new FormData(form).entries()) {
    if (value instanceof File || value === "") continue;
    out[name] = value;
  }
  for (const box of form.querySelectorAll('input[type="checkbox"]')) out[box.name] = box.checked;
  return out;
}

export function mediaCard(url, { kind = "image", caption = "", actions = [] } = {}) {
  const media = kind === "video" ? el("video", { src: url, controls: true, preload: "metadata" })
    : el("img", { src: url, alt: caption || "result", loading: "lazy" });
  const links = el("div", { class: "row" }, el("a", { href: url, download: "", text: "Download" }),
    ...actions.map(([label, handler]) => el("button", { type: "button", class: "secondary", text: label, onclick: handler })));
  return el("div", { class: "card" }, media, caption ? el("span", { class: "muted", text: caption }) : null, links);
}

// A drop zone around a file input: dropping a file sets it, and the chosen image is shown.
export function dropZone(zone, onFile = () => {}) {
  const input = zone.querySelector('input[type="file"]');
  const showFile = (file) => {
    zone.querySelector("img")?.remove();
    if (file && file.type.startsWith("image/")) zone.append(el("img", { src: URL.createObjectURL(file), alt: file.name }));
    onFile(file);
  };
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (!event.dataTransfer.files.length) return;
    input.files = event.dataTransfer.files;
    showFile(input.files[0]);
  });
  input.addEventListener("change", () => showFile(input.files[0]));
  return input;
}

// What the other tabs hand each other (gallery -> face swap / enhance / video).
export const handoff = { target: null, enhance: null };
