// ratiowatch status page: one card per scenario, rendered from the /ws stream.
// Everything that comes from data is written with textContent or numeric attributes, never as HTML.
"use strict";

(function () {
  const cards = new Map();          // scenario id -> card element
  const cardsEl = document.getElementById("cards");
  const eventsEl = document.getElementById("events");
  const connEl = document.getElementById("conn");
  const template = document.getElementById("card-template");
  const SVG = "http://www.w3.org/2000/svg";
  const bannerEl = document.getElementById("origin-banner");
  const WINDOW_LABELS = { 21: "1M", 63: "3M", 126: "6M", 252: "12M" };
  const MAX_EVENTS = 12;
  // A card whose engine has said nothing for this long shows how old its data is, and the badge
  // stops saying "live" (the engine republishes a scenario's status whenever a tick touches it).
  const STALE_MS = 120000;
  const DEFAULT_TZ = "America/New_York";
  const updated = new Map();        // scenario id -> when its engine last published it (wall ms)
  const origins = new Map();        // scenario id -> live | simulated | replay
  let pageTz = null;                // the scenarios' session zone: every time on the page is in it
  let connected = false;

  // --- formatting ---------------------------------------------------------------------------

  function kindOf(series) {  // symbols never contain "/" or "-" (see config.parse_series)
    if (series.includes("/")) return "ratio";
    if (series.includes("-")) return "spread";
    return "level";
  }
  function isNum(x) { return typeof x === "number" && Number.isFinite(x); }
  function signed(x, digits) { return (x > 0 ? "+" : x < 0 ? "\u2212" : "") + Math.abs(x).toFixed(digits); }
  // A lookback change: relative (percent) for ratios and levels, a difference for spreads.
  function change(series, x) {
    if (!isNum(x)) return "\u2014";
    return kindOf(series) === "spread" ? signed(x, 2) + " pp" : signed(x * 100, 2) + "%";
  }
  // Index levels and prices with two decimals, as the messages print them.
  function level(x) { return isNum(x) ? x.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }) : "\u2014"; }
  function inZone(iso, withTime) {
    if (typeof iso !== "string") return "\u2014";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return "\u2014";
    const opts = { timeZone: pageTz || DEFAULT_TZ, year: "numeric", month: "2-digit", day: "2-digit" };
    if (withTime) Object.assign(opts, { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short" });
    const p = Object.fromEntries(new Intl.DateTimeFormat("en-US", opts).formatToParts(d).map((x) => [x.type, x.value]));
    return `${p.year}-${p.month}-${p.day}` + (withTime ? ` ${p.hour}:${p.minute} ${p.timeZoneName}` : "");
  }
  function day(iso) { return inZone(iso, false); }
  function age(ms) {
    const s = Math.round(ms / 1000);
    if (s < 120) return `${s} s`;
    if (s < 7200) return `${Math.round(s / 60)} min`;
    if (s < 172800) return `${Math.round(s / 3600)} h`;
    return `${Math.round(s / 86400)} days`;
  }

  // A metric in the rule's own terms: a change for lookback, ma, high, low; sessions for a streak.
  function metricText(d) {
    const tr = d.transform || (d.lookback === null || d.lookback === undefined ? "value" : "lookback");
    if (tr === "value") return level(d.value);
    if (tr === "streak") {
      if (!isNum(d.value)) return "\u2014";
      const k = Math.abs(d.value);
      return k === 0 ? "flat" : `${k} session${k === 1 ? "" : "s"} ${d.value > 0 ? "up" : "down"}`;
    }
    return change(d.series, d.value);
  }

  function reading(t) {
    if (!isNum(t.metric)) return "Warming up: not enough history for this rule yet.";
    // Rules beyond a lookback or a plain value: the server words the distance in their own terms
    // ("2.1% below its 252-session high, fires at +0.00%"; "4 sessions up, fires at 6").
    if (t.transform && t.transform !== "lookback" && t.transform !== "value") return t.distance_text + ".";
    const verb = t.direction === "up" ? "at or above" : "at or below";
    if (t.lookback === null || t.lookback === undefined) {
      return `${t.series} is ${level(t.metric)}; the trigger is ${verb} ${level(t.threshold)}.`;
    }
    if (kindOf(t.series) === "spread") {
      const moved = t.metric >= 0 ? "risen" : "fallen";
      return `${t.series} has ${moved} ${Math.abs(t.metric).toFixed(2)} pp over ${t.lookback} sessions; ` +
             `the trigger is ${signed(t.threshold, 2)} pp.`;
    }
    const moved = t.metric >= 0 ? "up" : "down";
    return `${t.series} is ${moved} ${Math.abs(t.metric * 100).toFixed(2)}% over ${t.lookback} sessions; ` +
           `the trigger is ${signed(t.threshold * 100, 2)}%.`;
  }

  // --- rendering ----------------------------------------------------------------------------

  function text(el, value) { el.textContent = value; return el; }
  function make(tag, cls, value) {
    const el = document.createElement(tag);
    if (cls) el.className = cls;
    if (value !== undefined) el.textContent = value;
    return el;
  }

  function cardFor(id) {
    let card = cards.get(id);
    if (!card) {
      card = template.content.firstElementChild.cloneNode(true);
      card.dataset.scenario = id;
      cards.set(id, card);
      cardsEl.appendChild(card);
    }
    return card;
  }

  function renderWindows(card, s) {
    const series = s.trigger.series;
    const head = card.querySelector(".windows thead tr");
    const body = card.querySelector(".windows tbody tr");
    head.replaceChildren();
    body.replaceChildren();
    const keys = Object.keys(s.windows || {}).map(Number).sort((a, b) => a - b);
    for (const w of keys) {
      head.appendChild(make("th", "", WINDOW_LABELS[w] || `${w}d`));
      const v = s.windows[String(w)];
      const td = make("td", isNum(v) ? (v >= 0 ? "pos" : "neg") : "na", change(series, v));
      td.dataset.window = String(w);
      body.appendChild(td);
    }
  }

  function renderConfirmations(card, s) {
    const list = card.querySelector(".conf-list");
    const confs = s.confirmations || [];
    card.querySelector(".confs").hidden = confs.length === 0;
    const met = confs.filter((c) => c.met === true).length;
    const need = isNum(s.require) ? ` (fires with ${s.require})` : "";
    text(card.querySelector(".confs-head"), `Confirmations: ${met} of ${confs.length} met${need}`);
    list.replaceChildren();
    for (const c of confs) {
      const state = c.met === true ? "met" : c.met === false ? "unmet" : "unknown";
      const li = make("li", `conf ${state}`);
      li.appendChild(make("span", "mark", state === "met" ? "\u2713" : state === "unmet" ? "\u2717" : "\u2026"));
      li.appendChild(make("span", "conf-label", c.label));
      li.appendChild(make("span", "conf-value", c.reading || `${c.series} ${metricText(c)}`));
      list.appendChild(li);
    }
  }

  function renderSpark(card, values) {
    const line = card.querySelector(".spark-line");
    const pts = (values || []).filter(isNum);
    if (pts.length < 2) { line.setAttribute("points", ""); return; }
    const lo = Math.min(...pts), hi = Math.max(...pts), span = hi - lo || 1;
    const coords = pts.map((v, i) => `${(i * 100 / (pts.length - 1)).toFixed(2)},${(22 - (v - lo) * 20 / span).toFixed(2)}`);
    line.setAttribute("points", coords.join(" "));
  }

  function lastCrossing(ev) {
    if (!ev) return "No crossing yet.";
    const rule = ev.rule === "trigger" ? "Trigger" : ev.rule;
    const value = metricText(ev);
    return `Last crossing: ${rule} ${ev.kind} (${ev.series} ${ev.direction === "up" ? "\u2191" : "\u2193"} ${value}) on ${day(ev.at)}.`;
  }

  // What the trigger did over the history (when the worker has one): count, last time, and the
  // median forward change of the trigger series at each horizon, with the share positive.
  function trackRecord(r) {
    if (!r) return "";
    if (!r.fired) return `Never fired in the history (${r.first} to ${r.last}).`;
    const o = (r.outcomes || [])[0];
    let line = `Fired ${r.fired} times since ${r.first}, last on ${r.last_fired}.`;
    if (o) {
      const cells = [];
      for (const h of r.horizons || []) {
        const x = o.by_horizon[String(h)];
        if (x && x.n) cells.push(`${WINDOW_LABELS[h] || h + "d"} ${change(o.spread ? "A-B" : "A", x.median)} (${Math.round(x.positive * 100)}% up)`);
      }
      if (cells.length) line += ` After firing, ${o.name}: ` + cells.join(", ") + ".";
    }
    return line;
  }

  // A silence (ratiowatch silence add / POST /api/silences) mutes the scenario's notifications.
  function renderMute(card, m) {
    const el = card.querySelector(".mute");
    el.hidden = !m;
    if (!m) return;
    const until = String(m.until).replace("T", " ").replace(/(:\d\d)(\.\d+)?Z$/, "$1 UTC");
    text(el, `Muted until ${until}: ${m.comment} (${m.author})`);
    el.title = "silence " + m.silence;
  }

  // Simulated or replayed data says so: a banner over the page and a mark on each such card.
  function renderOrigin(card, s) {
    const origin = s.origin || "live";  // statuses from before the field are live ones
    origins.set(s.scenario, origin);
    const mark = card.querySelector(".origin");
    mark.hidden = origin === "live";
    text(mark, origin === "replay" ? "replay" : origin);
    const kinds = new Set([...origins.values()].filter((o) => o !== "live"));
    bannerEl.hidden = kinds.size === 0;
    if (kinds.has("simulated")) {
      text(bannerEl, "SIMULATED MARKET: these prices and crossings come from the built-in simulator, not from market data.");
    } else if (kinds.has("replay")) {
      text(bannerEl, "REPLAY: these crossings are history evaluated again, not today's market.");
    }
  }

  function renderPending(card, s) {
    text(card.querySelector(".title"), s.title || s.scenario);
    const badge = card.querySelector(".badge");
    text(badge, "waiting");
    badge.className = "badge state-warmingup";
    text(card.querySelector(".reading"), "Waiting for the engine's first status of this scenario.");
    for (const sel of [".bar", ".windows", ".confs", ".spark"]) card.querySelector(sel).hidden = true;
    text(card.querySelector(".asof"), "No data yet.");
  }

  function removeCard(id) {
    // The scenario was removed from the scenarios in force (`ratiowatch scenarios apply --prune`).
    const card = cards.get(id);
    if (card) card.remove();
    cards.delete(id);
    updated.delete(id);
    origins.delete(id);
  }

  function renderStatus(s) {
    if (s.removed) { removeCard(s.scenario); return; }
    const card = cardFor(s.scenario);
    if (s.pending) { renderPending(card, s); return; }
    for (const sel of [".windows", ".spark"]) card.querySelector(sel).hidden = false;
    if (s.tz && !pageTz) pageTz = s.tz;
    renderOrigin(card, s);
    if (isNum(s.updated_ms)) updated.set(s.scenario, s.updated_ms);
    const t = s.trigger || {};
    text(card.querySelector(".title"), s.title || s.scenario);
    card.querySelector(".title").title = s.description || "";
    const badge = card.querySelector(".badge");
    text(badge, t.state || "");
    badge.className = "badge state-" + String(t.state || "").replace(/[^a-z]/g, "");
    renderMute(card, s.muted);
    text(card.querySelector(".trigger"), "Trigger: " + (t.description || ""));
    text(card.querySelector(".reading"), reading(t));
    const bar = card.querySelector(".bar");
    bar.hidden = !isNum(t.progress);
    if (isNum(t.progress)) {
      const pct = Math.round(Math.max(0, Math.min(1, t.progress)) * 100);
      card.querySelector(".bar-fill").style.width = pct + "%";
      bar.setAttribute("aria-valuenow", String(pct));
    }
    renderWindows(card, s);
    renderConfirmations(card, s);
    text(card.querySelector(".last"), lastCrossing(s.last_event));
    card.dataset.asof = s.at || "";
    const track = card.querySelector(".track");
    if (track) { text(track, trackRecord(s.track_record)); track.hidden = !s.track_record; }
    renderSpark(card, s.sparkline);
    renderAsOf(card);
    renderConn();
    card.classList.remove("flash");
    void card.offsetWidth;  // restart the highlight animation
    card.classList.add("flash");
  }

  // "As of" is the newest of the status's time and its trigger's last crossing (an event can
  // arrive before the status it changed), and says how old the data is once it is stale.
  function renderAsOf(card) {
    const at = card.dataset.asof || "";
    const crossed = card.dataset.crossed || "";
    const newest = crossed > at ? crossed : at;
    const when = updated.get(card.dataset.scenario);
    const old = isNum(when) ? Date.now() - when : 0;
    card.classList.toggle("stale", old > STALE_MS);
    let line = newest ? `As of ${inZone(newest, true)}` : "No data yet.";
    if (old > STALE_MS) line += ` \u00b7 no update for ${age(old)}`;
    text(card.querySelector(".asof"), line);
  }

  // The badge says "live" only while the stream is open and every card's data is current.
  function renderConn() {
    if (!connected) return;
    let oldest = 0;
    for (const when of updated.values()) oldest = Math.max(oldest, Date.now() - when);
    if (oldest > STALE_MS) setConn("wait", `connected \u00b7 data up to ${age(oldest)} old`);
    else setConn("live", "live");
  }
  setInterval(() => { for (const card of cards.values()) renderAsOf(card); renderConn(); }, 5000);

  function addEventLine(line, cls) {
    const first = eventsEl.firstElementChild;
    if (first && first.classList.contains("muted")) first.remove();
    eventsEl.prepend(make("li", cls, line));
    while (eventsEl.children.length > MAX_EVENTS) eventsEl.lastElementChild.remove();
  }

  function renderEvent(ev) {
    const card = cards.get(ev.scenario);
    const title = ev.title || ev.scenario;
    const rule = ev.rule === "trigger" ? "trigger" : ev.rule;
    const value = metricText(ev);
    const origin = ev.origin && ev.origin !== "live" ? ` [${ev.origin}]` : "";
    addEventLine(`${day(ev.at)} \u00b7 ${title}: ${rule} ${ev.kind} (${ev.description}; now ${value})${origin}`, "event " + (ev.kind === "fired" ? "fired" : "rearmed"));
    // A card's "Last crossing" is its trigger's: a confirmation re-arming is not news of the scenario.
    if (card && ev.rule === "trigger") {
      text(card.querySelector(".last"), lastCrossing(ev));
      card.dataset.crossed = ev.at || "";
      renderAsOf(card);
    }
  }

  // --- the stream ---------------------------------------------------------------------------

  function setConn(state, label) {
    connEl.className = "conn conn-" + state;
    connEl.textContent = label;
  }

  let retry = 1000;
  function connect() {
    const token = new URLSearchParams(location.search).get("token");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/ws` + (token ? `?token=${encodeURIComponent(token)}` : "");
    const ws = new WebSocket(url);
    ws.onopen = () => { retry = 1000; connected = true; setConn("live", "live"); renderConn(); };
    ws.onmessage = (m) => {
      let msg;
      try { msg = JSON.parse(m.data); } catch (e) { return; }
      if (msg.type === "status") renderStatus(msg);
      else if (msg.type === "event") renderEvent(msg);
      else if (msg.type === "dropped") addEventLine(`${msg.events} crossing(s) were dropped: this page fell behind.`, "dropped");
    };
    ws.onclose = (e) => {
      connected = false;
      if (e.code === 1008 && e.reason === "unauthorized") {
        setConn("down", "not authorized: open this page with ?token=\u2026");
        return;
      }
      setConn("wait", "reconnecting\u2026");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }
  connect();
})();
