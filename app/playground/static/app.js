// Kinema playground: plain JavaScript against the gateway's own API, nothing loaded from elsewhere.
// The API key lives in sessionStorage and travels only in the Authorization header: never in a URL.
// EventSource cannot send that header, so the SSE stream is read with fetch; videos and thumbnails
// are fetched as blobs (with the header) and shown through object URLs.
"use strict";

const KEY_STORAGE = "kinema.apiKey";
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const PAGE_SIZE = 12;
const GALLERY_POLL_MS = 4000;

const state = {
  key: null,
  models: [],
  mode: { kind: "new", parent: null },
  follow: null, // {id, controller}
  viewing: null, // the job in the viewer
  cursor: null,
  jobs: new Map(), // id -> job, as last seen
  blobs: new Map(), // "id:variant" -> Promise<object URL>
  galleryTimer: null,
};

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, message, code, param) {
    super(message);
    this.status = status;
    this.code = code;
    this.param = param;
  }
}

async function toApiError(response) {
  let message = `The server answered ${response.status}.`;
  let code = null;
  let param = null;
  try {
    const body = await response.json();
    if (body && body.error) {
      message = body.error.message || message;
      code = body.error.code || null;
      param = body.error.param || null;
    }
  } catch (_) {
    // Not JSON (a proxy's error page): keep the status line.
  }
  return new ApiError(response.status, message, code, param);
}

// One authenticated request; a 401 signs the page out (the key was revoked or mistyped).
async function api(path, { method = "GET", json, form, signal, accept } = {}) {
  const headers = { Authorization: `Bearer ${state.key}` };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;
  }
  if (accept) headers.Accept = accept;
  const response = await fetch(path, { method, headers, body, signal, cache: "no-store", credentials: "omit" });
  if (!response.ok) {
    const error = await toApiError(response);
    if (response.status === 401 && path !== "/v1/models") signOut(error.message);
    throw error;
  }
  return response;
}

const apiJson = async (path, options) => (await api(path, options)).json();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function formatSeconds(total) {
  if (total === null || total === undefined) return "-";
  const s = Math.max(0, Math.round(total));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${s % 60} s`;
}

function describeJob(job) {
  const p = job.parameters || {};
  const size = p.width && p.height ? `${p.width}x${p.height}` : "";
  const length = p.duration ? `${Number(p.duration).toFixed(1)} s` : "";
  const kind = job.kind && job.kind !== "text" ? job.kind : "";
  return [kind, size, length, p.seed !== undefined ? `seed ${p.seed}` : "", new Date(job.created_at).toLocaleString()]
    .filter(Boolean)
    .join(" · ");
}

// ---- sign in / out ---------------------------------------------------------------------------

async function signIn(key) {
  state.key = key;
  const models = await apiJson("/v1/models");
  sessionStorage.setItem(KEY_STORAGE, key);
  state.models = models.data || [];
  fillModels();
  $("key-prefix").textContent = `${key.split("_").slice(0, 2).join("_")}…`;
  $("signin").hidden = true;
  $("app").hidden = false;
  $("session").hidden = false;
  await loadGallery();
}

function signOut(message) {
  sessionStorage.removeItem(KEY_STORAGE);
  state.key = null;
  stopFollowing();
  clearTimeout(state.galleryTimer);
  for (const entry of state.blobs.values()) entry.then(({ url }) => URL.revokeObjectURL(url)).catch(() => {});
  state.blobs.clear();
  state.jobs.clear();
  $("player").removeAttribute("src");
  $("gallery-list").replaceChildren();
  $("app").hidden = true;
  $("session").hidden = true;
  $("viewer").hidden = true;
  $("progress").hidden = true;
  $("signin").hidden = false;
  $("api-key").value = "";
  $("signin-error").textContent = message || "";
  $("api-key").focus();
}

function fillModels() {
  const select = $("model");
  select.replaceChildren();
  for (const model of state.models) {
    const option = document.createElement("option");
    option.value = model.id;
    option.textContent = model.id;
    option.title = model.description || "";
    select.append(option);
  }
  applyModel();
}

function applyModel() {
  const model = state.models.find((m) => m.id === $("model").value);
  const caps = model && model.capabilities;
  if (!caps) return;
  if (state.mode.kind === "new") $("duration").placeholder = caps.default_seconds;
  $("duration").max = caps.max_seconds;
  $("custom-size").placeholder = caps.default_size;
}

// ---- the create form -------------------------------------------------------------------------

function setMode(kind, parent) {
  state.mode = { kind, parent };
  const banner = $("mode-banner");
  const isNew = kind === "new";
  banner.hidden = isNew;
  for (const el of document.querySelectorAll("[data-new-only]")) el.hidden = !isNew;
  if (!isNew) {
    $("custom-size-field").hidden = true;
    $("mode-text").textContent =
      kind === "extend"
        ? `Extending ${parent.id}: the new part continues its last frame.`
        : `Remixing ${parent.id}: same size and length, a new prompt.`;
    $("prompt").value = parent.parameters.prompt;
  } else {
    $("custom-size-field").hidden = $("resolution").value !== "custom";
  }
  $("duration-label").textContent = kind === "extend" ? "Seconds to add" : "Duration (s)";
  $("duration").disabled = kind === "remix";
  $("duration").placeholder = kind === "extend" ? "2" : kind === "remix" ? "as the source" : "4";
  updateStrength();
  $("submit").textContent = { new: "Generate", extend: "Extend", remix: "Remix" }[kind];
  if (isNew) applyModel();
}

function inputFile() {
  const files = $("input-file").files;
  return files && files.length ? files[0] : null;
}

function fileRole(file) {
  if (file.type.startsWith("image/")) return "image";
  if (file.type.startsWith("video/")) return "video";
  return /\.(png|jpe?g|webp)$/i.test(file.name) ? "image" : "video";
}

function updateStrength() {
  const file = state.mode.kind === "new" ? inputFile() : null;
  $("strength-field").hidden = !(state.mode.kind === "remix" || (file && fileRole(file) === "video"));
  $("input-clear").hidden = !file;
}

function numberField(id, parse) {
  const raw = $(id).value.trim();
  if (raw === "") return undefined;
  const value = parse(raw);
  if (!Number.isFinite(value)) throw new ApiError(0, `${$(id).labels[0].textContent} must be a number.`);
  return value;
}

function readForm() {
  const prompt = $("prompt").value.trim();
  if (!prompt) throw new ApiError(0, "Write a prompt first.", "missing_field", "prompt");
  const fields = { prompt };
  const negative = $("negative-prompt").value.trim();
  if (negative) fields.negative_prompt = negative;
  const seed = numberField("seed", (v) => Number.parseInt(v, 10));
  if (seed !== undefined) fields.seed = seed;
  const steps = numberField("steps", (v) => Number.parseInt(v, 10));
  if (steps !== undefined) fields.num_inference_steps = steps;
  const kind = state.mode.kind;
  if (kind !== "remix") {
    const duration = numberField("duration", Number.parseFloat);
    if (duration !== undefined) fields.duration = duration;
  }
  if (!$("strength-field").hidden) {
    const strength = numberField("strength", Number.parseFloat);
    if (strength !== undefined) fields.strength = strength;
  }
  if (kind === "new") {
    const resolution = $("resolution").value;
    if (resolution === "custom") {
      const size = $("custom-size").value.trim().toLowerCase();
      if (size) fields.resolution = size;
    } else if (resolution) {
      fields.resolution = resolution;
      if ($("aspect-ratio").value) fields.aspect_ratio = $("aspect-ratio").value;
    }
    if ($("model").value) fields.model = $("model").value;
  }
  return fields;
}

async function submitJob() {
  const fields = readForm();
  const { kind, parent } = state.mode;
  if (kind === "extend") return apiJson(`/jobs/${encodeURIComponent(parent.id)}/extend`, { method: "POST", json: fields });
  if (kind === "remix") return apiJson(`/jobs/${encodeURIComponent(parent.id)}/remix`, { method: "POST", json: fields });
  const file = inputFile();
  if (!file) return apiJson("/generate", { method: "POST", json: fields });
  // With an image or a video: multipart, the same fields as form fields and the file part named by its role.
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.append(name, String(value));
  form.append(fileRole(file), file, file.name);
  return apiJson("/generate", { method: "POST", form });
}

async function onCreate(event) {
  event.preventDefault();
  const button = $("submit");
  $("create-error").textContent = "";
  button.disabled = true;
  try {
    const job = await submitJob();
    remember(job);
    setMode("new", null);
    $("input-file").value = "";
    updateStrength();
    follow(job.id);
    loadGallery();
  } catch (error) {
    $("create-error").textContent = error.message;
    if (error.param) {
      const target = { prompt: "prompt", duration: "duration", seed: "seed", num_inference_steps: "steps",
        resolution: "custom-size", strength: "strength", image: "input-file", video: "input-file" }[error.param];
      if (target && !$(target).closest("[hidden]")) $(target).focus();
    }
  } finally {
    button.disabled = false;
  }
}

// ---- live progress (SSE over fetch) ----------------------------------------------------------

function stopFollowing() {
  if (state.follow) state.follow.controller.abort();
  state.follow = null;
}

function renderProgress(job) {
  $("progress").hidden = false;
  $("progress-job").textContent = job.id;
  const badge = $("progress-status");
  badge.textContent = job.cancel_requested_at && !TERMINAL.has(job.status) ? "canceling" : job.status;
  badge.className = `badge ${job.status}`;
  $("progress-prompt").textContent = job.parameters.prompt;
  $("progress-bar").value = job.status === "succeeded" ? 100 : job.progress;
  $("progress-phase").textContent = job.phase;
  $("progress-step").textContent =
    job.total_steps && !TERMINAL.has(job.status) ? `${job.step} / ${job.total_steps}` : "-";
  $("progress-percent").textContent = `${job.status === "succeeded" ? 100 : job.progress}%`;
  $("progress-queue").textContent =
    job.status === "queued" && job.queue_position !== null ? `${job.queue_position} ahead` : "-";
  $("progress-eta").textContent = TERMINAL.has(job.status) ? "-" : formatSeconds(job.eta_seconds);
  const cancel = $("cancel");
  cancel.disabled = TERMINAL.has(job.status) || Boolean(job.cancel_requested_at);
  cancel.hidden = TERMINAL.has(job.status);
  $("progress-error").textContent =
    job.status === "failed" && job.error ? `${job.error.code}: ${job.error.message}` : "";
}

// Parse one `text/event-stream` block into {event, data}.
function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split(/\r\n|\r|\n/)) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "event") event = value;
    else if (name === "data") data.push(value);
  }
  return data.length ? { event, data: data.join("\n") } : null;
}

async function readStream(id, signal, onJob) {
  const response = await api(`/jobs/${encodeURIComponent(id)}/events`, { signal, accept: "text/event-stream" });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const blocks = buffer.split(/\r\n\r\n|\n\n|\r\r/);
    buffer = blocks.pop();
    for (const block of blocks) {
      const parsed = parseEvent(block);
      if (parsed && onJob(JSON.parse(parsed.data))) return;
    }
  }
}

async function follow(id) {
  stopFollowing();
  const controller = new AbortController();
  state.follow = { id, controller };
  $("progress-error").textContent = "";
  const known = state.jobs.get(id);
  if (known) renderProgress(known);
  let last = known || null;
  const onJob = (job) => {
    last = job;
    remember(job);
    renderProgress(job);
    updateCard(job);
    return TERMINAL.has(job.status);
  };
  // The stream ends with the finished job; a dropped connection starts over from the job as it is now.
  while (!controller.signal.aborted && !(last && TERMINAL.has(last.status))) {
    try {
      await readStream(id, controller.signal, onJob);
    } catch (error) {
      if (controller.signal.aborted) return;
      if (error instanceof ApiError && error.status >= 400 && error.status < 500 && error.status !== 429) {
        $("progress-error").textContent = error.message;
        return;
      }
    }
    if (!(last && TERMINAL.has(last.status))) await sleep(1000);
  }
  if (controller.signal.aborted) return;
  state.follow = null;
  if (last.status === "succeeded") openViewer(last);
  loadGallery();
}

async function onCancel() {
  const id = state.follow ? state.follow.id : $("progress-job").textContent;
  if (!id) return;
  await cancelJob(id, $("progress-error"));
}

async function cancelJob(id, errorTarget) {
  errorTarget.textContent = "";
  try {
    const job = await apiJson(`/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST" });
    remember(job);
    updateCard(job);
    if ($("progress-job").textContent === id) renderProgress(job);
  } catch (error) {
    errorTarget.textContent = error.message;
  }
}

// ---- media as blobs --------------------------------------------------------------------------

// The blob and its object URL, fetched once per job and variant.
function media(id, variant) {
  const cacheKey = `${id}:${variant}`;
  if (!state.blobs.has(cacheKey)) {
    const promise = api(`/playground/media/${encodeURIComponent(id)}/${variant}`)
      .then((response) => response.blob())
      .then((blob) => ({ blob, url: URL.createObjectURL(blob) }));
    promise.catch(() => state.blobs.delete(cacheKey));
    state.blobs.set(cacheKey, promise);
  }
  return state.blobs.get(cacheKey);
}

async function openViewer(job) {
  state.viewing = job;
  const viewer = $("viewer");
  viewer.hidden = false;
  $("viewer-job").textContent = job.id;
  $("viewer-error").textContent = "";
  $("provenance").hidden = true;
  $("provenance").replaceChildren();
  const out = job.output || {};
  $("viewer-meta").textContent =
    `${job.parameters.prompt} · ${out.width}x${out.height}, ${out.frames} frames at ${out.fps} fps, ` +
    `${(out.bytes / 1024).toFixed(0)} KiB`;
  for (const card of document.querySelectorAll(".card")) card.classList.toggle("selected", card.dataset.id === job.id);
  $("viewer-title").focus();
  try {
    const { url } = await media(job.id, "video");
    if (state.viewing !== job) return;
    const player = $("player");
    player.src = url;
    const link = $("download");
    link.href = url;
    link.download = `${job.id}.mp4`;
    player.play().catch(() => {}); // autoplay may be refused; the controls are there
  } catch (error) {
    $("viewer-error").textContent = `The video could not be loaded: ${error.message}`;
  }
}

async function downloadJob(job) {
  try {
    const { url } = await media(job.id, "video");
    const link = document.createElement("a");
    link.href = url;
    link.download = `${job.id}.mp4`;
    document.body.append(link);
    link.click();
    link.remove();
  } catch (error) {
    $("gallery-error").textContent = `Download of ${job.id} failed: ${error.message}`;
  }
}

// ---- provenance ------------------------------------------------------------------------------

function addLine(parent, tag, text, className) {
  const el = document.createElement(tag);
  el.textContent = text;
  if (className) el.className = className;
  parent.append(el);
  return el;
}

function renderProvenance(report) {
  const panel = $("provenance");
  panel.replaceChildren();
  const c2pa = report.c2pa;
  addLine(panel, "h3", "C2PA manifest");
  if (!c2pa.present) {
    addLine(panel, "p", "No manifest in this file.", "verdict bad");
  } else {
    const verdict = c2pa.valid ? "Valid" : "Invalid";
    const detail = c2pa.validation_state && c2pa.validation_state !== verdict ? ` (${c2pa.validation_state})` : "";
    addLine(panel, "p", verdict + detail, `verdict ${c2pa.valid ? "good" : "bad"}`);
    const list = document.createElement("ul");
    if (c2pa.issuer) addLine(list, "li", `Issued by ${c2pa.issuer}`);
    if (c2pa.claim_generator) addLine(list, "li", `Made with ${c2pa.claim_generator}`);
    if (c2pa.signed_at) addLine(list, "li", `Signed at ${c2pa.signed_at}`);
    if (c2pa.job_id) addLine(list, "li", `Job ${c2pa.job_id}${c2pa.model ? `, model ${c2pa.model}` : ""}`);
    for (const action of c2pa.actions || []) {
      addLine(list, "li", `Action ${action.action || "?"} ${action.digitalSourceType || ""}`.trim());
    }
    for (const ingredient of c2pa.ingredients || []) addLine(list, "li", `Ingredient ${ingredient.title || "?"}`);
    for (const problem of c2pa.problems || []) addLine(list, "li", `Note: ${problem}`);
    panel.append(list);
  }
  const mark = report.watermark;
  addLine(panel, "h3", "Invisible watermark");
  if (!mark.found) {
    addLine(panel, "p", `Not found (${mark.frames} frames read).`, "verdict bad");
  } else {
    const where = mark.issued_here ? "this deployment" : "another issuer";
    addLine(panel, "p", `Found: ${mark.payload} (confidence ${mark.confidence.toFixed(2)}, ${where})`, "verdict good");
    if (mark.job_id) addLine(panel, "p", `Names job ${mark.job_id}`);
  }
  panel.hidden = false;
}

async function onVerify() {
  const job = state.viewing;
  if (!job) return;
  const button = $("verify");
  button.disabled = true;
  $("viewer-error").textContent = "";
  try {
    // The blob itself: the page's policy lets it fetch nothing but this origin (not blob: URLs).
    const { blob } = await media(job.id, "video");
    const form = new FormData();
    form.append("file", blob, `${job.id}.mp4`);
    renderProvenance(await apiJson("/v1/provenance/verify", { method: "POST", form }));
  } catch (error) {
    $("viewer-error").textContent = `Provenance check failed: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

// ---- gallery ---------------------------------------------------------------------------------

function remember(job) {
  state.jobs.set(job.id, job);
}

function cardFor(id) {
  return document.querySelector(`.card[data-id="${CSS.escape(id)}"]`);
}

function buildCard(job) {
  const card = $("card-template").content.firstElementChild.cloneNode(true);
  card.dataset.id = job.id;
  card.querySelector(".play").addEventListener("click", () => openViewer(state.jobs.get(job.id)));
  card.querySelector(".follow").addEventListener("click", () => {
    follow(job.id);
    $("progress-title").focus();
  });
  card.querySelector(".cancel").addEventListener("click", () => cancelJob(job.id, card.querySelector(".card-error")));
  card.querySelector(".remix").addEventListener("click", () => startFrom("remix", state.jobs.get(job.id)));
  card.querySelector(".extend").addEventListener("click", () => startFrom("extend", state.jobs.get(job.id)));
  card.querySelector(".download").addEventListener("click", () => downloadJob(state.jobs.get(job.id)));
  fillCard(card, job);
  return card;
}

function fillCard(card, job) {
  const done = job.status === "succeeded";
  const active = !TERMINAL.has(job.status);
  const status = card.querySelector(".status");
  status.textContent = active && job.status === "in_progress" ? `${job.progress}%` : job.status.replace("_", " ");
  status.className = `badge status ${job.status}`;
  status.title = job.status;
  card.dataset.status = job.status;
  card.querySelector(".job-id").textContent = job.id;
  card.querySelector(".prompt").textContent = job.parameters.prompt;
  card.querySelector(".facts").textContent = describeJob(job);
  card.querySelector(".card-error").textContent = job.error ? `${job.error.code}: ${job.error.message}` : "";
  for (const name of ["play", "remix", "extend", "download"]) card.querySelector(`.${name}`).hidden = !done;
  card.querySelector(".follow").hidden = !active;
  card.querySelector(".cancel").hidden = !active;
  card.querySelector(".cancel").disabled = Boolean(job.cancel_requested_at);
  const img = card.querySelector("img");
  const placeholder = card.querySelector(".placeholder");
  placeholder.textContent = done ? "" : job.status === "in_progress" ? job.phase : job.status.replace("_", " ");
  if (done && img.hidden && !img.dataset.loading) {
    img.dataset.loading = "1";
    img.alt = `Thumbnail of ${job.id}`;
    media(job.id, "thumbnail")
      .then(({ url }) => {
        img.src = url;
        img.hidden = false;
        placeholder.hidden = true;
      })
      .catch(() => {
        placeholder.textContent = "no thumbnail";
        delete img.dataset.loading;
      });
  }
}

function updateCard(job) {
  const card = cardFor(job.id);
  if (card) fillCard(card, job);
}

async function loadGallery(more = false) {
  clearTimeout(state.galleryTimer);
  if (!state.key) return;
  $("gallery-error").textContent = "";
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (more && state.cursor) query.set("after", state.cursor);
  let page;
  try {
    page = await apiJson(`/jobs?${query}`);
  } catch (error) {
    $("gallery-error").textContent = `Your videos could not be listed: ${error.message}`;
    return;
  }
  const list = $("gallery-list");
  if (!more) list.replaceChildren();
  for (const job of page.data) {
    remember(job);
    const existing = cardFor(job.id);
    if (existing) fillCard(existing, job);
    else list.append(buildCard(job));
  }
  state.cursor = page.next_cursor;
  $("more").hidden = !page.has_more;
  $("gallery-empty").hidden = list.children.length > 0;
  // Jobs still running (other than the one followed live) are refreshed every few seconds.
  const active = [...state.jobs.values()].some((j) => !TERMINAL.has(j.status) && (!state.follow || state.follow.id !== j.id));
  if (active) state.galleryTimer = setTimeout(() => loadGallery(), GALLERY_POLL_MS);
}

function startFrom(kind, job) {
  setMode(kind, job);
  $("create").scrollIntoView({ block: "start" });
  $("prompt").focus();
  $("prompt").select();
}

// ---- wiring ----------------------------------------------------------------------------------

function init() {
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    $("signin-error").textContent = "";
    if (!key) return;
    try {
      await signIn(key);
      $("prompt").focus();
    } catch (error) {
      state.key = null;
      $("signin-error").textContent =
        error.status === 401 ? "That key was not accepted: check it and try again." : error.message;
    }
  });
  $("sign-out").addEventListener("click", () => signOut(""));
  $("create-form").addEventListener("submit", onCreate);
  $("prompt").addEventListener("keydown", (event) => {
    // Enter submits, as in a single-line field; Shift+Enter keeps a line break.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("create-form").requestSubmit();
    }
  });
  $("resolution").addEventListener("change", () => {
    const value = $("resolution").value;
    $("custom-size-field").hidden = value !== "custom";
    $("aspect-ratio").disabled = !["480p", "720p", "1080p"].includes(value);
  });
  $("model").addEventListener("change", applyModel);
  $("input-file").addEventListener("change", updateStrength);
  $("input-clear").addEventListener("click", () => {
    $("input-file").value = "";
    updateStrength();
    $("input-file").focus();
  });
  $("mode-clear").addEventListener("click", () => {
    setMode("new", null);
    $("prompt").focus();
  });
  $("cancel").addEventListener("click", onCancel);
  $("verify").addEventListener("click", onVerify);
  $("viewer-remix").addEventListener("click", () => state.viewing && startFrom("remix", state.viewing));
  $("viewer-extend").addEventListener("click", () => state.viewing && startFrom("extend", state.viewing));
  $("refresh").addEventListener("click", () => loadGallery());
  $("more").addEventListener("click", () => loadGallery(true));

  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) {
    signIn(saved).catch((error) => signOut(error.status === 401 ? "Your key is no longer accepted." : error.message));
  } else {
    $("api-key").focus();
  }
}

document.addEventListener("DOMContentLoaded", init);
