// pacsnode UI: plain JavaScript that only enhances server-rendered pages (each reads
// without it). No library, no build step; nothing is fetched from outside the node.
"use strict";
document.documentElement.classList.add("js");

const csrfToken = () => document.querySelector('meta[name="csrf-token"]').content;

// --- live parts of a page: [data-refresh="ms"] is fetched again and swapped in place --------
function liveRefresh(element) {
  const every = Number(element.dataset.refresh || 0);
  if (!every || !element.id) return;
  setTimeout(async () => {
    try {
      const answer = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
      if (answer.ok) {
        const page = new DOMParser().parseFromString(await answer.text(), "text/html");
        const fresh = page.getElementById(element.id);
        if (fresh) {
          element.replaceWith(fresh);
          liveRefresh(fresh);
          return;
        }
      }
    } catch (error) { /* the node restarting: try again later */ }
    liveRefresh(element);
  }, every);
}

// --- the image viewer: scroll through a series, window/level, zoom --------------------------
function viewer(section) {
  const role = (name) => section.querySelector(`[data-role="${name}"]`);
  const sops = section.dataset.instances.split(" ");
  const image = role("image"), frame = role("frame"), slider = role("position");
  const label = role("position-label"), wc = role("wc"), ww = role("ww");
  const zoom = role("zoom"), preset = role("preset"), tags = role("tags");
  const tagLinks = [...document.querySelectorAll("details.instances a")].map((a) => a.href);
  let position = Number(slider.value);
  const cache = new Map();

  const url = (n) => {
    const windowed = wc.value !== "" && ww.value !== "" && Number(ww.value) > 0;
    return `${section.dataset.series}/instances/${sops[n - 1]}/rendered` +
      (windowed ? `?window=${Number(wc.value)},${Number(ww.value)}` : "");
  };
  const preload = (n) => {
    if (n < 1 || n > sops.length) return;
    const key = url(n);
    if (!cache.has(key)) { const img = new Image(); img.src = key; cache.set(key, img); }
    if (cache.size > 60) cache.delete(cache.keys().next().value);
  };
  const show = () => {
    image.src = url(position);
    image.alt = `Image ${position} of ${sops.length}`;
    slider.value = position;
    label.textContent = `${position} / ${sops.length}`;
    if (tags && tagLinks[position - 1]) tags.href = tagLinks[position - 1];
    const query = new URLSearchParams(location.search);
    query.set("n", position); query.set("wc", wc.value); query.set("ww", ww.value);
    query.set("zoom", zoom.value);
    history.replaceState(null, "", `?${query}#viewer`);
    preload(position + 1); preload(position - 1);
  };
  const go = (step) => {
    const next = Math.min(sops.length, Math.max(1, position + step));
    if (next !== position) { position = next; show(); }
  };
  const setZoom = (step) => {
    const options = [...zoom.options].map((o) => o.value);
    const index = Math.min(options.length - 1, Math.max(0, options.indexOf(zoom.value) + step));
    zoom.value = options[index];
    image.style.setProperty("--zoom", Number(zoom.value) / 100);
    show();
  };

  section.querySelectorAll('[data-role="prev"], [data-role="next"]').forEach((link) =>
    link.addEventListener("click", (event) => {
      event.preventDefault(); go(link.dataset.role === "next" ? 1 : -1);
    }));
  slider.addEventListener("input", () => { position = Number(slider.value); show(); });
  frame.addEventListener("wheel", (event) => {
    event.preventDefault();
    if (event.ctrlKey) setZoom(event.deltaY < 0 ? 1 : -1); else go(event.deltaY > 0 ? 1 : -1);
  }, { passive: false });
  frame.addEventListener("keydown", (event) => {
    const steps = { ArrowDown: 1, ArrowRight: 1, PageDown: 10, ArrowUp: -1, ArrowLeft: -1, PageUp: -10 };
    if (event.key in steps) { event.preventDefault(); go(steps[event.key]); }
    if (event.key === "+" || event.key === "=") setZoom(1);
    if (event.key === "-") setZoom(-1);
  });
  zoom.addEventListener("change", () => setZoom(0));
  preset.addEventListener("change", () => {
    const [centre, width] = preset.value ? preset.value.split(",") : ["", ""];
    wc.value = centre; ww.value = width; show();
  });
  [wc, ww].forEach((input) => input.addEventListener("change", show));
  section.querySelector("form").addEventListener("submit", (event) => { event.preventDefault(); show(); });

  // Drag: horizontal for the width, vertical for the centre; the image updates when the
  // pointer rests or is released (each rendering is a request to the node).
  let drag = null, pending = null;
  frame.addEventListener("pointerdown", (event) => {
    if (wc.value === "" || ww.value === "") { wc.value = "40"; ww.value = "400"; }
    drag = { x: event.clientX, y: event.clientY, wc: Number(wc.value), ww: Number(ww.value) };
    frame.setPointerCapture(event.pointerId);
  });
  frame.addEventListener("pointermove", (event) => {
    if (!drag) return;
    ww.value = Math.max(1, Math.round(drag.ww + (event.clientX - drag.x) * 4));
    wc.value = Math.round(drag.wc + (event.clientY - drag.y) * 2);
    preset.value = "";
    clearTimeout(pending); pending = setTimeout(show, 120);
  });
  const release = () => { if (drag) { drag = null; clearTimeout(pending); show(); } };
  frame.addEventListener("pointerup", release);
  frame.addEventListener("pointercancel", release);
  preload(position + 1);
}

// --- upload: files, folders and ZIPs, one request each, with progress -----------------------
function uploader(form) {
  const page = form.parentElement;
  const role = (name) => page.querySelector(`[data-role="${name}"]`);
  const drop = role("drop"), list = role("list"), body = list.querySelector("tbody");
  const summary = role("summary"), counts = { stored: 0, duplicate: 0, refused: 0 };
  const queue = [];
  let running = 0;

  const count = (what, n = 1) => {
    counts[what] += n;
    role("stored").textContent = `${counts.stored} stored`;
    role("duplicate").textContent = `${counts.duplicate} already stored`;
    role("refused").textContent = `${counts.refused} refused`;
  };
  const refusal = (name, reason) => {
    const item = document.createElement("li");
    item.textContent = `${name}: ${reason}`;
    role("refusals").append(item);
  };
  const remaining = () => {
    const left = queue.length + running;
    role("remaining").textContent = left ? `· ${left} file${left === 1 ? "" : "s"} to go` : "· done";
    summary.dataset.done = left ? "no" : "yes";
  };
  const outcome = (name, answer) => {
    const results = Array.isArray(answer) ? answer : [answer];
    const shown = { stored: 0, duplicate: 0, refused: 0 };
    for (const result of results) {
      if (result.Status === "Success") shown.stored++;
      else if (result.Status === "AlreadyStored") shown.duplicate++;
      else { shown.refused++; refusal(result.Path || name, result.Message || result.Status); }
    }
    Object.entries(shown).forEach(([what, n]) => n && count(what, n));
    if (!results.length) return "no DICOM file in it";
    return Object.entries(shown).filter(([, n]) => n)
      .map(([what, n]) => `${n} ${what === "duplicate" ? "already stored" : what}`).join(", ");
  };
  const send = (file, name) => new Promise((resolve) => {
    const row = body.insertRow();
    row.insertCell().textContent = name;
    row.insertCell().textContent = `${(file.size / 1024).toFixed(0)} KB`;
    const bar = document.createElement("progress");
    bar.max = 100; bar.value = 0;
    row.insertCell().append(bar);
    const result = row.insertCell();
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("X-CSRF-Token", csrfToken());
    request.setRequestHeader("Content-Type", "application/octet-stream");
    request.upload.onprogress = (event) => { if (event.lengthComputable) bar.value = (100 * event.loaded) / event.total; };
    request.onload = () => {
      bar.value = 100;
      let answer = null;
      try { answer = JSON.parse(request.responseText); } catch (error) { /* not JSON */ }
      if (request.status === 200 && answer) result.textContent = outcome(name, answer);
      else {
        const reason = (answer && answer.Message) || `HTTP ${request.status}`;
        count("refused"); refusal(name, reason); result.textContent = `refused: ${reason}`;
        result.className = "error-text";
      }
      resolve();
    };
    request.onerror = () => { count("refused"); refusal(name, "the connection failed"); result.textContent = "failed"; resolve(); };
    request.send(file);
  });
  const pump = () => {
    while (running < 2 && queue.length) {
      const [file, name] = queue.shift();
      running++;
      send(file, name).then(() => { running--; remaining(); pump(); });
    }
    remaining();
  };
  const add = (file, name) => {
    list.hidden = false; summary.hidden = false;
    queue.push([file, name || file.webkitRelativePath || file.name]);
    pump();
  };
  const walk = (entry, path) => {
    if (entry.isFile) entry.file((file) => add(file, path + file.name));
    else if (entry.isDirectory) {
      const reader = entry.createReader();
      const more = () => reader.readEntries((entries) => {
        entries.forEach((child) => walk(child, `${path}${entry.name}/`));
        if (entries.length) more();
      });
      more();
    }
  };

  role("files").addEventListener("change", (event) => [...event.target.files].forEach((f) => add(f)));
  role("folder").addEventListener("change", (event) => [...event.target.files].forEach((f) => add(f)));
  ["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (event) => {
    event.preventDefault(); drop.classList.add("over");
  }));
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault(); drop.classList.remove("over");
    const items = [...event.dataTransfer.items];
    if (items.length && items[0].webkitGetAsEntry) items.forEach((item) => {
      const entry = item.webkitGetAsEntry();
      if (entry) walk(entry, "");
    });
    else [...event.dataTransfer.files].forEach((f) => add(f));
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-refresh]").forEach(liveRefresh);
  document.querySelectorAll("section.viewer").forEach(viewer);
  document.querySelectorAll('[data-role="upload-form"]').forEach(uploader);
});
