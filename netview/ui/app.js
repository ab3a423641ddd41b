// weft's status page: polls ../v1/network (the JSON scripts read too) and
// renders it. Plain DOM, no framework; every text goes in through
// textContent, never parsed as HTML. The shard map's cells are built once per n
// and only their attributes change afterwards.
"use strict";

(function () {
  const JSON_URL = "../v1/network";
  const DEFAULT_INTERVAL = 2000;
  const MAX_HANDOVER_ROWS = 200;

  const $ = (id) => document.getElementById(id);

  // el makes an element with a class and a text.
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function setText(id, text) {
    const e = $(id);
    const s = String(text);
    if (e && e.textContent !== s) e.textContent = s;
  }

  const fmtInt = new Intl.NumberFormat("en-US");

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let u = 0;
    let v = Number(n) || 0;
    while (v >= 1024 && u < units.length - 1) {
      v /= 1024;
      u++;
    }
    return (u === 0 ? String(v) : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)) + " " + units[u];
  }

  function clock(d) {
    return d.toLocaleTimeString([], { hour12: false });
  }

  // Stable colours: derived from the node's ID alone, so a node keeps its
  // colour across refreshes, registry changes and pages. An ID ending in a
  // number k (node-7) takes palette colour k for the first ten (well
  // apart, dark enough for white labels), then steps round the colour
  // wheel by the golden angle; other IDs hash.
  const PALETTE = ["#4e79a7", "#e8822a", "#59a14f", "#e15759", "#9b6bb0", "#3f9e98", "#9c755f", "#c9a227", "#d9607a", "#6b7b8c"];
  const colourCache = new Map();
  function colourOf(id) {
    if (id === undefined || id === null) return "#d1d5db";
    let c = colourCache.get(id);
    if (c) return c;
    let k;
    const m = /(\d+)$/.exec(id);
    if (m && m[1].length < 9) {
      k = parseInt(m[1], 10);
    } else {
      let h = 2166136261;
      for (let i = 0; i < id.length; i++) {
        h ^= id.charCodeAt(i);
        h = Math.imul(h, 16777619) >>> 0;
      }
      k = 10 + (h % 997);
    }
    if (k < PALETTE.length) {
      c = PALETTE[k];
    } else {
      const hue = (k * 137.508 + 20) % 360;
      const light = [44, 36, 52][k % 3];
      const sat = [60, 68, 52][Math.floor(k / 3) % 3];
      c = "hsl(" + hue.toFixed(1) + ", " + sat + "%, " + light + "%)";
    }
    colourCache.set(id, c);
    return c;
  }

  // ---- the shard map ----

  const grid = { n: -1, cells: [], owner: [], state: [], title: [] };

  function buildGrid(n) {
    const map = $("shard-map");
    map.textContent = "";
    const big = n <= 160;
    map.classList.toggle("big", big);
    const size = big ? 26 : n <= 400 ? 18 : n <= 1200 ? 14 : 10;
    map.style.setProperty("--cell", size + "px");
    const frag = document.createDocumentFragment();
    grid.cells = new Array(n);
    grid.owner = new Array(n).fill(undefined);
    grid.state = new Array(n).fill(undefined);
    grid.title = new Array(n).fill(undefined);
    for (let s = 0; s < n; s++) {
      const c = document.createElement("div");
      c.className = "shard-cell";
      c.dataset.shard = String(s);
      if (big) c.textContent = String(s);
      grid.cells[s] = c;
      frag.appendChild(c);
    }
    map.appendChild(frag);
    grid.n = n;
  }

  function renderGrid(d) {
    const n = d.shards;
    if (grid.n !== n) buildGrid(n);
    const nodes = d.nodes;
    const moved = new Map(); // shard → k (index in the handover arrays)
    const h = d.handover;
    for (let k = 0; k < h.shards.length; k++) moved.set(h.shards[k], k);
    for (let s = 0; s < n; s++) {
      const c = grid.cells[s];
      const oi = d.owners[s];
      const owner = oi >= 0 && oi < nodes.length ? nodes[oi].id : "";
      if (grid.owner[s] !== owner) {
        c.dataset.owner = owner;
        c.style.backgroundColor = owner ? colourOf(owner) : "";
        grid.owner[s] = owner;
      }
      const k = moved.get(s);
      const state = k === undefined ? "none" : h.states[k];
      if (grid.state[s] !== state) {
        c.dataset.state = state;
        grid.state[s] = state;
      }
      let title = "shard " + s + " · " + (owner || "no owner");
      if (k !== undefined) {
        const fi = h.from[k];
        title += " · moved from " + (fi >= 0 ? nodes[fi].id : "?") + " · " + state;
      }
      if (grid.title[s] !== title) {
        c.title = title;
        grid.title[s] = title;
      }
    }
    setText("map-caption", fmtInt.format(n) + " shards, coloured by owner; " + h.moved + " moved this epoch");
  }

  function renderOwnerLegend(d) {
    const legend = $("owner-legend");
    const frag = document.createDocumentFragment();
    for (const node of d.nodes) {
      if (!node.shards) continue;
      const item = el("span", "item");
      const sw = el("span", "swatch");
      sw.style.backgroundColor = colourOf(node.id);
      item.append(sw, el("span", "", node.id + " (" + node.shards + ")"));
      frag.appendChild(item);
    }
    legend.textContent = "";
    legend.appendChild(frag);
  }

  // ---- header and cards ----

  function renderHeader(d) {
    setText("epoch", d.epoch);
    const phase = $("phase");
    setText("phase", d.phase);
    phase.className = d.phase;
    setText("leader", d.leader || "unknown");
    setText("voter", d.voter);
    setText("index", fmtInt.format(d.index));
    const at = new Date(d.generated_at);
    setText("updated", isNaN(at) ? "–" : clock(at));
    setText("node-count", d.nodes.filter((n) => n.registered).length);
    const hc = d.health;
    setText("node-health", hc.up + " up · " + hc.lagging + " lagging · " + hc.down + " down");
    setText("shard-count", fmtInt.format(d.shards));
    const owners = new Set(d.owners.filter((i) => i >= 0)).size;
    setText("shard-sub", "owned by " + owners + " node" + (owners === 1 ? "" : "s"));
    setText("blob-count", fmtInt.format(d.blobs.certified));
    setText("blob-sub", bytes(d.blobs.certified_bytes) + " · " + fmtInt.format(d.blobs.registered) + " pending");
  }

  // ---- handover ----

  const STATE_ORDER = { stuck: 0, forced: 1, waiting: 2, syncing: 3, synced: 4 };

  function renderHandover(d) {
    const h = d.handover;
    const status = $("handover-status");
    let text, cls;
    if (d.phase === "handover" || h.in_progress) {
      text = "in progress — " + h.counts.synced + " of " + h.moved + " moved shards synced";
      cls = "in-progress";
    } else if (h.moved > 0) {
      text = "done — " + h.moved + " shard" + (h.moved === 1 ? "" : "s") + " moved and synced";
      cls = "done";
    } else {
      text = "stable — no shard moved this epoch";
      cls = "stable";
    }
    setText("handover-status", text);
    status.className = "status-line " + cls;
    setText("handover-epoch", "epoch " + h.epoch + (h.forced ? " · forced change" : "") +
      (h.started_index ? " · started at index " + fmtInt.format(h.started_index) : ""));
    const pct = h.moved ? (100 * h.counts.synced) / h.moved : 100;
    $("handover-bar").style.width = pct.toFixed(1) + "%";
    setText("handover-progress", h.moved ? pct.toFixed(0) + "% synced" : "nothing to sync");

    const chips = document.createDocumentFragment();
    for (const s of ["synced", "syncing", "waiting", "stuck", "forced"]) {
      const v = h.counts[s] || 0;
      chips.appendChild(el("li", "chip " + s + (v ? "" : " zero"), s + " " + v));
    }
    const ul = $("handover-counts");
    ul.textContent = "";
    ul.appendChild(chips);

    // The shards not yet synced, worst first.
    const rows = [];
    for (let k = 0; k < h.shards.length; k++) {
      if (h.states[k] !== "synced") rows.push(k);
    }
    rows.sort((a, b) => STATE_ORDER[h.states[a]] - STATE_ORDER[h.states[b]] || h.shards[a] - h.shards[b]);
    const tbody = $("handover-rows");
    const frag = document.createDocumentFragment();
    for (const k of rows.slice(0, MAX_HANDOVER_ROWS)) {
      const shard = h.shards[k];
      const fi = h.from[k];
      const oi = d.owners[shard];
      const tr = el("tr", "handover-row");
      tr.dataset.shard = String(shard);
      tr.dataset.state = h.states[k];
      tr.append(el("td", "num", shard), nodeCell(d, fi), nodeCell(d, oi));
      const st = el("td");
      st.appendChild(el("span", "badge " + h.states[k], h.states[k]));
      tr.appendChild(st);
      frag.appendChild(tr);
    }
    tbody.textContent = "";
    tbody.appendChild(frag);
    $("handover-table").hidden = rows.length === 0;
    setText("handover-more", rows.length > MAX_HANDOVER_ROWS ? "… and " + (rows.length - MAX_HANDOVER_ROWS) + " more not yet synced" :
      rows.length === 0 ? (h.moved ? "Every moved shard is synced." : "") : "");
  }

  function nodeCell(d, i) {
    const td = el("td");
    if (i === undefined || i < 0 || i >= d.nodes.length) {
      td.textContent = "–";
      return td;
    }
    td.appendChild(nodeName(d.nodes[i].id));
    return td;
  }

  function nodeName(id) {
    const span = el("span", "node-name");
    const sw = el("span", "swatch");
    sw.style.backgroundColor = colourOf(id);
    span.append(sw, el("span", "", id));
    return span;
  }

  // ---- nodes ----

  const rowsByID = new Map();

  function renderNodes(d) {
    const tbody = $("node-rows");
    const seen = new Set();
    let totalStake = 0;
    for (const n of d.nodes) totalStake += n.stake;
    for (const n of d.nodes) {
      seen.add(n.id);
      let row = rowsByID.get(n.id);
      if (!row) {
        row = el("tr", "node-row");
        row.dataset.node = n.id;
        row.cells_ = [];
        for (let i = 0; i < 10; i++) {
          const td = el("td");
          if (i === 2 || i === 3 || i === 5 || i === 7) td.className = "num";
          row.cells_.push(td);
          row.appendChild(td);
        }
        row.cells_[0].appendChild(nodeName(n.id));
        rowsByID.set(n.id, row);
      }
      tbody.appendChild(row); // in the JSON's order (ID order)
      row.dataset.health = n.health;
      row.classList.toggle("down", n.health === "down");
      const c = row.cells_;
      setCell(c[1], n.address || "–", "mono");
      const share = totalStake ? " (" + ((100 * n.stake) / totalStake).toFixed(1) + "%)" : "";
      setCell(c[2], fmtInt.format(n.stake) + share);
      setCell(c[3], n.shards);
      c[4].textContent = "";
      const badge = el("span", "badge " + n.health, n.health);
      c[4].appendChild(badge);
      if (n.error) {
        c[4].title = n.error;
        c[4].appendChild(el("div", "err", n.error));
      } else {
        c[4].removeAttribute("title");
      }
      if (!n.registered) c[4].appendChild(el("div", "err", "not in the registry"));
      setCell(c[5], n.health === "down" ? "–" : n.epoch);
      const syncing = n.syncing ? n.syncing.length : 0;
      setCell(c[6], n.health === "down" ? "–" : n.synced + " synced" + (syncing ? " · " + syncing + " syncing" : ""));
      setCell(c[7], n.health === "down" ? "–" : fmtInt.format(n.backlog));
      c[8].textContent = "";
      const hist = el("span", "history");
      for (const o of n.history || []) {
        const dot = el("i", o);
        dot.title = o;
        hist.appendChild(dot);
      }
      c[8].appendChild(hist);
      if (n.history && n.history.length) c[8].appendChild(el("span", "sub", " " + n.history[0]));
      setCell(c[9], n.flagged ? "flagged" : "", n.flagged ? "flag" : "");
    }
    for (const [id, row] of rowsByID) {
      if (!seen.has(id)) {
        row.remove();
        rowsByID.delete(id);
      }
    }
    const registered = d.nodes.filter((n) => n.registered);
    const staked = registered.filter((n) => n.stake > 0).length;
    setText("nodes-caption", registered.length + " registered, " + staked + " staked, total stake " + fmtInt.format(totalStake));
  }

  function setCell(td, text, cls) {
    const s = String(text);
    if (td.textContent !== s) td.textContent = s;
    if (cls !== undefined && td.className !== cls) td.className = cls;
  }

  // ---- challenge ----

  function renderChallenge(d) {
    const ch = d.challenge;
    const status = $("challenge-status");
    const tbody = $("verdict-rows");
    tbody.textContent = "";
    const ul = $("challenge-counts");
    ul.textContent = "";
    if (!ch) {
      setText("round-big", "none");
      setText("round-sub", d.challenge_error ? "unreadable" : "no round yet");
      setText("challenge-caption", "");
      status.textContent = d.challenge_error ? "Could not read the latest round: " + d.challenge_error : "No challenge round has run yet.";
      return;
    }
    setText("round-big", "#" + ch.round);
    setText("round-sub", (ch.open ? "open" : "closed") + " · " + ch.counts.passed + " passed · " + (ch.counts.failed + ch.counts.missed) + " not");
    setText("challenge-caption", "round " + ch.round + " · epoch " + ch.epoch + " · " + ch.blobs + " blob" + (ch.blobs === 1 ? "" : "s") + " sampled");
    status.textContent = ch.open ? "open — verdicts still coming in" : "closed";
    for (const s of ["passed", "failed", "missed", "open"]) {
      const v = ch.counts[s] || 0;
      ul.appendChild(el("li", "chip " + s + (v ? "" : " zero"), s + " " + v));
    }
    const frag = document.createDocumentFragment();
    for (const v of ch.verdicts) {
      const tr = el("tr", "verdict-row");
      const id = v.node >= 0 && v.node < d.nodes.length ? d.nodes[v.node].id : "?";
      tr.dataset.node = id;
      tr.dataset.outcome = v.outcome;
      const name = el("td");
      name.appendChild(nodeName(id));
      const out = el("td");
      out.appendChild(el("span", "badge " + v.outcome, v.outcome));
      const reason = el("td", "err", v.reasons ? v.reason + (v.reasons > 1 ? " (+" + (v.reasons - 1) + " more)" : "") : "");
      tr.append(name, out, el("td", "num", fmtInt.format(v.passed_weight)), el("td", "num", fmtInt.format(v.failed_weight)), reason);
      frag.appendChild(tr);
    }
    tbody.appendChild(frag);
  }

  // ---- blobs ----

  function renderBlobs(d) {
    const b = d.blobs;
    setText("blobs-certified", fmtInt.format(b.certified));
    setText("blobs-certified-bytes", bytes(b.certified_bytes));
    setText("blobs-registered", fmtInt.format(b.registered));
    setText("blobs-registered-bytes", bytes(b.registered_bytes));
    setText("blobs-invalid", fmtInt.format(b.invalid));
    setText("blobs-ended", fmtInt.format(b.ended));
    setText("blobs-objects", fmtInt.format(b.objects));
  }

  // ---- polling ----

  let etag = "";
  let last = null; // the last snapshot rendered
  let interval = DEFAULT_INTERVAL;
  let firstRender = true;

  function render(d) {
    const t0 = performance.now();
    renderHeader(d);
    renderGrid(d);
    renderOwnerLegend(d);
    renderHandover(d);
    renderNodes(d);
    renderChallenge(d);
    renderBlobs(d);
    // How long the render itself took (the scale measure reads it).
    document.body.dataset.renderMs = (performance.now() - t0).toFixed(1);
    document.body.dataset.rendered = d.epoch + ":" + d.index;
    if (firstRender) {
      firstRender = false;
      // The first snapshot is in the DOM; then, after the frame that
      // shows it (style, layout, paint), what a user waits for.
      performance.mark("weft-first-render");
      requestAnimationFrame(() => setTimeout(() => {
        performance.mark("weft-first-paint");
        // The panels below the fold skipped the first frame's layout
        // (content-visibility); from now on they are laid out like the
        // rest, so that printing and screenshots of the page show them.
        for (const p of document.querySelectorAll(".panel.lazy")) p.classList.remove("lazy");
      }, 0));
    }
  }

  function showError(msg) {
    const banner = $("banner");
    const since = last ? " Showing the snapshot of " + clock(new Date(last.generated_at)) + "." : "";
    banner.textContent = "Disconnected: " + msg + "." + since + " Retrying every " + Math.round(interval / 1000) + " s.";
    banner.hidden = false;
    document.body.classList.add("stale");
    document.body.dataset.stale = "true";
  }

  function clearError() {
    $("banner").hidden = true;
    document.body.classList.remove("stale");
    delete document.body.dataset.stale;
  }

  async function poll() {
    try {
      const headers = {};
      if (etag) headers["If-None-Match"] = etag;
      const resp = await fetch(JSON_URL, { headers, cache: "no-store" });
      if (resp.status === 304) {
        clearError();
        return;
      }
      if (!resp.ok) {
        let msg = "HTTP " + resp.status;
        try {
          const e = await resp.json();
          if (e && e.error) msg += " " + e.error.status + ": " + e.error.message;
        } catch (_) {
          // not JSON: the status says enough
        }
        showError(msg);
        return;
      }
      const d = await resp.json();
      etag = resp.headers.get("ETag") || "";
      if (d.interval_ms > 0) interval = d.interval_ms;
      last = d;
      clearError();
      render(d);
    } catch (e) {
      showError("cannot reach the server (" + (e && e.message ? e.message : e) + ")");
    } finally {
      setTimeout(poll, interval);
    }
  }

  poll();
})();
