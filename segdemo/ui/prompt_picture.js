// The clickable picture (gr.HTML js_on_load): `element`, `trigger`, `props`, `server`,
// `upload` and `watch` come from Gradio. A click is sent as its pixel coordinates to the
// `operate` server function, which answers with the new mask as a small PNG; the page draws
// it on a canvas over the photo. If the server functions cannot be reached, the same
// operations go through Gradio's queue (a `select` event) and the page says so.
const root = element.querySelector(".sd-picture");
const stage = root.querySelector(".sd-stage");
const frame = root.querySelector(".sd-frame");
const photo = root.querySelector(".sd-photo");
const maskCanvas = root.querySelector(".sd-mask");
const previewCanvas = root.querySelector(".sd-preview");
const marks = root.querySelector(".sd-marks");
const fileInput = root.querySelector(".sd-file");
const statusLine = root.querySelector(".sd-status");
const notice = root.querySelector(".sd-notice");
const MAX_WAITING = 4; // clicks kept while one is answered; a flood beyond is refused
// The masks' details follow once the clicks pause this long: longer than the gap between a
// correcting user's clicks (0.4 to 1 s), so that rendering them never delays the next click.
const PAUSE_MS = 1200;
const QUEUE_TIMEOUT_MS = 30000;
const COLOURS = { positive: "#28dc5a", negative: "#eb3232", box: "#ffd700" };

let token = null;
let fast = true; // false once the page fell back to the queue
let shown = null; // the view on screen: {version, image, size, prompts, mask, status}
let corner = null; // a box's first corner, in working pixels
let dragging = null;
let inFlight = false;
const waiting = [];
let pauseTimer = null;
let queueAnswer = null; // [request id, resolve] of the operation waiting for the queue
let requests = 0;
let drafted = null; // the first click whose draft (the network's own mask) may be drawn
window.segdemoTimings = window.segdemoTimings || [];
window.segdemoDrafts = window.segdemoDrafts || [];

function describe(err) {
  return (err && err.message) || String(err);
}

function say(text, error = false) {
  statusLine.textContent = text || "";
  statusLine.classList.toggle("sd-error", error);
}

function setBusy(busy) {
  root.classList.toggle("sd-busy", busy);
}

function useQueue(reason) {
  if (!fast) return;
  fast = false;
  root.dataset.path = "queue";
  notice.textContent =
    `The fast click path is not available (${reason}): clicks go through the server's ` +
    "queue instead, which is slower.";
}

async function begin() {
  try {
    const answer = await server.start({});
    if (!answer || !answer.token) throw new Error((answer && answer.error) || "no token");
    token = answer.token;
    props.value = { token };
  } catch (err) {
    useQueue(describe(err));
  }
}

// Drawing.

function markRadius() {
  return Math.max(4, Math.round(Math.max(marks.width, marks.height) / 110));
}

function drawMarks(preview = null) {
  const ctx = marks.getContext("2d");
  ctx.clearRect(0, 0, marks.width, marks.height);
  const r = markRadius();
  for (const prompt of (shown && shown.prompts) || []) {
    if (prompt.kind === "point") {
      ctx.beginPath();
      ctx.arc(prompt.x, prompt.y, r, 0, 2 * Math.PI);
      ctx.fillStyle = prompt.label ? COLOURS.positive : COLOURS.negative;
      ctx.fill();
      ctx.lineWidth = 2;
      ctx.strokeStyle = "white";
      ctx.stroke();
    } else {
      const [x0, y0, x1, y1] = prompt.box;
      ctx.lineWidth = Math.max(2, r / 2);
      ctx.strokeStyle = COLOURS.box;
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    }
  }
  ctx.strokeStyle = COLOURS.box;
  ctx.lineWidth = 2;
  if (corner) ctx.strokeRect(corner.x - r, corner.y - r, 2 * r, 2 * r);
  if (preview) {
    ctx.setLineDash([6, 4]);
    ctx.strokeRect(preview.x0, preview.y0, preview.x1 - preview.x0, preview.y1 - preview.y0);
    ctx.setLineDash([]);
  }
}

async function decode(url) {
  const image = new Image();
  image.src = url;
  await image.decode();
  return image;
}

let showing = Promise.resolve();

// Views are drawn one after another, in the order they arrive, each checked once its images
// are decoded: an older answer never covers a newer one.
function show(view, startedAt = null, answeredAt = null) {
  showing = showing
    .then(() => draw(view, startedAt, answeredAt))
    .catch((err) => say(describe(err), true));
  return showing;
}

function stale(view) {
  if (!shown) return false;
  if (view.version < shown.version) return true;
  return view.image !== shown.image && view.image && !view.photo; // a photo not on screen
}

async function draw(view, startedAt, answeredAt) {
  if (stale(view)) {
    if (view.error) say(view.error, true);
    return;
  }
  if (view.photo) {
    photo.src = view.photo;
    await photo.decode();
  }
  const mask = view.mask ? await decode(view.mask) : null;
  if (stale(view)) return;
  const newImage = !shown || view.image !== shown.image;
  if (newImage && view.size) {
    [maskCanvas.width, maskCanvas.height] = view.size;
    [marks.width, marks.height] = view.size;
    [previewCanvas.width, previewCanvas.height] = view.size; // also clears the preview
    frame.style.setProperty("--aspect", String(view.size[0] / view.size[1]));
    corner = null;
  }
  root.classList.toggle("sd-has-photo", Boolean(view.image));
  const ctx = maskCanvas.getContext("2d");
  ctx.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
  if (mask) ctx.drawImage(mask, 0, 0);
  shown = { ...view, photo: undefined };
  root.dataset.version = String(view.version);
  drawMarks();
  say(view.error || view.status, Boolean(view.error));
  if (startedAt !== null) {
    requestAnimationFrame(() => {
      window.segdemoTimings.push({
        ms: performance.now() - startedAt,
        answered_ms: answeredAt - startedAt,
        server_ms: view.server_ms,
        path: fast ? "fast" : "queue",
      });
    });
  }
}

// Operations: one at a time, a few more kept waiting, the rest refused.

// The picture speaks to the rest of the page only through its value and its events: `change`
// when its mask changes (whatever shows details of the mask should mark them stale), `input`
// once the clicks pause, its value then naming the version on screen (`shown`), which the
// details answered for that version can be matched against.
function markStale() {
  props.value = { token };
  trigger("change");
}

function afterPause() {
  clearTimeout(pauseTimer);
  pauseTimer = setTimeout(() => {
    if (inFlight || waiting.length > 0) return;
    props.value = { token, shown: shown ? shown.version : null };
    trigger("input");
  }, PAUSE_MS);
}

function viaQueue(operation) {
  const request = ++requests;
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      queueAnswer = null;
      resolve({ error: "The server did not answer in time: try again." });
    }, QUEUE_TIMEOUT_MS);
    queueAnswer = [
      request,
      (value) => {
        clearTimeout(timer);
        queueAnswer = null;
        resolve(value);
      },
    ];
    trigger("select", { index: 0, value: { ...operation, request } });
  });
}

async function ask(operation) {
  await ready;
  if (!fast) return viaQueue(operation);
  try {
    return await server.operate({ ...operation, token });
  } catch (err) {
    // The call may have been applied before the connection failed: it is not sent again.
    useQueue(describe(err));
    return { error: "The server did not answer that click: click again." };
  }
}

// A first click with the refinement on is the slowest to answer: each of its proposals gets
// a graph cut. So the click asks for a draft too, and a second call, sent beside it, gets the
// network's own mask the moment the network has answered; the page draws it faded on the
// preview canvas until the refined mask replaces it. A draft never covers a newer answer.
let draftNumber = 0;

function firstClickOn(image) {
  return shown && shown.image === image && shown.prompts.length === 0;
}

function wantsDraft(operation) {
  const prompt = operation.prompt;
  return fast && operation.op === "prompt" && prompt.kind === "point" && prompt.label === 1 &&
    firstClickOn(operation.image) && shown.refined;
}

async function showDraft(operation, startedAt) {
  drafted = operation;
  try {
    await ready;
    const answer = await server.draft({ token, draft: operation.draft });
    if (drafted !== operation || !answer || !answer.mask) return;
    const mask = await decode(answer.mask);
    // Not over another photo sent meanwhile (an example picked), nor over a click's answer.
    if (drafted !== operation || !firstClickOn(operation.image)) return;
    const ctx = previewCanvas.getContext("2d");
    ctx.clearRect(0, 0, previewCanvas.width, previewCanvas.height);
    ctx.drawImage(mask, 0, 0);
    say("The network's own mask: refining it on the photo…");
    requestAnimationFrame(() => {
      window.segdemoDrafts.push({ ms: performance.now() - startedAt });
    });
  } catch (err) {
    // A draft is a help, not a must: the click's own answer follows anyway.
  }
}

function dropDraft(operation) {
  if (drafted !== operation) return;
  drafted = null;
  clearPreview();
}

function send(operation, startedAt = null) {
  if (inFlight) {
    if (waiting.length >= MAX_WAITING) {
      say("Too many clicks at once: wait for the mask to catch up.", true);
      return;
    }
    waiting.push([operation, startedAt]);
    return;
  }
  run(operation, startedAt);
}

async function run(operation, startedAt) {
  inFlight = true;
  markStale();
  clearTimeout(pauseTimer);
  const spinner = setTimeout(() => setBusy(true), operation.op === "open" ? 0 : 150);
  try {
    if (wantsDraft(operation)) {
      operation.draft = ++draftNumber;
      showDraft(operation, startedAt);
    }
    const answer = await ask(operation);
    const answeredAt = performance.now();
    if (answer && answer.version !== undefined) await show(answer, startedAt, answeredAt);
    else say((answer && answer.error) || "No answer from the server.", true);
  } catch (err) {
    say(describe(err), true);
  } finally {
    dropDraft(operation);
    clearTimeout(spinner);
    setBusy(false);
    inFlight = false;
    const next = waiting.shift();
    if (next) run(...next);
    else afterPause();
  }
}

// What Python sends (an example, another model, a chosen mask, a queued answer).
watch("value", () => {
  const value = props.value;
  if (!value || typeof value !== "object") return;
  if (value.token) token = value.token;
  if (queueAnswer && value.request === queueAnswer[0]) queueAnswer[1](value);
  else if (value.version !== undefined) show(value).then(afterPause);
  if (value.photo) props.value = { token }; // the photo need not travel back with later events
});

// Hover preview: before the first click, the mask a click under the pointer would give.
// One request at a time; the pointer's latest position is the next one asked about.
let hover = false;
let hoverAt = null;
let hoverBusy = false;

function clearPreview() {
  hoverAt = null;
  previewCanvas.getContext("2d").clearRect(0, 0, previewCanvas.width, previewCanvas.height);
}

function previewWanted() {
  return hover && fast && shown && shown.image && shown.prompts.length === 0 && !inFlight;
}

async function askPreview() {
  if (hoverBusy || !hoverAt || !previewWanted()) return;
  hoverBusy = true;
  const at = hoverAt;
  let again = false;
  try {
    await ready;
    const answer = await server.preview({ token, x: at.x, y: at.y });
    again = Boolean(answer.skipped); // the model was busy: ask once more in a moment
    if (answer.mask && previewWanted() && hoverAt && answer.image === shown.image) {
      const mask = await decode(answer.mask);
      const ctx = previewCanvas.getContext("2d");
      ctx.clearRect(0, 0, previewCanvas.width, previewCanvas.height);
      if (previewWanted() && hoverAt) ctx.drawImage(mask, 0, 0);
      root.dataset.preview = `${at.x},${at.y}`;
    }
  } catch (err) {
    // The preview is a help, not a must: it switches itself off, and the toggle says so.
    setHover(false);
    say(`The hover preview stopped (${describe(err)}); clicks still work.`, true);
  } finally {
    hoverBusy = false;
  }
  if (again) setTimeout(askPreview, 50);
  else if (hoverAt && hoverAt !== at) askPreview();
}

const hoverToggle = root.querySelector('[data-action="hover"]');

function setHover(on) {
  hover = on;
  hoverToggle.setAttribute("aria-pressed", String(on));
  if (!on) clearPreview();
}

hoverToggle.addEventListener("click", () => setHover(!hover));

// Input: pixels of the working image under the pointer.

function pixelAt(event) {
  const rect = photo.getBoundingClientRect();
  const [w, h] = shown.size;
  const x = Math.floor(((event.clientX - rect.left) / rect.width) * w);
  const y = Math.floor(((event.clientY - rect.top) / rect.height) * h);
  return { x: Math.min(Math.max(x, 0), w - 1), y: Math.min(Math.max(y, 0), h - 1) };
}

function boxOf(a, b) {
  return {
    x0: Math.min(a.x, b.x), y0: Math.min(a.y, b.y),
    x1: Math.max(a.x, b.x), y1: Math.max(a.y, b.y),
  };
}

function sendBox(a, b, startedAt) {
  const box = boxOf(a, b);
  const prompt = { kind: "box", box: [box.x0, box.y0, box.x1, box.y1] };
  send({ op: "prompt", prompt, image: shown.image }, startedAt);
}

marks.addEventListener("contextmenu", (event) => event.preventDefault());
marks.addEventListener("pointerdown", (event) => {
  if (!shown || !shown.image) return;
  event.preventDefault();
  clearPreview();
  const at = pixelAt(event);
  const mode = root.dataset.mode;
  if (mode === "box" && event.button === 0) {
    dragging = { from: at, startedAt: event.timeStamp };
    marks.setPointerCapture(event.pointerId);
    return;
  }
  const positive = event.button === 0 && mode === "add";
  const prompt = { kind: "point", x: at.x, y: at.y, label: positive ? 1 : 0 };
  send({ op: "prompt", prompt, image: shown.image }, event.timeStamp);
});
marks.addEventListener("pointermove", (event) => {
  if (dragging) drawMarks(boxOf(dragging.from, pixelAt(event)));
  else if (previewWanted()) {
    hoverAt = pixelAt(event);
    askPreview();
  }
});
marks.addEventListener("pointerleave", clearPreview);
marks.addEventListener("pointercancel", () => {
  dragging = null;
  if (shown) drawMarks();
});
marks.addEventListener("pointerup", (event) => {
  if (!dragging) return;
  const { from, startedAt } = dragging;
  const to = pixelAt(event);
  dragging = null;
  if (Math.abs(to.x - from.x) > 4 && Math.abs(to.y - from.y) > 4) {
    corner = null;
    sendBox(from, to, event.timeStamp);
  } else if (corner) {
    const first = corner;
    corner = null;
    sendBox(first, to, startedAt);
  } else {
    corner = to;
  }
  drawMarks();
});

async function openFile(file) {
  if (!file) return;
  setBusy(true);
  say("Uploading and preparing the photo…");
  try {
    const uploaded = await upload(file);
    send({ op: "open", path: uploaded.path });
  } catch (err) {
    setBusy(false);
    say(`The upload failed: ${describe(err)}`, true);
  }
}

async function exportPng(what) {
  try {
    const answer = await server.export({ token, what });
    if (answer.error) return say(answer.error, true);
    const link = document.createElement("a");
    link.href = answer.data;
    link.download = answer.name;
    link.click();
  } catch (err) {
    say(`The download failed: ${describe(err)}`, true);
  }
}

root.querySelectorAll("[data-mode]").forEach((button) => {
  button.addEventListener("click", () => {
    root.dataset.mode = button.dataset.mode;
    root.querySelectorAll("[data-mode]").forEach((b) => b.classList.toggle("sd-on", b === button));
    corner = null;
    if (shown) drawMarks();
  });
});
root.querySelector('[data-action="undo"]').addEventListener("click", () => {
  if (corner) {
    corner = null;
    drawMarks();
  } else send({ op: "undo" });
});
root.querySelector('[data-action="clear"]').addEventListener("click", () => {
  corner = null;
  send({ op: "clear" });
});
root.querySelector('[data-action="upload"]').addEventListener("click", () => fileInput.click());
root.querySelector('[data-action="mask"]').addEventListener("click", () => exportPng("mask"));
root.querySelector('[data-action="cutout"]').addEventListener("click", () => exportPng("cutout"));
root.querySelector(".sd-drop").addEventListener("click", () => fileInput.click());
fileInput.addEventListener("change", () => {
  openFile(fileInput.files[0]);
  fileInput.value = "";
});
stage.addEventListener("dragover", (event) => {
  event.preventDefault();
  stage.classList.add("sd-dragging");
});
stage.addEventListener("dragleave", () => stage.classList.remove("sd-dragging"));
stage.addEventListener("drop", (event) => {
  event.preventDefault();
  stage.classList.remove("sd-dragging");
  openFile(event.dataTransfer.files[0]);
});
window.addEventListener("paste", (event) => {
  if (root.offsetParent === null) return; // the tab is not on screen
  const item = [...event.clipboardData.items].find((i) => i.type.startsWith("image/"));
  if (item) openFile(item.getAsFile());
});

say("Drop a photo here, upload one, or pick an example.");
const ready = begin(); // every call waits for the page's token
