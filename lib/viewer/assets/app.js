// saeflow viewer: a plain ES module served as-is, without dependencies.
//
// Everything read from the store (token strings, explanations, names, settings) is untrusted
// dataset or user text. It reaches the DOM only through text nodes (`append(string)`,
// `textContent`) or attribute values set with `setAttribute`; this file never assigns HTML.

const app = document.getElementById("app");
const crumbs = document.getElementById("crumbs");
const tip = document.getElementById("tip");

// ---------------------------------------------------------------------------------------------
// DOM helpers

/** An element; `props`: `class`, `on<event>` handlers, `dataset`, other attributes. */
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  append(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** An SVG element with attributes. */
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setProps(el, attrs);
  append(el, children);
  return el;
}

function setProps(el, props) {
  if (!props) return;
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key.startsWith("on")) throw new Error(`refusing a string handler for ${key}`);
    else if (key === "value") el.value = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

/** Appends nodes and strings (as text nodes); skips null, undefined and false. */
function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** A header row; columns in [numFrom, numTo) are numeric (right-aligned). */
function headRow(labels, numFrom, numTo) {
  return h(
    "tr",
    null,
    labels.map((t, i) => h("th", { class: i >= numFrom && i < numTo ? "num" : null }, t)),
  );
}

/** A link handled by the in-page router. */
function link(href, ...children) {
  return h("a", { href, "data-nav": true }, ...children);
}

// ---------------------------------------------------------------------------------------------
// Formatting

function fmtInt(n) {
  return Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "–";
}

function fmtNum(x, digits = 3) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "–";
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1e5 || a < 1e-3) return x.toExponential(digits - 1);
  if (a >= 100) return x.toFixed(1);
  return Number(x.toPrecision(digits)).toString();
}

function fmtFreq(f) {
  if (!Number.isFinite(f)) return "–";
  if (f === 0) return "0";
  return f >= 1e-4 ? `${Number((f * 100).toPrecision(3))}%` : f.toExponential(2);
}

/** A token as a visible string: newlines, tabs and an empty token shown as symbols. */
function tokenText(str) {
  if (str === "") return "∅";
  return str.replace(/\r?\n/g, "↵").replace(/\t/g, "⇥");
}

// ---------------------------------------------------------------------------------------------
// API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const enc = encodeURIComponent;

function saeApi(series, name) {
  return `/api/saes/${enc(series)}/${enc(name)}`;
}

function saePage(series, name, analysis) {
  return `/sae/${enc(series)}/${enc(name)}${analysisQuery(analysis)}`;
}

function featurePage(series, name, index, analysis) {
  return `/sae/${enc(series)}/${enc(name)}/feature/${index}${analysisQuery(analysis)}`;
}

function analysisQuery(analysis) {
  return analysis ? `?analysis=${enc(analysis)}` : "";
}

async function api(path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params ?? {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
  }
  const res = await fetch(url, { headers: { accept: "application/json" } });
  let body = null;
  try {
    body = await res.json();
  } catch {
    // not JSON: reported below
  }
  if (!res.ok) throw new ApiError(res.status, body?.error ?? `${res.status} ${res.statusText}`);
  return body;
}

const saeInfoCache = new Map();

/** The SAE overview document, cached for feature-to-feature navigation. */
function saeInfo(series, name, analysis, fresh = false) {
  const key = JSON.stringify([series, name, analysis ?? null]);
  if (fresh || !saeInfoCache.has(key)) {
    const p = api(saeApi(series, name), { analysis });
    saeInfoCache.set(key, p);
    p.catch(() => saeInfoCache.delete(key));
  }
  return saeInfoCache.get(key);
}

// ---------------------------------------------------------------------------------------------
// Routing

let renderId = 0;

function navigate(url, replaceState = false) {
  history[replaceState ? "replaceState" : "pushState"](null, "", url);
  route();
}

document.addEventListener("click", (event) => {
  const a = event.target instanceof Element ? event.target.closest("a[data-nav]") : null;
  if (!a || event.defaultPrevented || event.button !== 0) return;
  if (event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(a.getAttribute("href"));
});

addEventListener("popstate", () => route());

async function route() {
  const id = ++renderId;
  hideTip();
  const parts = location.pathname.split("/").filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  const params = new URLSearchParams(location.search);
  const isCurrent = () => id === renderId;
  try {
    if (parts.length === 0) await renderHome(isCurrent);
    else if (parts[0] === "sae" && parts.length === 3) {
      await renderSae(parts[1], parts[2], params, isCurrent);
    } else if (parts[0] === "sae" && parts.length === 5 && parts[3] === "feature") {
      await renderFeature(parts[1], parts[2], parts[4], params, isCurrent);
    } else {
      throw new ApiError(404, `No page at ${location.pathname}`);
    }
  } catch (error) {
    if (!isCurrent()) return;
    console.error(error);
    replace(app, errorBox(error));
  }
}

function errorBox(error) {
  const status = error instanceof ApiError ? `${error.status}: ` : "";
  return h("div", { class: "error", role: "alert" }, status, String(error.message ?? error));
}

function setCrumbs(...items) {
  replace(crumbs, items.map((item) => [h("span", { class: "sep" }, "/"), item]));
}

// ---------------------------------------------------------------------------------------------
// Home: the SAEs in the store

async function renderHome(isCurrent) {
  const { saes } = await api("/api/saes");
  if (!isCurrent()) return;
  document.title = "SAEs — saeflow";
  setCrumbs();
  if (saes.length === 0) {
    replace(app, h("p", { class: "muted" }, "No SAEs in the store yet: run saeflow analyze."));
    return;
  }
  replace(
    app,
    h("h1", null, "Sparse autoencoders"),
    h(
      "table",
      { class: "grid" },
      h(
        "thead",
        null,
        headRow(["Series", "Name", "Features", "d_model", "Hook point", "Model"], 2, 4),
      ),
      h(
        "tbody",
        null,
        saes.map((sae) =>
          h(
            "tr",
            null,
            h("td", null, sae.series),
            h("td", null, link(saePage(sae.series, sae.name), sae.name)),
            h("td", { class: "num" }, fmtInt(sae.d_sae)),
            h("td", { class: "num" }, fmtInt(sae.d_model)),
            h("td", null, h("code", null, sae.hook_point)),
            h("td", null, sae.model),
          )
        ),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// SAE overview and feature list

async function renderSae(series, name, params, isCurrent) {
  const requested = params.get("analysis") ?? undefined;
  const info = await saeInfo(series, name, requested, true);
  const freqs = await api(`${saeApi(series, name)}/frequencies`, {
    analysis: info.analysis,
    bins: 60,
  });
  if (!isCurrent()) return;
  const { sae, counts } = info;
  const analysisDoc = info.analyses.find((a) => a.name === info.analysis);
  document.title = `${sae.name} — saeflow`;
  setCrumbs(h("span", null, series), link(saePage(series, name, requested), name));

  const analysisControl = info.analyses.length > 1
    ? h(
      "select",
      {
        "aria-label": "Analysis",
        onchange: (e) => navigate(saePage(series, name, e.target.value)),
      },
      info.analyses.map((a) =>
        h("option", { value: a.name, selected: a.name === info.analysis }, a.name)
      ),
    )
    : h("b", null, info.analysis);

  const listHost = h("section", { class: "panel", id: "features" });
  replace(
    app,
    h(
      "div",
      { class: "title-row" },
      h("h1", null, sae.name),
      h(
        "span",
        { class: "muted" },
        `${series} · ${sae.hook_point} · ${sae.model} · d_model ${fmtInt(sae.d_model)}`,
      ),
    ),
    h(
      "div",
      { class: "cards" },
      card("Features", fmtInt(sae.d_sae)),
      card(
        "Alive",
        `${fmtInt(counts.alive)}`,
        counts.total ? fmtFreq(counts.alive / counts.total) : "",
      ),
      card("Dead", fmtInt(counts.dead), counts.total ? fmtFreq(counts.dead / counts.total) : ""),
      card("Tokens analyzed", fmtInt(freqs.n_analyzed_tokens)),
      card("Analysis", analysisControl, analysisDoc ? statusText(analysisDoc) : "no document"),
    ),
    h(
      "div",
      { class: "two" },
      h(
        "section",
        { class: "panel" },
        h("h2", null, "Feature frequency"),
        freqs.counts.length
          ? barChart({
            edges: freqs.edges,
            counts: freqs.counts,
            width: 520,
            height: 170,
            xFormat: (x) => x.toFixed(1),
            xLabel: "log10 activation frequency (alive features)",
            barTitle: (lo, hi, n) => `10^${lo.toFixed(2)} – 10^${hi.toFixed(2)}: ${n} features`,
          })
          : h("p", { class: "muted" }, "No alive features."),
      ),
      h(
        "section",
        { class: "panel" },
        h("h2", null, "Settings"),
        analysisDoc
          ? settingsList(analysisDoc)
          : h("p", { class: "muted" }, "No analysis document."),
        h(
          "details",
          null,
          h("summary", null, "Analysis settings (JSON)"),
          pre(analysisDoc?.settings ?? {}),
        ),
        h(
          "details",
          null,
          h("summary", null, "SAE config (JSON)"),
          pre({ path: sae.path, ...sae.config }),
        ),
      ),
    ),
    listHost,
  );
  await renderFeatureList(listHost, series, name, info.analysis, params, isCurrent);
}

function card(label, value, sub) {
  return h(
    "div",
    { class: "card" },
    h("div", { class: "label" }, label),
    h("div", { class: "value" }, value),
    sub ? h("div", { class: "sub" }, sub) : null,
  );
}

function pre(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

/**
 * An analysis' status as a reader should take it: only a complete analysis has results shown;
 * a newer run that has not published (running, interrupted, failed) is named beside it.
 */
function statusText(doc) {
  const own = doc.status + (doc.error ? ` (${doc.error})` : "");
  const run = doc.run;
  if (doc.status !== "complete" || !run) return own;
  const error = run.error ? `: ${run.error}` : "";
  return `${own}; a newer run ${
    run.status === "running" ? "is in progress" : `was ${run.status}${error}`
  } (started ${run.started_at}), not shown`;
}

function settingsList(doc) {
  const rows = [
    ["Status", statusText(doc)],
    ["Tokens", fmtInt(doc.n_analyzed_tokens)],
    ["Started", doc.started_at],
    ["Finished", doc.finished_at ?? "–"],
  ];
  const settings = doc.settings ?? {};
  for (const key of Object.keys(settings).sort()) {
    const v = settings[key];
    if (v === null || typeof v !== "object") rows.push([key, String(v)]);
  }
  for (const [k, v] of Object.entries(doc.timings ?? {})) {
    rows.push([`time: ${k}`, `${fmtNum(v)} s`]);
  }
  return kvTable(rows);
}

function kvTable(rows) {
  return h(
    "table",
    { class: "kv" },
    h("tbody", null, rows.map(([k, v]) => h("tr", null, h("th", null, k), h("td", null, v)))),
  );
}

const PAGE_SIZE = 50;

async function renderFeatureList(host, series, name, analysis, params, isCurrent) {
  const state = {
    sort: params.get("sort") ?? "act_times",
    order: params.get("order") ?? "",
    alive: params.get("alive") ?? "all",
    q: params.get("q") ?? "",
    skip: Math.max(0, Number(params.get("skip") ?? 0) || 0),
  };
  const body = h("tbody");
  const status = h("span", { class: "muted" });
  const prev = h("button", { type: "button", onclick: () => move(-PAGE_SIZE) }, "‹ Prev");
  const next = h("button", { type: "button", onclick: () => move(PAGE_SIZE) }, "Next ›");
  let timer = 0;

  function syncUrl() {
    const url = new URL(location.href);
    for (const [k, v] of Object.entries(state)) {
      if (v === "" || (k === "skip" && v === 0) || (k === "alive" && v === "all")) {
        url.searchParams.delete(k);
      } else url.searchParams.set(k, String(v));
    }
    history.replaceState(null, "", url);
  }

  function move(delta) {
    state.skip = Math.max(0, state.skip + delta);
    load();
  }

  function change(key, value) {
    state[key] = value;
    state.skip = 0;
    load();
  }

  async function load() {
    syncUrl();
    let page;
    try {
      page = await api(`${saeApi(series, name)}/features`, {
        analysis,
        sort: state.sort,
        order: state.order,
        alive: state.alive,
        q: state.q,
        skip: state.skip,
        limit: PAGE_SIZE,
      });
    } catch (error) {
      replace(body, h("tr", null, h("td", { colspan: 5 }, errorBox(error))));
      return;
    }
    if (!isCurrent()) return;
    const last = Math.min(page.total, page.skip + page.features.length);
    replace(
      status,
      page.total
        ? `${fmtInt(page.skip + 1)}–${fmtInt(last)} of ${fmtInt(page.total)}`
        : "No features",
    );
    prev.disabled = page.skip === 0;
    next.disabled = last >= page.total;
    replace(
      body,
      page.features.map((f) => {
        const href = featurePage(
          series,
          name,
          f.index,
          analysis === "default" ? undefined : analysis,
        );
        return h(
          "tr",
          { class: f.act_times > 0 ? "" : "dead" },
          h("td", { class: "num" }, link(href, String(f.index))),
          h("td", { class: "num" }, fmtFreq(f.frequency)),
          h("td", { class: "num" }, fmtInt(f.act_times)),
          h("td", { class: "num" }, fmtNum(f.max_activation)),
          h("td", { class: "expl" }, f.interpretation_text ?? ""),
        );
      }),
    );
  }

  const select = (key, options, label) =>
    h(
      "select",
      { "aria-label": label, name: key, onchange: (e) => change(key, e.target.value) },
      options.map(([value, text]) => h("option", { value, selected: state[key] === value }, text)),
    );

  replace(
    host,
    h(
      "div",
      { class: "list-head" },
      h("h2", null, "Features"),
      h(
        "div",
        { class: "controls" },
        h(
          "label",
          null,
          "Sort ",
          select("sort", [["index", "index"], ["act_times", "frequency"], [
            "max",
            "max activation",
          ]], "Sort"),
        ),
        select(
          "order",
          [["", "default order"], ["desc", "descending"], ["asc", "ascending"]],
          "Order",
        ),
        select("alive", [["all", "all"], ["true", "alive"], ["false", "dead"]], "Alive"),
        h("input", {
          type: "search",
          name: "q",
          placeholder: "Search explanations",
          value: state.q,
          oninput: (e) => {
            clearTimeout(timer);
            timer = setTimeout(() => change("q", e.target.value.trim()), 250);
          },
        }),
        prev,
        status,
        next,
      ),
    ),
    h(
      "table",
      { class: "grid features" },
      h(
        "thead",
        null,
        headRow(["#", "Frequency", "Act. times", "Max act.", "Explanation"], 0, 4),
      ),
      body,
    ),
  );
  await load();
}

// ---------------------------------------------------------------------------------------------
// Feature page

/** Tokens shown on each side of the peak; `Infinity` shows the whole window. */
let contextRadius = 12;
const RADII = [4, 8, 12, 16, 24, 32, Infinity];

async function renderFeature(series, name, indexText, params, isCurrent) {
  const index = Number(indexText);
  const requested = params.get("analysis") ?? undefined;
  const info = await saeInfo(series, name, requested);
  if (!isCurrent()) return;
  const { sae } = info;
  setCrumbs(
    h("span", null, series),
    link(saePage(series, name, requested), name),
    h("span", null, `#${indexText}`),
  );
  document.title = `Feature ${indexText} · ${sae.name} — saeflow`;

  const nav = featureNav(series, name, index, sae.d_sae, requested, info.analysis);
  let feature;
  try {
    if (!/^\d+$/.test(indexText)) throw new ApiError(400, `Invalid feature index "${indexText}"`);
    feature = await api(`${saeApi(series, name)}/features/${index}`);
  } catch (error) {
    if (!isCurrent()) return;
    replace(app, nav, h("h1", null, `Feature ${indexText}`), errorBox(error));
    return;
  }
  if (!isCurrent()) return;

  const names = Object.keys(feature.analyses);
  const analysisName = names.includes(info.analysis) ? info.analysis : names[0];
  const analysis = analysisName === undefined ? undefined : feature.analyses[analysisName];
  const interp = feature.interpretation;

  const header = h(
    "div",
    { class: "feature-head" },
    h("h1", null, `Feature ${index}`),
    h(
      "div",
      { class: "explanation", id: "explanation" },
      interp?.text ? interp.text : h("span", { class: "muted" }, "No explanation yet."),
    ),
  );

  const left = h(
    "div",
    { class: "col-left" },
    statsPanel(analysis, analysisName, names),
    analysis ? activationPanel(analysis) : null,
    logitsPanel(feature.logits),
  );
  const contexts = h("div", { id: "contexts" });
  const radius = h(
    "select",
    {
      "aria-label": "Tokens around the peak",
      id: "radius",
      onchange: (e) => {
        contextRadius = Number(e.target.value);
        replace(contexts, samplingsView(analysis));
      },
    },
    RADII.map((r) =>
      h(
        "option",
        { value: String(r), selected: r === contextRadius },
        r === Infinity ? "all" : String(r),
      )
    ),
  );
  replace(contexts, samplingsView(analysis));
  const right = h(
    "div",
    { class: "col-right" },
    interp ? explanationPanel(interp) : null,
    h(
      "section",
      { class: "panel" },
      h(
        "div",
        { class: "list-head" },
        h("h2", null, "Activating contexts"),
        h("label", { class: "controls" }, "Tokens around peak ", radius),
      ),
      contexts,
    ),
  );
  replace(app, nav, header, h("div", { class: "feature-body" }, left, right));
}

function featureNav(series, name, index, dSae, requested, analysis) {
  const go = h("input", {
    type: "number",
    min: "0",
    max: String(dSae - 1),
    placeholder: "index",
    "aria-label": "Go to feature",
    onkeydown: (e) => {
      if (e.key === "Enter" && /^\d+$/.test(e.target.value)) {
        navigate(featurePage(series, name, Number(e.target.value), requested));
      }
    },
  });
  const random = async () => {
    try {
      const { index: pick } = await api(`${saeApi(series, name)}/random`, {
        analysis,
        alive: "true",
      });
      navigate(featurePage(series, name, pick, requested));
    } catch (error) {
      alert(error.message);
    }
  };
  return h(
    "div",
    { class: "feature-nav" },
    index > 0 && index - 1 < dSae
      ? h("a", {
        href: featurePage(series, name, index - 1, requested),
        "data-nav": true,
        class: "btn",
        id: "prev",
      }, "‹ Previous")
      : h("span", { class: "btn disabled" }, "‹ Previous"),
    index + 1 < dSae
      ? h("a", {
        href: featurePage(series, name, index + 1, requested),
        "data-nav": true,
        class: "btn",
        id: "next",
      }, "Next ›")
      : h("span", { class: "btn disabled" }, "Next ›"),
    h("button", { type: "button", class: "btn", id: "random", onclick: random }, "Random alive"),
    go,
    h("span", { class: "muted" }, `of ${fmtInt(dSae)} · keys ← → r`),
  );
}

addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLElement && e.target.closest("input, select, textarea")) return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const id = e.key === "ArrowLeft"
    ? "prev"
    : e.key === "ArrowRight"
    ? "next"
    : e.key === "r"
    ? "random"
    : null;
  const el = id && document.getElementById(id);
  if (el) el.click();
});

function statsPanel(analysis, analysisName, names) {
  if (!analysis) {
    return h(
      "section",
      { class: "panel" },
      h("h2", null, "Statistics"),
      h("p", { class: "muted" }, "No analysis of this feature."),
    );
  }
  const freq = analysis.n_analyzed_tokens > 0 ? analysis.act_times / analysis.n_analyzed_tokens : 0;
  const rows = [
    ["Frequency", fmtFreq(freq)],
    ["Act. times", `${fmtInt(analysis.act_times)} / ${fmtInt(analysis.n_analyzed_tokens)}`],
    ["Max activation", fmtNum(analysis.max_activation, 4)],
    ["Mean", fmtNum(analysis.mean, 4)],
    ["Std", fmtNum(analysis.std, 4)],
  ];
  for (const q of analysis.quantiles ?? []) rows.push([`Quantile ${q.q}`, fmtNum(q.value, 4)]);
  if (names.length > 1) rows.push(["Analysis", analysisName]);
  return h(
    "section",
    { class: "panel", id: "stats" },
    h("h2", null, "Statistics"),
    analysis.act_times === 0
      ? h("p", { class: "dead-note" }, "Dead: this feature never fired.")
      : null,
    kvTable(rows),
  );
}

/** The log-bucket histogram of active values, re-binned onto a linear axis [0, max]. */
function activationPanel(analysis) {
  const hist = analysis.histogram;
  const max = analysis.max_activation;
  const section = h("section", { class: "panel" }, h("h2", null, "Activation density"));
  if (!hist || !hist.counts.length || !(max > 0)) {
    append(section, [h("p", { class: "muted" }, "No activations.")]);
    return section;
  }
  const gamma = (1 + hist.relative_accuracy) / (1 - hist.relative_accuracy);
  const bins = 40;
  const counts = new Array(bins).fill(0);
  hist.counts.forEach((count, i) => {
    if (!count) return;
    const rep = (2 * gamma ** (hist.index_offset + i)) / (gamma + 1);
    counts[Math.min(bins - 1, Math.max(0, Math.floor((rep / max) * bins)))] += count;
  });
  const edges = Array.from({ length: bins + 1 }, (_, i) => (i * max) / bins);
  append(section, [
    barChart({
      edges,
      counts,
      width: 330,
      height: 120,
      color: "#f28c28",
      xLabel: "activation",
      barTitle: (lo, hi, n) => `${fmtNum(lo)} – ${fmtNum(hi)}: ${fmtInt(n)} tokens`,
    }),
  ]);
  return section;
}

function logitsPanel(logits) {
  const section = h("section", { class: "panel", id: "logits" }, h("h2", null, "Logits (DLA)"));
  if (!logits) {
    append(section, [h("p", { class: "muted" }, "Not computed.")]);
    return section;
  }
  const table = (title, rows, cls) =>
    h(
      "table",
      { class: `logits ${cls}` },
      h("thead", null, h("tr", null, h("th", { colspan: 2 }, title))),
      h(
        "tbody",
        null,
        rows.map((r) =>
          h(
            "tr",
            null,
            h(
              "td",
              null,
              h(
                "span",
                { class: "tokchip", title: `${JSON.stringify(r.token)} id ${r.id}` },
                tokenText(r.token),
              ),
            ),
            h("td", { class: "num" }, fmtNum(r.logit)),
          )
        ),
      ),
    );
  append(section, [
    h(
      "div",
      { class: "logit-tables" },
      table("Negative", logits.top_negative, "neg"),
      table("Positive", logits.top_positive, "pos"),
    ),
  ]);
  const hist = logits.histogram;
  if (hist && hist.counts.length) {
    append(section, [
      barChart({
        edges: hist.edges,
        counts: hist.counts,
        width: 330,
        height: 100,
        color: (lo, hi) => ((lo + hi) / 2 < 0 ? "#d9534f" : "#3c7dd9"),
        xLabel: "logit over the vocabulary",
        barTitle: (lo, hi, n) => `${fmtNum(lo)} – ${fmtNum(hi)}: ${fmtInt(n)} tokens`,
      }),
    ]);
  }
  return section;
}

function explanationPanel(interp) {
  const scoreRows = Object.entries(interp.scores ?? {}).map(([scorer, m]) =>
    "skipped" in m
      ? h(
        "tr",
        null,
        h("th", null, scorer),
        h("td", { colspan: 5, class: "muted" }, `skipped: ${m.skipped}`),
      )
      : h(
        "tr",
        null,
        h("th", null, scorer),
        h("td", { class: "num" }, fmtNum(m.balanced_accuracy)),
        h("td", { class: "num" }, fmtNum(m.f1)),
        h("td", { class: "num" }, fmtNum(m.precision)),
        h("td", { class: "num" }, fmtNum(m.recall)),
        h("td", { class: "num muted" }, `${m.tp}/${m.fp}/${m.tn}/${m.fn}`),
      )
  );
  const extra = [];
  if (interp.consistency !== undefined) extra.push(`consistency ${interp.consistency}/5`);
  if (interp.complexity !== undefined) extra.push(`complexity ${interp.complexity}/5`);
  return h(
    "section",
    { class: "panel", id: "interpretation" },
    h(
      "div",
      { class: "list-head" },
      h("h2", null, "Explanation"),
      h(
        "span",
        { class: interp.passed ? "badge ok" : "badge no" },
        interp.passed ? "passed" : "not passed",
      ),
    ),
    h(
      "p",
      { class: "muted" },
      [interp.method, interp.model, ...extra, interp.at].filter(Boolean).join(" · "),
    ),
    interp.error ? h("div", { class: "error" }, interp.error) : null,
    scoreRows.length
      ? h(
        "table",
        { class: "grid scores" },
        h(
          "thead",
          null,
          headRow(["Scorer", "Bal. acc.", "F1", "Precision", "Recall", "tp/fp/tn/fn"], 1, 6),
        ),
        h("tbody", null, scoreRows),
      )
      : null,
  );
}

function samplingTitle(sampling) {
  if (sampling.name === "top_activations") return "Top activations";
  if (sampling.name === "non_activating") return "Non-activating contexts";
  if (sampling.band) {
    return `${sampling.name} — peak in (${sampling.band[0]}, ${sampling.band[1]}] × max`;
  }
  return sampling.name;
}

function samplingsView(analysis) {
  if (!analysis || !analysis.samplings.length) {
    return h("p", { class: "muted" }, "No samples.");
  }
  const max = analysis.max_activation > 0 ? analysis.max_activation : 1;
  return analysis.samplings.map((sampling) =>
    h(
      "div",
      { class: "sampling", dataset: { name: sampling.name } },
      h(
        "h3",
        null,
        samplingTitle(sampling),
        h("span", { class: "muted" }, ` (${sampling.samples.length})`),
      ),
      sampling.samples.length
        ? sampling.samples.map((sample) => contextRow(sample, max))
        : h("p", { class: "muted" }, "None."),
    )
  );
}

function contextRow(sample, max) {
  const n = sample.tokens.length;
  const r = contextRadius;
  const from = r === Infinity ? 0 : Math.max(0, sample.peak_pos - r);
  const to = r === Infinity ? n : Math.min(n, sample.peak_pos + r + 1);
  const toks = [];
  for (let i = from; i < to; i++) {
    const act = sample.acts[i] ?? 0;
    const str = sample.token_strings?.[i] ?? `#${sample.tokens[i]}`;
    const el = h(
      "span",
      {
        class: i === sample.peak_pos && act > 0 ? "tok peak" : "tok",
        dataset: { act: String(act), token: str, id: String(sample.tokens[i]) },
      },
      tokenText(str),
    );
    if (act > 0) {
      el.style.backgroundColor = `rgba(242, 140, 40, ${
        Math.min(1, 0.12 + 0.88 * (act / max)).toFixed(3)
      })`;
    }
    toks.push(el);
  }
  const where =
    `${sample.source} · shard ${sample.shard} · row ${sample.row} · offset ${sample.offset}`;
  return h(
    "div",
    { class: "ctx" },
    h("span", { class: "peakval", title: where }, fmtNum(sample.peak)),
    h(
      "span",
      { class: "toks" },
      from > 0 ? h("span", { class: "more" }, "…") : null,
      toks,
      to < n ? h("span", { class: "more" }, "…") : null,
    ),
  );
}

// Hovering a token shows its text and activation.
document.addEventListener("mouseover", (e) => {
  const el = e.target instanceof Element ? e.target.closest(".tok") : null;
  if (!el) return hideTip();
  replace(
    tip,
    h("code", null, JSON.stringify(el.dataset.token)),
    h("span", { class: "muted" }, ` id ${el.dataset.id}`),
    h("div", null, "activation ", h("b", null, fmtNum(Number(el.dataset.act), 4))),
  );
  tip.hidden = false;
  const box = el.getBoundingClientRect();
  tip.style.left = `${Math.min(innerWidth - tip.offsetWidth - 8, Math.max(4, box.left))}px`;
  tip.style.top = `${box.bottom + 6}px`;
});

function hideTip() {
  if (tip) tip.hidden = true;
}

// ---------------------------------------------------------------------------------------------
// Charts: bar histograms in hand-written SVG

function barChart(
  { edges, counts, width, height, color = "#5b7fbf", xLabel, xFormat = fmtNum, barTitle },
) {
  const m = { l: 40, r: 8, t: 8, b: 30 };
  const w = width - m.l - m.r;
  const ht = height - m.t - m.b;
  const lo = edges[0];
  const hi = edges[edges.length - 1];
  const span = hi - lo || 1;
  const top = Math.max(1, ...counts);
  const x = (v) => m.l + ((v - lo) / span) * w;
  const y = (c) => m.t + ht - (c / top) * ht;
  const chart = s("svg", {
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    class: "chart",
    role: "img",
  });
  counts.forEach((c, i) => {
    if (!c) return;
    const a = edges[i];
    const b = edges[i + 1];
    const fill = typeof color === "function" ? color(a, b) : color;
    append(chart, [
      s(
        "rect",
        {
          x: x(a) + 0.5,
          y: y(c),
          width: Math.max(1, x(b) - x(a) - 1),
          height: m.t + ht - y(c),
          fill,
        },
        s("title", null, barTitle ? barTitle(a, b, c) : `${a} – ${b}: ${c}`),
      ),
    ]);
  });
  const axis = "#888";
  append(chart, [
    s("line", { x1: m.l, y1: m.t + ht, x2: m.l + w, y2: m.t + ht, stroke: axis }),
    s("line", { x1: m.l, y1: m.t, x2: m.l, y2: m.t + ht, stroke: axis }),
    s("text", { x: m.l - 4, y: m.t + 8, "text-anchor": "end", class: "tick" }, fmtInt(top)),
    s("text", { x: m.l - 4, y: m.t + ht, "text-anchor": "end", class: "tick" }, "0"),
    [0, 0.5, 1].map((f) =>
      s(
        "text",
        {
          x: m.l + f * w,
          y: m.t + ht + 12,
          "text-anchor": f === 0 ? "start" : f === 1 ? "end" : "middle",
          class: "tick",
        },
        xFormat(lo + f * span),
      )
    ),
    xLabel
      ? s(
        "text",
        { x: m.l + w / 2, y: height - 4, "text-anchor": "middle", class: "axis-label" },
        xLabel,
      )
      : null,
  ]);
  return chart;
}

route();
