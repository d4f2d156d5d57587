// imgd gallery: search, browse, "more like this", search by a dropped or pasted picture.
// Plain DOM, no framework, no build step; every name from disk goes through textContent.
"use strict";

const PAGE = 24;
const $ = (id) => document.getElementById(id);
const grid = $("grid"), message = $("message"), viewer = $("viewer");

const state = {
  kind: null,      // "recent" | "text" | "similar" | "image" | "dupes" | "alerts"
  query: null,     // the text, or the id "more like this" started from
  hits: [],        // every result shown so far (image searches hold all of theirs here)
  pending: [],     // image-search results not drawn yet
  more: false,
  loading: false,
  groups: 0,       // duplicate groups shown so far (their members are in hits, keeper first)
  current: -1,     // the result open in the viewer
  generation: 0,   // bumps on each new search, so a slow old page never lands in a new grid
};

function say(text, error = false) {
  message.textContent = text;
  message.classList.toggle("error", error);
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) throw new Error((body && body.error) || `the gallery answered ${response.status}`);
  return body;
}

function reset(kind, query, label) {
  state.generation += 1;
  Object.assign(state, { kind, query, hits: [], pending: [], more: true, loading: false, groups: 0, current: -1 });
  grid.replaceChildren();
  grid.classList.toggle("dupes", kind === "dupes" || kind === "alerts");  // rows of thumbnails
  document.body.classList.toggle("dupes-mode", kind === "dupes");
  say(label);
  window.scrollTo(0, 0);
}

function card(hit, index) {
  const figure = document.createElement("figure");
  figure.className = "card";
  figure.tabIndex = 0;
  figure.dataset.index = index;
  figure.dataset.id = hit.id;
  const img = document.createElement("img");
  img.src = `/thumb/${encodeURIComponent(hit.id)}${atTime(hit)}`;
  img.alt = hit.name;
  img.decoding = "async";
  img.loading = index < PAGE ? "eager" : "lazy";
  img.addEventListener("error", () => { figure.classList.add("missing"); figure.title = "no longer readable on disk"; });
  const caption = document.createElement("figcaption");
  const score = document.createElement("span");
  score.className = "score";
  if (hit.score === null) {  // the newest pictures, before any search: the day each was taken
    score.textContent = (hit.taken || "").slice(0, 10);
    score.title = hit.taken ? `taken ${hit.taken}` : "";
  }
  else score.textContent = hit.score.toFixed(3);
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = hit.name;
  name.title = hit.name;
  const more = document.createElement("button");
  more.className = "more";
  more.type = "button";
  more.textContent = "More like this";
  more.addEventListener("click", (event) => { event.stopPropagation(); similar(hit.id); });
  const line = document.createElement("span");
  line.className = "line";
  line.append(score, more);
  if (hit.time != null) {
    const when = document.createElement("span");
    when.className = "when";
    when.textContent = `▶ ${clock(hit.time)}`;
    score.after(when);
  }
  caption.append(name, line);  // the name on a line of its own: IMG_20230110_120000.jpg whole, not "IMG…"
  figure.append(img, caption);
  figure.addEventListener("click", () => openViewer(index));
  return figure;
}

function dupeCard(member, index, keeper) {
  // A group member: its score to the keeper, its size and pixels; the keeper is marked. No delete:
  // imgd never deletes a file, the keeper is only a suggestion.
  const figure = card(member, index);
  const score = figure.querySelector(".score");
  if (keeper) {
    figure.classList.add("keeper");
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = "keeper";
    figure.prepend(badge);
    score.textContent = "keeper";
  }
  else score.textContent = member.same_content ? "copy" : member.score.toFixed(4);  // near copies sit close to 1
  score.title = member.same_content ? "the same bytes as the keeper" : `similarity to the keeper: ${member.score}`;
  const facts = document.createElement("span");
  facts.className = "facts";
  facts.textContent = `${member.width} × ${member.height} · ${formatBytes(member.bytes)}`;
  figure.append(facts);
  return figure;
}

function drawGroups(groups) {
  for (const group of groups) {
    state.groups += 1;
    const section = document.createElement("section");
    section.className = "group";
    section.dataset.kind = group.kind;
    const title = document.createElement("h3");
    const kinds = { exact: "exact copies", near: "near-duplicates", burst: "burst" };
    title.textContent = `${kinds[group.kind] || group.kind}: ${group.members.length} images, ` +
      `${formatBytes(group.reclaimable)} besides the keeper`;
    const row = document.createElement("div");
    row.className = "row";
    group.members.forEach((member, i) => {
      row.append(dupeCard(member, state.hits.length, i === 0));
      state.hits.push(member);
    });
    section.append(title, row);
    grid.append(section);
  }
}

function draw(hits) {
  const start = state.hits.length;
  state.hits.push(...hits);
  grid.append(...hits.map((hit, i) => card(hit, start + i)));
}

function filterParams() {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData($("filters"))) {
    if (String(value).trim() && !(name === "sort" && value === "score")) params.set(name, String(value).trim());
  }
  return params;
}

async function nextPage() {
  if (state.loading || !state.more || !state.kind) return;
  if (state.kind === "image") {
    draw(state.pending.splice(0, PAGE));
    state.more = state.pending.length > 0;
    requestAnimationFrame(fillScreen);
    return;
  }
  state.loading = true;
  const generation = state.generation;
  if (state.kind === "dupes") { await nextGroups(generation); return; }
  const offset = state.hits.length;
  const params = filterParams();
  params.set("offset", offset);
  params.set("limit", PAGE);
  if (state.kind === "text") params.set("q", state.query);
  const url = state.kind === "recent"
    ? `/api/recent?offset=${offset}&limit=${PAGE}`
    : state.kind === "text"
      ? `/api/search?${params}`
      : `/api/similar/${encodeURIComponent(state.query)}?${params}`;
  try {
    const page = await getJSON(url);
    if (generation !== state.generation) return;
    draw(page.hits);
    state.more = page.more && page.hits.length > 0;
    if (!state.hits.length) {
      say(state.kind === "recent" ? "No pictures in the catalog yet." : "No matching images on disk.");
    }
  } catch (error) {
    if (generation === state.generation) { say(error.message, true); state.more = false; }
  } finally {
    if (generation === state.generation) state.loading = false;
  }
  fillScreen();
}

async function nextGroups(generation) {
  const params = filterParams();
  params.set("offset", state.groups);
  params.set("limit", 10);
  try {
    const page = await getJSON(`/api/dupes?${params}`);
    if (generation !== state.generation) return;
    drawGroups(page.groups);
    state.more = page.more && page.groups.length > 0;
    say(page.total
      ? `${page.total.toLocaleString()} groups of the same picture (similarity ≥ ${page.threshold}), the suggested keeper first. imgd never deletes a file.`
      : `No duplicates at similarity ≥ ${page.threshold}.`);
  } catch (error) {
    if (generation === state.generation) { say(error.message, true); state.more = false; }
  } finally {
    if (generation === state.generation) state.loading = false;
  }
  fillScreen();
}

function dupes() {
  closeViewer();
  history.replaceState(null, "", "#dupes");
  reset("dupes", null, "Looking for duplicates…");
  nextPage();
}

async function savedSearches() {
  // Read-only: saved searches are made with `imgd alert add`; the page shows them and what they matched.
  closeViewer();
  history.replaceState(null, "", "#alerts");
  reset("alerts", null, "Loading saved searches…");
  state.more = false;
  const generation = state.generation;
  try {
    const body = await getJSON("/api/alerts");
    if (generation !== state.generation) return;
    for (const alert of body.alerts) {
      const section = document.createElement("section");
      section.className = "group";
      const title = document.createElement("h3");
      const acts = alert.acts.length ? alert.acts.join(" and ") : "log only";
      title.textContent = `${alert.name}: ${alert.query} (${acts}), ${alert.recent.length} recent matches`;
      const row = document.createElement("div");
      row.className = "row";
      for (const hit of alert.recent) {
        row.append(card(hit, state.hits.length));
        state.hits.push(hit);
      }
      section.append(title, row);
      grid.append(section);
    }
    say(body.alerts.length ? "" : "No saved searches; add one with imgd alert add NAME QUERY.");
  } catch (error) {
    if (generation === state.generation) say(error.message, true);
  }
}

const AHEAD = 600;  // px below the window where more results start loading

function fillScreen() {
  // The observer fires only when the sentinel enters or leaves its zone: if a page landed and the
  // sentinel is still inside it (a tall window, small results), ask for the next one here.
  const box = $("sentinel").getBoundingClientRect();
  if (state.more && !state.loading && box.top < window.innerHeight + AHEAD) nextPage();
}

function recent() {
  history.replaceState(null, "", location.pathname);
  reset("recent", null, "The most recent pictures. Search above, or drop a picture to find ones like it.");
  nextPage();
}

function search(text) {
  text = text.trim();
  if (!text) { recent(); return; }
  history.replaceState(null, "", `#q=${encodeURIComponent(text)}`);
  reset("text", text, "");
  nextPage();
}

function similar(id) {
  closeViewer();
  history.replaceState(null, "", `#similar=${encodeURIComponent(id)}`);
  reset("similar", id, "Images like the one you picked:");
  nextPage();
}

async function searchByPicture(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) { say(`${file.name || "That file"} is not a picture.`, true); return; }
  closeViewer();
  reset("image", null, `Searching with ${file.name || "the pasted picture"}…`);
  state.loading = true;
  const generation = state.generation;
  try {
    const page = await getJSON(`/api/search-image?${filterParams()}`, { method: "POST", body: file, headers: { "content-type": file.type } });
    if (generation !== state.generation) return;
    state.pending = page.hits;
    state.more = true;
    state.loading = false;
    say(page.hits.length ? `Images like ${file.name || "the pasted picture"}:` : "No matching images on disk.");
    nextPage();
    fillScreen();
  } catch (error) {
    if (generation === state.generation) { state.loading = false; state.more = false; say(error.message, true); }
  }
}

// -- the full view -----------------------------------------------------------------------------

function formatBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];  // as the command line says them
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// A video's hit carries the time of its best frame: thumbnails show that frame, the viewer plays from it.
function atTime(hit) {
  return hit.time != null ? `?t=${hit.time}` : "";
}

function clock(seconds) {
  const whole = Math.floor(seconds);
  const h = Math.floor(whole / 3600), m = Math.floor((whole % 3600) / 60), s = whole % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

function stopVideo() {
  const player = $("full-video");
  player.pause();
  player.removeAttribute("src");
  player.load();
  player.hidden = true;
}

async function openViewer(index) {
  const hit = state.hits[index];
  if (!hit) return;
  state.current = index;
  viewer.hidden = false;
  stopVideo();
  $("full").hidden = hit.time != null;
  if (hit.time != null) {
    const player = $("full-video");
    player.hidden = false;
    player.poster = `/view/${encodeURIComponent(hit.id)}${atTime(hit)}`;
    player.src = `/original/${encodeURIComponent(hit.id)}#t=${hit.time}`;
  }
  $("full").src = `/view/${encodeURIComponent(hit.id)}${atTime(hit)}`;
  $("full").alt = hit.name;
  $("v-name").textContent = hit.name;
  $("v-original").href = `/original/${encodeURIComponent(hit.id)}`;
  const details = $("v-details");
  details.replaceChildren();
  try {
    const info = await getJSON(`/api/item/${encodeURIComponent(hit.id)}`);
    if (state.current !== index) return;
    const rows = [
      ["Folder", info.path.slice(0, info.path.length - info.name.length)],
      ["Taken", info.taken || "—"],
      ["Camera", info.camera || "—"],
      ["Place", info.place || "—"],
      ["Pixels", info.width ? `${info.width} × ${info.height}` : "—"],
      ["Size", formatBytes(info.bytes)],
      ["Modified", new Date(info.modified * 1000).toLocaleString()],
      ...(hit.score === null ? [] : [[state.kind === "dupes" ? "Score to keeper" : "Score", hit.score.toFixed(4)]]),
    ];
    // The RAW and the live video beside it: every one (a still may have both), else the one name.
    const siblings = hit.siblings && hit.siblings.length ? hit.siblings : hit.sibling ? [hit.sibling] : [];
    if (siblings.length) rows.splice(1, 0, [siblings.length > 1 ? "Siblings" : "Sibling", siblings.join(", ")]);
    for (const [label, value] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      dd.textContent = value;
      details.append(dt, dd);
    }
    if (hit.words && hit.words.length) {  // the lines of its words the search matched, highlighted
      const dt = document.createElement("dt");
      dt.textContent = "Words";
      const dd = document.createElement("dd");
      for (const line of hit.words) {
        const mark = document.createElement("mark");
        mark.className = "words";
        mark.textContent = line;
        dd.append(mark, document.createElement("br"));
      }
      details.append(dt, dd);
    }
  } catch (error) {
    const dd = document.createElement("dd");
    dd.textContent = error.message;
    details.append(dd);
  }
  if (index >= state.hits.length - 4) nextPage();
}

function closeViewer() {
  if (viewer.hidden) return;
  viewer.hidden = true;
  $("full").removeAttribute("src");
  stopVideo();
  const back = grid.querySelector(`[data-index="${state.current}"]`);
  if (back) back.focus();
}

function step(delta) {
  const next = state.current + delta;
  if (next >= 0 && next < state.hits.length) openViewer(next);
}

// -- keyboard ----------------------------------------------------------------------------------

function columns() {
  const cards = grid.children;
  if (!cards.length) return 1;
  const top = cards[0].offsetTop;
  let n = 0;
  while (n < cards.length && cards[n].offsetTop === top) n += 1;
  return Math.max(1, n);
}

function moveFocus(delta) {
  const active = document.activeElement;
  const from = active && active.classList.contains("card") ? Number(active.dataset.index) : -1;
  const to = Math.min(state.hits.length - 1, Math.max(0, from < 0 ? 0 : from + delta));
  const target = grid.querySelector(`[data-index="${to}"]`);
  if (target) { target.focus(); target.scrollIntoView({ block: "nearest" }); }
  if (to >= state.hits.length - columns() * 2) nextPage();
}

document.addEventListener("keydown", (event) => {
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  if (!viewer.hidden) {
    const keys = { ArrowLeft: () => step(-1), ArrowRight: () => step(1), Escape: closeViewer,
      m: () => similar(state.hits[state.current].id) };
    if (keys[event.key]) { event.preventDefault(); keys[event.key](); }
    return;
  }
  const field = document.activeElement && document.activeElement.tagName;
  const typing = field === "INPUT" || field === "SELECT" || field === "TEXTAREA";
  if (event.key === "/" && !typing) { event.preventDefault(); $("q").focus(); $("q").select(); return; }
  if (typing) {
    if (event.key === "ArrowDown" && document.activeElement === $("q") && state.hits.length) {
      event.preventDefault();
      moveFocus(0);
    }
    return;
  }
  const active = document.activeElement;
  const onCard = active && active.classList.contains("card");
  const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns() };
  if (event.key in moves) { event.preventDefault(); moveFocus(moves[event.key]); return; }
  if (onCard && event.key === "Enter") { event.preventDefault(); openViewer(Number(active.dataset.index)); }
  if (onCard && event.key === "m") { event.preventDefault(); similar(active.dataset.id); }
});

// -- wiring ------------------------------------------------------------------------------------

$("search").addEventListener("submit", (event) => { event.preventDefault(); search($("q").value); });
$("filters").addEventListener("submit", (event) => { event.preventDefault(); rerun(); });
$("filters").addEventListener("change", () => rerun());

function rerun() {
  // A filter changed: the same search again (a dropped picture has to be dropped again).
  if (state.kind === "text") search(state.query);
  else if (state.kind === "similar") similar(state.query);
  else if (state.kind === "dupes") dupes();
}
$("dupes").addEventListener("click", dupes);
$("alerts").addEventListener("click", savedSearches);
$("file").addEventListener("change", (event) => { searchByPicture(event.target.files[0]); event.target.value = ""; });
$("v-close").addEventListener("click", closeViewer);
$("v-prev").addEventListener("click", () => step(-1));
$("v-next").addEventListener("click", () => step(1));
$("v-similar").addEventListener("click", () => similar(state.hits[state.current].id));
viewer.addEventListener("click", (event) => { if (event.target === viewer || event.target.tagName === "FIGURE") closeViewer(); });

let dragDepth = 0;
window.addEventListener("dragenter", (event) => {
  if (!event.dataTransfer || !Array.from(event.dataTransfer.types).includes("Files")) return;
  dragDepth += 1;
  $("drop").hidden = false;
});
window.addEventListener("dragleave", () => { dragDepth = Math.max(0, dragDepth - 1); if (!dragDepth) $("drop").hidden = true; });
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  $("drop").hidden = true;
  const file = event.dataTransfer && event.dataTransfer.files[0];
  if (file) searchByPicture(file);
});
window.addEventListener("paste", (event) => {
  const file = Array.from((event.clipboardData && event.clipboardData.files) || []).find((f) => f.type.startsWith("image/"));
  if (file) { event.preventDefault(); searchByPicture(file); }
});

new IntersectionObserver((entries) => {
  if (entries.some((entry) => entry.isIntersecting)) nextPage();
}, { rootMargin: `${AHEAD}px` }).observe($("sentinel"));

async function refreshStatus() {
  const box = $("status");
  try {
    const s = await getJSON("/api/status");
    const parts = [`${s.images.toLocaleString()} images`];
    if (s.failed) parts.push(`${s.failed.toLocaleString()} failed`);
    if (s.daemon) parts.push(s.queue ? `${s.queue.toLocaleString()} in the queue` : "up to date");
    else parts.push("daemon not running");
    if (s.change) {
      const share = Math.floor((100 * s.change.done) / Math.max(1, s.change.total));
      parts.push(`changing model: ${share}% re-embedded`);
    }
    if (s.newest) parts.push(`last indexed: ${s.newest.split("/").pop()}`);
    box.textContent = parts.join(" · ");
    box.title = s.newest || "";
    box.classList.toggle("live", Boolean(s.daemon && s.queue));
  } catch (error) {
    box.textContent = error.message;
  }
}
refreshStatus();
setInterval(refreshStatus, 2000);

function fromHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get("q")) { $("q").value = params.get("q"); search(params.get("q")); }
  else if (params.get("similar")) similar(params.get("similar"));
  else if (params.has("dupes")) dupes();
  else if (params.has("alerts")) savedSearches();
  else recent();
}
fromHash();
