/* Herald admin console: plain JavaScript, no dependencies, no build step.
 *
 * Every value that comes from Herald (and so possibly from a notification's payload) reaches
 * the page through textContent or a DOM property, never through innerHTML: a subject such as
 * <img src=x onerror=…> is shown as those characters. The page runs under a
 * Content-Security-Policy without 'unsafe-inline', so it has no inline script, handler or style.
 *
 * The session is an HttpOnly cookie; state-changing requests carry the session's CSRF token
 * (X-CSRF-Token). Live figures arrive over server-sent events (/v1/admin/stream).
 */
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const FINAL = new Set(["sent", "delivered", "failed", "dead", "cancelled", "suppressed", "bounced"]);
  const PAUSABLE = new Set(["email", "sms", "fax", "browser"]);
  const RATE_SERIES = [
    { key: "incoming", label: "incoming", color: "#2f6fb3", cls: "c0" },
    { key: "sent", label: "sent", color: "#2f855a", cls: "c1" },
    { key: "delivered", label: "delivered", color: "#38a3a5", cls: "c2" },
    { key: "failed", label: "failed", color: "#c53030", cls: "c3" },
    { key: "suppressed", label: "suppressed", color: "#b7791f", cls: "c4" },
    { key: "bounced", label: "bounced", color: "#822727", cls: "c6" },
  ];
  const DEPTH_SERIES = [{ key: "depth", label: "waiting", color: "#6b46c1", cls: "c5" }];
  const HISTORY_SECONDS = 600;
  const WINDOWS = [60, 120, 300, 600];  // the charts' time axis grows with the history there is

  const state = {
    csrf: null,
    stream: null,
    overview: null,
    history: [],
    view: null,
    list: { params: new URLSearchParams(), cursors: [], cursor: null, next: null, items: [],
            selected: new Set(), loading: false, again: false, loadedAt: 0, counters: "",
            failed: null },
    detail: { tag: null, item: null, loading: false, loadedAt: 0, counters: "" },
    outboxLoadedAt: 0,
    suppressions: { tenant: "", contact: "", items: [], loading: 0 },
  };

  // -- small DOM helpers (text only) --------------------------------------------------------
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "className") node.className = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name in node && typeof value !== "string") node[name] = value;
      else node.setAttribute(name, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const setText = (id, text) => { $(id).textContent = text; };

  function fmtRate(n) {
    if (n === null || n === undefined) return "–";
    return n >= 100 ? Math.round(n).toLocaleString() : n >= 10 ? n.toFixed(1) : n.toFixed(2);
  }
  const fmtInt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString());
  function fmtAge(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 60) return `${Math.round(seconds)} s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
    return `${(seconds / 86400).toFixed(1)} d`;
  }
  const pad = (n) => String(n).padStart(2, "0");
  function fmtTime(epoch, withSeconds = true) {
    if (!epoch) return "–";
    const d = new Date(epoch * 1000);
    const time = `${pad(d.getHours())}:${pad(d.getMinutes())}${withSeconds ? ":" + pad(d.getSeconds()) : ""}`;
    const today = new Date();
    if (d.toDateString() === today.toDateString()) return time;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
  }
  const badge = (status, label) => el("span", { className: `badge ${status}` }, label || status);

  let toastTimer = null;
  function toast(message, isError = false) {
    const node = $("toast");
    node.textContent = message;
    node.className = isError ? "toast error" : "toast";
    node.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { node.hidden = true; }, isError ? 8000 : 4000);
  }

  // -- the API ----------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, body) {
      const error = (body && body.error) || {};
      super(error.message || `HTTP ${status}`);
      this.status = status;
      this.code = error.code;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      if (state.csrf) headers["X-CSRF-Token"] = state.csrf;
    }
    const response = await fetch(path, {
      method, headers, credentials: "same-origin", cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) {
      if (response.status === 401 && path !== "/v1/admin/session") showLogin("Your session has ended; log in again.");
      throw new ApiError(response.status, data);
    }
    return data;
  }

  // -- login ------------------------------------------------------------------------------------
  function showLogin(message, isError = true) {
    closeStream();
    state.csrf = null;
    $("app").hidden = true;
    $("login").hidden = false;
    setText("login-error", message || "");
    $("login-error").className = isError ? "form-error" : "form-error info";
    $("login-key").focus();
  }

  async function login(event) {
    event.preventDefault();
    const key = $("login-key").value.trim();
    if (!key) return;
    $("login-submit").disabled = true;
    setText("login-error", "");
    try {
      const answer = await api("POST", "/v1/admin/session", { key });
      state.csrf = answer.csrf;
      $("login-key").value = "";
      startApp();
    } catch (error) {
      const reason = {
        401: "That is not the admin key.",
        403: "That is a tenant's API key; the console needs the admin key.",
        429: "Too many wrong keys; wait a minute and try again.",
      }[error.status] || error.message;
      setText("login-error", reason);
      $("login-error").className = "form-error";
    } finally {
      $("login-submit").disabled = false;
    }
  }

  async function logout() {
    try { await api("DELETE", "/v1/admin/session"); } catch (_) { /* the cookie goes anyway */ }
    showLogin("Logged out.", false);
  }

  async function boot() {
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", logout);
    wireNotifications();
    wireDetail();
    wireSuppressions();
    $("outbox-refresh").addEventListener("click", loadOutbox);
    $("outbox-channel").addEventListener("change", loadOutbox);
    window.addEventListener("hashchange", route);
    window.addEventListener("resize", drawCharts);
    buildLegend("legend-rates", RATE_SERIES);
    buildLegend("legend-depth", DEPTH_SERIES);
    try {
      const session = await api("GET", "/v1/admin/session");
      if (session.authenticated) {
        state.csrf = session.csrf;
        startApp();
        return;
      }
    } catch (_) { /* shown as the login form */ }
    showLogin();
  }

  function startApp() {
    $("login").hidden = true;
    $("app").hidden = false;
    openStream();
    if (!location.hash || location.hash === "#" || location.hash === "#/") location.hash = "#/overview";
    else route();
  }

  // -- live updates (server-sent events) --------------------------------------------------------
  function setLive(on, text) {
    const node = $("live");
    node.className = on ? "live on" : "live off";
    node.textContent = text;
  }

  function openStream() {
    closeStream();
    const stream = new EventSource("/v1/admin/stream");
    state.stream = stream;
    stream.addEventListener("open", () => setLive(true, "live"));
    stream.addEventListener("overview", (event) => onOverview(JSON.parse(event.data)));
    stream.addEventListener("notable", (event) => addActivity(JSON.parse(event.data)));
    stream.addEventListener("error", async () => {
      setLive(false, "reconnecting…");
      if (stream.readyState === EventSource.CLOSED) {
        try {  // closed for good (not a stream's normal end): is the session still valid?
          const session = await api("GET", "/v1/admin/session");
          if (session.authenticated) openStream();
          else showLogin("Your session has ended; log in again.");
        } catch (_) { setTimeout(() => { if (state.stream === stream) openStream(); }, 3000); }
      }
    });
  }

  function closeStream() {
    if (state.stream) state.stream.close();
    state.stream = null;
    setLive(false, "offline");
  }

  function onOverview(overview) {
    if (overview.history.length > 1 || !state.history.length) state.history = overview.history;
    else state.history.push(...overview.history);
    const cutoff = overview.at - HISTORY_SECONDS;
    state.history = state.history.filter((point) => point.at >= cutoff);
    const previous = state.overview;
    state.overview = overview;
    renderOverview();
    // A view reloads when the counters moved since it loaded (a throttled reload is
    // tried again at the next overview, since its counters are still the old ones).
    const counters = countersNow();
    // A search that failed is not sent again by itself: the operator changes it or searches again.
    if (state.view === "notifications" && state.list.cursors.length === 0 && !state.list.failed &&
        counters !== state.list.counters) loadList(true);
    const item = state.detail.item;
    if (state.view === "detail" && item && (counters !== state.detail.counters || !FINAL.has(item.status))) loadDetail(true);
    const changed = !previous || JSON.stringify(previous.counters) !== counters;
    if (state.view === "outbox" && changed && Date.now() - state.outboxLoadedAt > 3000) loadOutbox();
  }

  const countersNow = () => (state.overview ? JSON.stringify(state.overview.counters) : "");

  // -- routing ----------------------------------------------------------------------------------
  function route() {
    const hash = location.hash.replace(/^#\/?/, "");
    const [path, query] = hash.split("?");
    const [view, ...rest] = path.split("/");
    for (const link of document.querySelectorAll("#nav a")) {
      const active = link.dataset.view === view || (view === "n" && link.dataset.view === "notifications");
      link.classList.toggle("active", active);
    }
    for (const section of document.querySelectorAll(".view")) section.hidden = true;
    if (view === "n" && rest.length) {
      state.view = "detail";
      $("view-detail").hidden = false;
      openDetail(decodeURIComponent(rest.join("/")));
    } else if (view === "notifications") {
      state.view = "notifications";
      $("view-notifications").hidden = false;
      openList(new URLSearchParams(query || ""));
    } else if (view === "suppressions") {
      state.view = "suppressions";
      $("view-suppressions").hidden = false;
      openSuppressions(new URLSearchParams(query || ""));
    } else if (view === "outbox") {
      state.view = "outbox";
      $("view-outbox").hidden = false;
      loadOutbox();
    } else if (view === "analytics") {
      state.view = "analytics";
      $("view-analytics").hidden = false;
      loadAnalytics();
    } else {
      state.view = "overview";
      $("view-overview").hidden = false;
      renderOverview();
    }
  }

  // -- overview ---------------------------------------------------------------------------------
  function renderOverview() {
    const o = state.overview;
    if (!o) return;
    setText("m-incoming", fmtRate(o.rates.incoming));
    setText("m-sent", fmtRate(o.rates.sent));
    setText("m-delivered", fmtRate(o.rates.delivered));
    setText("m-failed", fmtRate(o.rates.failed));
    $("m-failed").className = o.rates.failed > 0 ? "value bad" : "value";
    setText("m-waiting", fmtInt(o.depth.queued + o.depth.retrying + o.depth.sending));
    setText("m-waiting-hint", `${fmtInt(o.depth.queued)} queued · ${fmtInt(o.depth.sending)} sending`);
    setText("m-retrying", fmtInt(o.retries_pending));
    setText("m-suppressed", fmtRate(o.rates.suppressed));
    setText("m-suppressed-hint", `per second, never sent · ${fmtInt(o.counters.suppressed || 0)} since the shards started`);
    setText("m-bounced", fmtRate(o.rates.bounced));
    setText("m-bounced-hint", `per second, sent then came back · ${fmtInt(o.counters.bounced || 0)} since the shards started`);
    $("m-bounced").className = o.rates.bounced > 0 ? "value warn" : "value";
    setText("m-dead", fmtInt(o.dead_letters));
    $("m-dead").className = o.dead_letters > 0 ? "value bad" : "value";
    setText("m-oldest", fmtAge(o.oldest_queued_age));
    $("m-oldest").className = o.oldest_queued_age > 60 ? "value warn" : "value";
    renderChannels(o);
    renderShards(o);
    if (state.view === "overview") drawCharts();
  }

  function renderChannels(o) {
    const rows = o.channels.map((c) => {
      let action = null;
      if (PAUSABLE.has(c.channel)) {
        action = c.paused
          ? el("button", { type: "button", className: "primary", dataset: { channel: c.channel, action: "resume" },
                           onclick: () => setPaused(c.channel, false) }, "Resume")
          : el("button", { type: "button", dataset: { channel: c.channel, action: "pause" },
                           onclick: () => setPaused(c.channel, true) }, "Pause");
      }
      const stateBadge = c.paused
        ? el("span", { className: "badge paused", title: `paused since ${fmtTime(c.paused_since)}` }, "paused")
        : el("span", { className: "badge running" }, "delivering");
      const circuits = c.pool.open_circuits.length
        ? el("span", { className: "circuit" }, c.pool.open_circuits.join(", ")) : "–";
      return el("tr", { dataset: { channel: c.channel } },
        el("td", { className: "t" }, el("strong", {}, c.channel)),
        el("td", {}, fmtInt(c.queued)), el("td", {}, fmtInt(c.sending)), el("td", {}, fmtInt(c.retrying)),
        el("td", {}, fmtAge(c.oldest_queued_age)),
        el("td", {}, c.pool.size ? `${c.pool.running}/${c.pool.size}` : "–"),
        el("td", {}, fmtInt(c.pool.restarts)),
        el("td", { className: "t" }, circuits),
        el("td", { className: "t" }, stateBadge),
        el("td", {}, action));
    });
    $("channels").replaceChildren(...rows);
  }

  function renderShards(o) {
    const rows = o.shards.map((s) => {
      const waiting = Object.values(s.depth).reduce((a, b) => a + b, 0);
      const parts = Object.entries(s.depth).filter(([, n]) => n > 0)
        .map(([channel, n]) => `${channel.toLowerCase()} ${n}`).join(" · ");
      return el("tr", {},
        el("td", { className: "t" }, `shard ${s.shard}`),
        el("td", { className: "t" }, s.up ? el("span", { className: "badge running" }, "up")
                                          : el("span", { className: "badge down", title: s.reason || "" },
                                               s.reason && s.reason !== "not answering" ? "down" : "not answering")),
        el("td", {}, s.up ? fmtInt(waiting) : "–"),
        el("td", {}, fmtInt(s.dead_letters)),
        el("td", { className: "t" }, s.up ? (parts || "–") : (s.reason || "–")));
    });
    $("shards").replaceChildren(...rows);
  }

  async function setPaused(channel, paused) {
    try {
      await api("POST", `/v1/admin/channels/${encodeURIComponent(channel)}/${paused ? "pause" : "resume"}`);
      toast(`${channel} ${paused ? "paused: nothing is sent until you resume it" : "resumed"}`);
      const o = state.overview;
      if (o) {  // at once, without waiting for the next figures
        for (const c of o.channels) if (c.channel === channel) c.paused = paused;
        renderChannels(o);
      }
    } catch (error) {
      toast(`Could not ${paused ? "pause" : "resume"} ${channel}: ${error.message}`, true);
    }
  }

  function addActivity(event) {
    const item = el("li", {},
      el("span", { className: `lvl ${event.level}` }),
      el("time", {}, fmtTime(event.at)),
      el("span", {}, event.text));
    const list = $("activity");
    list.prepend(item);
    while (list.children.length > 50) list.lastChild.remove();
    $("activity-empty").hidden = true;
  }

  // -- charts (a small canvas line chart) -------------------------------------------------------
  function buildLegend(id, series) {
    $(id).replaceChildren(...series.map((s) => el("span", {}, el("span", { className: `sw ${s.cls}` }), s.label)));
  }

  function niceStep(raw, integer) {
    if (raw <= 0) return integer ? 1 : 0.25;
    const power = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((candidate) => candidate >= raw);
    return integer ? Math.max(1, Math.ceil(step)) : step;
  }

  function drawChart(canvas, series, points, now, integer) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 560;
    const height = canvas.clientHeight || 180;
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const left = 44, right = 8, top = 8, bottom = 20;
    const plotW = width - left - right, plotH = height - top - bottom;
    const span = points.length ? now - points[0].at : 0;
    const windowSeconds = WINDOWS.find((w) => w >= span) || HISTORY_SECONDS;
    const start = now - windowSeconds;
    let peak = 0;
    for (const p of points) for (const s of series) if (p.at >= start) peak = Math.max(peak, p[s.key] || 0);
    const step = niceStep(peak / 4, integer);
    const max = step * 4;
    const decimals = Math.min(3, (String(step).split(".")[1] || "").length);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#66788a";
    ctx.strokeStyle = "#e3e8ee";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const y = top + plotH - (plotH * i) / 4;
      ctx.beginPath(); ctx.moveTo(left, Math.round(y) + 0.5); ctx.lineTo(left + plotW, Math.round(y) + 0.5); ctx.stroke();
      ctx.fillText((step * i).toFixed(i ? decimals : 0), left - 6, y);
    }
    ctx.textAlign = "left"; ctx.textBaseline = "alphabetic";
    ctx.fillText(`${windowSeconds / 60} min ago`, left, height - 4);
    ctx.textAlign = "right";
    ctx.fillText("now", left + plotW, height - 4);
    const x = (at) => left + ((at - start) / windowSeconds) * plotW;
    const y = (v) => top + plotH - (Math.min(v, max) / max) * plotH;
    for (const s of series) {
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.8;
      ctx.lineJoin = "round";
      ctx.beginPath();
      let started = false;
      for (const p of points) {
        if (p.at < start) continue;
        const px = x(p.at), py = y(p[s.key] || 0);
        if (started) ctx.lineTo(px, py); else { ctx.moveTo(px, py); started = true; }
      }
      ctx.stroke();
    }
    if (points.length < 2) {
      ctx.textAlign = "center";
      ctx.fillText("collecting…", left + plotW / 2, top + plotH / 2);
    }
  }

  function drawCharts() {
    if (state.view !== "overview" || !state.overview) return;
    const now = state.overview.at;
    drawChart($("chart-rates"), RATE_SERIES, state.history, now, false);
    drawChart($("chart-depth"), DEPTH_SERIES, state.history, now, true);
  }

  // -- notifications ----------------------------------------------------------------------------
  function wireNotifications() {
    const form = $("filters");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const params = new URLSearchParams();
      for (const [name, value] of new FormData(form)) {
        if (typeof value !== "string" || !value.trim()) continue;
        if (name === "since" || name === "until") {
          const epoch = new Date(value).getTime() / 1000;
          if (!Number.isNaN(epoch)) params.set(name, String(epoch));
        } else if (!(name === "limit" && value === "50")) {
          params.set(name, value.trim());
        }
      }
      location.hash = `#/notifications${params.toString() ? "?" + params : ""}`;
      if (params.toString() === state.list.params.toString()) openList(params);
    });
    $("filters-clear").addEventListener("click", () => { location.hash = "#/notifications"; });
    $("tag-open").addEventListener("click", openTag);
    $("tag-input").addEventListener("keydown", (event) => {
      if (event.key === "Enter") { event.preventDefault(); openTag(); }
    });
    $("page-older").addEventListener("click", () => {
      if (!state.list.next) return;
      state.list.cursors.push(state.list.cursor);
      state.list.cursor = state.list.next;
      loadList(false);
    });
    $("page-newer").addEventListener("click", () => {
      if (!state.list.cursors.length) return;
      state.list.cursor = state.list.cursors.pop();
      loadList(false);
    });
    $("select-all").addEventListener("change", (event) => {
      for (const item of state.list.items) {
        if (event.target.checked) state.list.selected.add(item.tag); else state.list.selected.delete(item.tag);
      }
      renderRows();
    });
    $("bulk-retry").addEventListener("click", () => act("retry", [...state.list.selected]));
    $("bulk-cancel").addEventListener("click", () => act("cancel", [...state.list.selected]));
  }

  function openTag() {
    const tag = $("tag-input").value.trim();
    if (tag) location.hash = `#/n/${encodeURIComponent(tag)}`;
  }

  function fillFilters(params) {
    const form = $("filters");
    for (const field of form.elements) {
      if (!field.name) continue;
      const value = params.get(field.name) || "";
      if (field.name === "since" || field.name === "until") {
        if (!value) { field.value = ""; continue; }
        const d = new Date(Number(value) * 1000);
        field.value = Number.isNaN(d.getTime()) ? "" :
          `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
      } else if (field.name === "limit") {
        field.value = value || "50";
      } else {
        field.value = value;
      }
    }
  }

  function openList(params) {
    state.list.params = params;
    state.list.cursors = [];
    state.list.cursor = null;
    fillFilters(params);
    loadList(false);
  }

  async function loadList(live) {
    const list = state.list;
    if (list.loading) { list.again = !live || list.again; return; }
    if (live && Date.now() - list.loadedAt < 1000) return;
    list.loading = true;
    list.again = false;
    list.counters = countersNow();
    const params = new URLSearchParams(list.params);
    if (list.cursor) params.set("cursor", list.cursor);
    try {
      const page = await api("GET", `/v1/admin/notifications?${params}`);
      list.items = page.items;
      list.next = page.next;
      list.loadedAt = Date.now();
      list.failed = null;
      renderRows();
      setText("list-live", list.cursors.length ? "" : `live · updated ${fmtTime(Date.now() / 1000)}`);
    } catch (error) {
      list.failed = error.message;  // no live reload until the operator searches again
      setText("list-live", `not live: ${error.message}`);
      if (!live) toast(`Could not load notifications: ${error.message}`, true);
    } finally {
      list.loading = false;
      if (list.again) loadList(false);
    }
  }

  function renderRows() {
    const list = state.list;
    const rows = list.items.map((item) => {
      const selected = list.selected.has(item.tag);
      const box = el("input", { type: "checkbox", checked: selected, "aria-label": `select ${item.tag}`,
                                onchange: (event) => {
                                  if (event.target.checked) list.selected.add(item.tag); else list.selected.delete(item.tag);
                                  renderSelection();
                                  event.target.closest("tr").classList.toggle("selected", event.target.checked);
                                } });
      return el("tr", { className: selected ? "selected" : null, dataset: { tag: item.tag, status: item.status } },
        el("td", { className: "check" }, box),
        el("td", { className: "t", title: new Date(item.created_at * 1000).toISOString() }, fmtTime(item.created_at)),
        el("td", { className: "t" }, badge(item.status)),
        el("td", { className: "t" }, item.channel.toLowerCase()),
        el("td", { className: "t" }, item.type),
        el("td", { className: "t" }, item.tenant),
        el("td", { className: "t" }, item.uid),
        el("td", { className: "t" }, item.recipient || "–"),
        el("td", { className: "t subject", title: item.subject || "" }, item.subject || "–"),
        el("td", {}, String(item.attempts)),
        el("td", { className: "t" }, el("a", { className: "tag", href: `#/n/${encodeURIComponent(item.tag)}`, title: item.tag },
                                         item.tag.slice(0, 13) + "…")));
    });
    $("rows").replaceChildren(...rows);
    $("rows-empty").hidden = list.items.length > 0;
    $("page-newer").disabled = list.cursors.length === 0;
    $("page-older").disabled = !list.next;
    const first = list.cursors.length * Number(list.params.get("limit") || 50);
    setText("page-info", list.items.length ? `${first + 1}–${first + list.items.length}` : "");
    $("select-all").checked = list.items.length > 0 && list.items.every((i) => list.selected.has(i.tag));
    renderSelection();
  }

  function renderSelection() {
    const n = state.list.selected.size;
    setText("selection", n ? `${n} selected` : "none selected");
    $("bulk-retry").disabled = n === 0;
    $("bulk-cancel").disabled = n === 0;
  }

  async function act(action, tags) {
    if (!tags.length) return;
    try {
      const answer = await api("POST", `/v1/admin/notifications/${action}`, { tags });
      const failed = answer.results.filter((r) => r.error);
      const done = answer.results.length - failed.length;
      const verb = action === "retry" ? "retried" : "cancelled";
      let message = `${done} of ${answer.results.length} ${verb}`;
      if (failed.length) message += "\n" + failed.slice(0, 3).map((r) => `${r.tag.slice(0, 13)}…: ${r.error.message}`).join("\n");
      toast(message, failed.length > 0 && done === 0);
      for (const result of answer.results) if (!result.error) state.list.selected.delete(result.tag);
      if (state.view === "notifications") loadList(false);
      if (state.view === "detail") loadDetail(false);
    } catch (error) {
      toast(`Could not ${action}: ${error.message}`, true);
    }
  }

  // -- one notification -------------------------------------------------------------------------
  function wireDetail() {
    $("d-retry").addEventListener("click", () => act("retry", [state.detail.tag]));
    $("d-cancel").addEventListener("click", () => act("cancel", [state.detail.tag]));
  }

  function openDetail(tag) {
    state.detail = { tag, item: null, loading: false, loadedAt: 0, counters: "" };
    setText("d-tag", tag);
    $("d-status").textContent = "";
    $("d-fields").replaceChildren();
    $("d-attempts").replaceChildren();
    $("d-rendered").replaceChildren();
    setText("d-payload", "");
    loadDetail(false);
  }

  async function loadDetail(live) {
    const detail = state.detail;
    if (!detail.tag || detail.loading) return;
    if (live && Date.now() - detail.loadedAt < 1000) return;
    detail.loading = true;
    detail.counters = countersNow();
    const tag = detail.tag;
    try {
      const item = await api("GET", `/v1/admin/notifications/${encodeURIComponent(tag)}`);
      if (state.detail.tag !== tag) return;
      detail.item = item;
      detail.loadedAt = Date.now();
      renderDetail(item);
    } catch (error) {
      if (!live) {
        setText("d-status", "");
        $("d-fields").replaceChildren(el("dt", {}, "error"), el("dd", {}, error.message));
      }
    } finally {
      detail.loading = false;
    }
  }

  function field(name, value) {
    return [el("dt", {}, name), el("dd", {}, value === null || value === undefined || value === "" ? "–" : value)];
  }

  function renderDetail(item) {
    $("d-status").replaceWith(Object.assign(badge(item.status), { id: "d-status" }));
    $("d-retry").disabled = !(item.status === "dead" || item.status === "failed");
    $("d-cancel").disabled = !(item.status === "queued" || item.status === "retrying");
    $("d-fields").replaceChildren(
      ...field("type", item.type), ...field("channel", item.channel.toLowerCase()),
      ...field("tenant", item.tenant), ...field("uid", item.uid),
      ...field("recipient", item.recipient), ...field("service", item.service),
      ...field("priority", String(item.priority)), ...field("attempts", String(item.attempts)),
      ...field("created", fmtTime(item.created_at)), ...field("updated", fmtTime(item.updated_at)),
      ...field("expires", fmtTime(item.expires_at)),
      ...(item.not_before ? field("next attempt", fmtTime(item.not_before)) : []),
      ...field("provider id", item.provider_id), ...field("idempotency key", item.idempotency_key));
    const attempts = item.history.map((a) => el("tr", {},
      el("td", {}, a.attempt === null || a.attempt === undefined ? "" : String(a.attempt)),
      el("td", { className: "t" }, fmtTime(a.at)),
      el("td", { className: "t" }, badge(a.outcome === "retry" ? "retrying" : a.outcome, a.outcome),
         a.receipt ? " receipt" : ""),
      el("td", { className: "t" }, a.provider || "–"),
      el("td", { className: "t" }, a.code || "–"),
      el("td", { className: "t wrap" }, a.error || "–"),
      el("td", { className: "t" }, a.provider_id || "–")));
    $("d-attempts").replaceChildren(...attempts);
    $("d-attempts-empty").hidden = attempts.length > 0;
    const r = item.rendered || {};
    $("d-rendered").replaceChildren(...(r.error ? field("error", r.error) : [
      ...(r.subject ? field("subject", r.subject) : []), ...(r.title ? field("title", r.title) : []),
      ...field("text", r.text), ...(r.html ? field("html (source)", r.html) : []),
    ]));
    setText("d-payload", JSON.stringify(item.payload, null, 2));
  }

  // -- suppressed contacts ----------------------------------------------------------------------
  // Contacts come masked; a row is lifted by the id the server gave it, never by what is shown.
  function wireSuppressions() {
    $("sup-find").addEventListener("submit", (event) => {
      event.preventDefault();
      const params = new URLSearchParams();
      const tenant = $("sup-tenant").value.trim();
      const contact = $("sup-contact").value.trim();
      if (tenant) params.set("tenant", tenant);
      if (contact) params.set("contact", contact);
      const hash = `#/suppressions${params.toString() ? "?" + params : ""}`;
      if (location.hash === hash) loadSuppressions(); else location.hash = hash;
    });
    $("sup-add").addEventListener("submit", (event) => {
      event.preventDefault();
      addSuppression();
    });
  }

  function openSuppressions(params) {
    const sup = state.suppressions;
    sup.tenant = (params.get("tenant") || "").trim();
    sup.contact = (params.get("contact") || "").trim();
    $("sup-tenant").value = sup.tenant;
    $("sup-contact").value = sup.contact;
    $("sup-add-contact").disabled = !sup.tenant;
    $("sup-add-submit").disabled = !sup.tenant;
    if (!sup.tenant) {
      sup.items = [];
      renderSuppressions(null);
      $("sup-tenant").focus();
      return;
    }
    loadSuppressions();
  }

  async function loadSuppressions() {
    const sup = state.suppressions;
    if (!sup.tenant) return;
    const ticket = ++sup.loading;  // only the latest answer is shown
    const params = new URLSearchParams({ tenant: sup.tenant, limit: "500" });
    if (sup.contact) params.set("contact", sup.contact);
    try {
      const page = await api("GET", `/v1/admin/suppressions?${params}`);
      if (ticket !== sup.loading) return;
      sup.items = page.items;
      renderSuppressions(page);
    } catch (error) {
      if (ticket === sup.loading) toast(`Could not load suppressions: ${error.message}`, true);
    }
  }

  function renderSuppressions(page) {
    const sup = state.suppressions;
    const rows = sup.items.map((item) => el("tr", { dataset: { id: item.id, reason: item.reason } },
      el("td", { className: "t mono" }, item.contact),
      el("td", { className: "t" }, badge(item.reason === "bounced" ? "bounced" : "suppressed", item.reason)),
      el("td", { className: "t", title: new Date(item.at * 1000).toISOString() }, fmtTime(item.at)),
      el("td", { className: "t" }, item.sender || "any"),
      el("td", { className: "t" }, item.every_tenant
        ? el("span", { className: "badge every", title: "an SMS STOP: it holds for every tenant sending from that number" }, "every tenant")
        : sup.tenant),
      liftCell(item)));
    $("sup-rows").replaceChildren(...rows);
    $("sup-empty").hidden = !page || rows.length > 0;
    if (!page) setText("sup-meta", "pick a tenant");
    else {
      const shown = page.items.length < page.total ? `${page.items.length} of ${fmtInt(page.total)}` : fmtInt(page.total);
      setText("sup-meta", `${shown} for ${page.tenant}${sup.contact ? " matching the contact" : ""}`);
    }
  }

  // Destructive: a first click asks, a second one (within a few seconds) does it.
  function liftCell(item) {
    const cell = el("td", { className: "actions" });
    const ask = () => {
      const timer = setTimeout(idle, 6000);
      const confirm = el("button", { type: "button", className: "danger", dataset: { action: "confirm-lift" },
                                     onclick: () => { clearTimeout(timer); liftSuppression(item, cell); } },
                         item.every_tenant ? "Lift for every tenant" : "Confirm lift");
      const keep = el("button", { type: "button", className: "ghost", dataset: { action: "keep" },
                                  onclick: () => { clearTimeout(timer); idle(); } }, "Keep");
      cell.replaceChildren(confirm, keep);
      confirm.focus();
    };
    const idle = () => cell.replaceChildren(
      el("button", { type: "button", dataset: { action: "lift" }, onclick: ask }, "Lift"));
    idle();
    return cell;
  }

  async function liftSuppression(item, cell) {
    for (const button of cell.querySelectorAll("button")) button.disabled = true;
    const params = new URLSearchParams({ tenant: state.suppressions.tenant, id: item.id });
    try {
      await api("DELETE", `/v1/admin/suppressions?${params}`);
      toast(`${item.contact} lifted${item.every_tenant ? " for every tenant" : ""}`);
    } catch (error) {
      toast(`Could not lift ${item.contact}: ${error.message}`, true);
    }
    loadSuppressions();
  }

  async function addSuppression() {
    const tenant = state.suppressions.tenant;
    const contact = $("sup-add-contact").value.trim();
    if (!tenant || !contact) return;
    $("sup-add-submit").disabled = true;
    try {
      const entry = await api("POST", "/v1/admin/suppressions", { tenant, contact });
      $("sup-add-contact").value = "";
      toast(`${entry.contact} suppressed for ${tenant} (${entry.reason})`);
    } catch (error) {
      toast(`Could not suppress: ${error.message}`, true);
    } finally {
      $("sup-add-submit").disabled = false;
    }
    loadSuppressions();
  }

  // -- outbox and analytics ---------------------------------------------------------------------
  async function loadOutbox() {
    state.outboxLoadedAt = Date.now();
    const channel = $("outbox-channel").value;
    try {
      const answer = await api("GET", `/v1/admin/outbox?limit=100${channel ? "&channel=" + encodeURIComponent(channel) : ""}`);
      const rows = answer.items.map((m) => {
        const to = Array.isArray(m.to) ? m.to.join(", ") : m.to;
        const what = m.subject || m.body || m.text || (m.media_url ? `media ${m.media_url}` : "") || "";
        return el("tr", {},
          el("td", { className: "t" }, fmtTime(m.at)),
          el("td", { className: "t" }, m.channel || ""),
          el("td", { className: "t" }, to || "–"),
          el("td", { className: "t wrap" }, what || "–"),
          el("td", { className: "t" }, m.tag ? el("a", { className: "tag", href: `#/n/${encodeURIComponent(m.tag)}`, title: m.tag }, m.tag.slice(0, 13) + "…") : "–"));
      });
      $("outbox-rows").replaceChildren(...rows);
      $("outbox-empty").hidden = rows.length > 0;
    } catch (error) {
      toast(`Could not load the outbox: ${error.message}`, true);
    }
  }

  async function loadAnalytics() {
    try {
      const answer = await api("GET", "/v1/admin/analytics");
      const report = answer.report;
      $("report-none").hidden = Boolean(report);
      $("report-frame").hidden = !report;
      $("report-open").hidden = !report;
      if (!report) {
        setText("report-none", answer.hint);
        setText("report-meta", "");
        return;
      }
      setText("report-meta", `${report.name}, written ${fmtTime(report.modified_at, false)}`);
      const frame = $("report-frame");
      const url = `${report.url}?v=${Math.round(report.modified_at)}`;
      if (frame.getAttribute("src") !== url) frame.setAttribute("src", url);
    } catch (error) {
      toast(`Could not load analytics: ${error.message}`, true);
    }
  }

  document.addEventListener("DOMContentLoaded", boot);
})();
